# SPDX-License-Identifier: MIT
"""airlock/agent/relay.py with the real host forwarder: HTTP through the pair, no VM (ADR 0172).

The guest relay runs in this process on a loopback listener (the VM's is ``10.0.2.100``); the
host forwarder runs as its own process, started the way ``QemuFetcher`` starts it, on the other
end of a socketpair (in the VM the socket is QEMU's virtio-serial chardev).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from airlock import proc
from airlock.agent import relay as guest
from airlock.backends.fetcher import relay as host

FILES = 6
SIZE = 3 << 20


def test_both_ends_speak_the_same_frames() -> None:
    assert guest.HEADER.format == host.HEADER.format
    assert (guest.OPEN, guest.DATA, guest.CLOSE) == (host.OPEN, host.DATA, host.CLOSE)
    assert guest.MAX_PAYLOAD == host.MAX_PAYLOAD


def test_the_port_is_found_by_its_name(tmp_path: Path) -> None:
    for entry, name in (("vport0p1", "org.qemu.guest_agent.0"), ("vport1p1", "airlock.net")):
        (tmp_path / entry).mkdir()
        (tmp_path / entry / "name").write_text(name + "\n")
    assert guest.find_port("airlock.net", tmp_path) == Path("/dev/vport1p1")
    assert guest.find_port("other", tmp_path) is None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _http_server(root: Path) -> Iterator[int]:
    handler = functools.partial(_Quiet, directory=os.fspath(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_parallel_http_downloads_through_both_relays_deliver_the_exact_bytes(
    tmp_path: Path,
) -> None:
    expected = {}
    for i in range(FILES):
        data = os.urandom(SIZE)
        (tmp_path / f"f{i}").write_bytes(data)
        expected[f"f{i}"] = hashlib.sha256(data).hexdigest()
    got: dict[str, str] = {}
    failures: list[BaseException] = []
    guest_end, host_end = socket.socketpair()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    with _http_server(tmp_path) as server_port:
        argv = [
            "python3", "-I", "-S", host.__file__,
            "--fd", str(host_end.fileno()),
            "--upstream", f"127.0.0.1:{server_port}",
            "--max-connections", str(FILES),
        ]  # fmt: skip
        with proc.spawn(argv, pass_fds=(host_end.fileno(),)) as forwarder:
            host_end.close()
            serving = threading.Thread(
                target=guest.GuestRelay(guest_end.fileno(), listener).serve, daemon=True
            )
            serving.start()

            def fetch(name: str) -> None:
                try:
                    url = f"http://127.0.0.1:{port}/{name}"
                    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback
                        got[name] = hashlib.sha256(response.read()).hexdigest()
                except BaseException as exc:  # noqa: BLE001 - reported below
                    failures.append(exc)

            clients = [threading.Thread(target=fetch, args=(n,)) for n in expected]
            for client in clients:
                client.start()
            for client in clients:
                client.join(60)
            guest_end.shutdown(socket.SHUT_WR)  # the VM is gone: the forwarder ends cleanly
            assert proc.wait(forwarder, timeout=10) == 0
        serving.join(10)
        assert not serving.is_alive()
    guest_end.close()
    assert failures == []
    assert got == expected
