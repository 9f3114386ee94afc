# SPDX-License-Identifier: MIT
"""airlock.agent against stalling, trickling and endless servers (127.0.0.1): reads are bounded."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from airlock.agent.main import run
from airlock.errors import FetchError
from airlock.events import ListReporter, Notice
from airlock.limits import Limits
from airlock.release.serve import Faults, ServeConfig, serving
from tests.unit.agent.conftest import MIB, World, release_names


class _Hostile(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, origin: Path, endless: set[str], trickle: set[str]) -> None:
        self.origin, self.endless, self.trickle = origin, endless, trickle
        self.redirect: dict[str, str] = {}
        self.stop = threading.Event()
        self.sent: dict[str, int] = {}
        super().__init__(("127.0.0.1", 0), _HostileHandler)


class _HostileHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Hostile

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        if name in self.server.redirect:
            self.send_response(302)
            self.send_header("Location", self.server.redirect[name])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if name in self.server.endless or name in self.server.trickle:
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = b"A" * (64 * 1024 if name in self.server.endless else 1)
            try:
                while not self.server.stop.is_set():
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                    self.server.sent[name] = self.server.sent.get(name, 0) + len(block)
                    if name in self.server.trickle:
                        time.sleep(0.05)
            except OSError:
                pass
            self.close_connection = True
            return
        path = self.server.origin / name
        if not path.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def hostile(world: World) -> Iterator[_Hostile]:
    srv = _Hostile(world.origin, set(), set())
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    world.set_url(f"http://127.0.0.1:{srv.server_address[1]}")
    yield srv
    srv.stop.set()
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def test_endless_manifest_is_cut_at_its_cap(world: World, hostile: _Hostile) -> None:
    world.publish("1")
    hostile.endless.add("SHA256SUMS")
    with pytest.raises(FetchError) as info:
        run(world.options(), ListReporter())
    assert info.value.code == "fetch.too-large"
    _assert_connection_dropped(hostile, "SHA256SUMS")


def _assert_connection_dropped(hostile: _Hostile, name: str) -> None:
    """The agent hung up: the server's writes fail and its count stops (socket buffers aside)."""
    time.sleep(0.3)
    first = hostile.sent[name]
    time.sleep(0.3)
    assert hostile.sent[name] == first
    assert first < 64 * MIB


def test_endless_signature_is_cut_at_its_cap(world: World, hostile: _Hostile) -> None:
    world.publish("1")
    hostile.endless.add("SHA256SUMS.gpg")
    with pytest.raises(FetchError) as info:
        run(world.options(), ListReporter())
    assert info.value.code == "fetch.too-large"


def test_endless_payload_is_cut_at_the_max_file_size(world: World, hostile: _Hostile) -> None:
    world.publish("1")
    rootfs = release_names("1")[1]
    hostile.endless.add(rootfs)
    options = replace(world.options(), limits=replace(Limits(), max_file_bytes=2 * MIB))
    with pytest.raises(FetchError) as info:
        run(options, ListReporter())
    assert info.value.code == "fetch.too-large"
    assert not (world.updates / rootfs).exists()
    assert (world.updates / f".{rootfs}.partial").stat().st_size <= 2 * MIB
    _assert_connection_dropped(hostile, rootfs)


def test_trickling_payload_hits_the_time_limit(world: World, hostile: _Hostile) -> None:
    world.publish("1")
    rootfs = release_names("1")[1]
    hostile.trickle.add(rootfs)
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        run(world.options(timeout_s=2.0), ListReporter())
    assert info.value.code == "fetch.timeout"
    assert time.monotonic() - started < 6
    assert not (world.updates / rootfs).exists()


def test_announced_oversize_payload_is_refused_before_reading(world: World) -> None:
    world.publish("1", root_bytes=3 * MIB)
    rootfs = release_names("1")[1]
    with serving(ServeConfig(root=world.origin)) as srv:
        world.set_url(srv.url)
        options = replace(world.options(), limits=replace(Limits(), max_file_bytes=1 * MIB))
        with pytest.raises(FetchError) as info:
            run(options, ListReporter())
    assert info.value.code == "fetch.too-large"
    assert not (world.updates / rootfs).exists()


def test_stalled_server_hits_the_time_limit(world: World) -> None:
    world.publish("1")
    faults = Faults(delay_s={"SHA256SUMS": 30.0})
    with serving(ServeConfig(root=world.origin, faults=faults)) as srv:
        world.set_url(srv.url)
        started = time.monotonic()
        with pytest.raises(FetchError) as info:
            run(world.options(timeout_s=2.0, stall_s=0.5), ListReporter())
        elapsed = time.monotonic() - started
    assert info.value.code in ("fetch.timeout", "fetch.network")
    assert elapsed < 5


def test_refused_connection_is_retried_until_the_time_limit(world: World) -> None:
    world.set_url("http://127.0.0.1:9")  # discard port: nothing listens on loopback
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        run(world.options(timeout_s=2.0), ListReporter())
    assert info.value.code == "fetch.timeout"
    assert 1.0 <= time.monotonic() - started < 5


def test_server_error_is_retried_until_the_time_limit(world: World) -> None:
    """A 503 (a server still coming up) is retried with backoff, within the time limit."""
    world.publish("1")
    faults = Faults(status={"SHA256SUMS": 503})
    with serving(ServeConfig(root=world.origin, faults=faults)) as srv:
        world.set_url(srv.url)
        reporter = ListReporter()
        with pytest.raises(FetchError) as info:
            run(world.options(timeout_s=3.0), reporter)
        assert info.value.code == "fetch.timeout"
        assert len([r for r in srv.requests() if r["path"] == "SHA256SUMS"]) >= 2
    notices = [e.message for e in reporter.events if isinstance(e, Notice)]
    assert notices
    assert all("HTTP 503; retrying in" in m for m in notices)


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/SHA256SUMS"])
def test_redirect_to_another_scheme_is_refused_at_once(
    world: World, hostile: _Hostile, location: str
) -> None:
    world.publish("1")
    hostile.redirect["SHA256SUMS"] = location
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        run(world.options(), ListReporter())
    assert info.value.code == "fetch.http"
    assert time.monotonic() - started < 2  # not retried as if transient
    assert world.updates_listing() == []


def test_redirect_loop_is_refused(world: World, hostile: _Hostile) -> None:
    world.publish("1")
    hostile.redirect["SHA256SUMS"] = "/SHA256SUMS"
    with pytest.raises(FetchError) as info:
        run(world.options(), ListReporter())
    assert info.value.code == "fetch.http"


def test_total_payload_cap_stops_the_run(world: World, hostile: _Hostile) -> None:
    world.publish("1", root_bytes=2 * MIB)
    options = replace(world.options(), limits=replace(Limits(), max_total_bytes=1 * MIB))
    with pytest.raises(FetchError) as info:
        run(options, ListReporter())
    assert info.value.code == "fetch.too-large"
