# SPDX-License-Identifier: MIT
"""The agent over HTTPS (nginx with a lab CA): the certificate is checked, a wrong one is fetch.tls.

A release can come from any static web server or CDN; the VM trusts the server only for
transport (the signed manifest decides), but it still checks the certificate and host name, so a
network attacker cannot even see which files it asks for.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from airlock.agent.main import run
from airlock.agent.options import Outcome
from airlock.errors import ExitStatus, FetchError
from airlock.events import ListReporter
from airlock.lab import nginx, tlsca
from tests.unit.agent.conftest import World, release_names


@dataclass(frozen=True, slots=True, kw_only=True)
class Lab:
    ca: tlsca.Authority
    stranger: tlsca.Authority
    tmp: Path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    tmp = tmp_path_factory.mktemp("tls")
    return Lab(
        ca=tlsca.make_ca(tmp / "ca"), stranger=tlsca.make_ca(tmp / "stranger", "Other CA"), tmp=tmp
    )


@pytest.fixture
def https(world: World, lab: Lab, tmp_path: Path) -> Iterator[nginx.Nginx]:
    cert, key = tlsca.issue(lab.ca, tmp_path / "cert", dns=("localhost",), ips=("127.0.0.1",))
    config = nginx.NginxConfig(
        root=world.origin, workdir=tmp_path / "ng", tls=nginx.Tls(cert=cert, key=key)
    )
    with nginx.serving(config) as web:
        world.set_url(web.url)
        yield web


def test_release_and_delta_over_https_with_the_lab_ca(
    world: World, lab: Lab, https: nginx.Nginx
) -> None:
    assert https.url.startswith("https://127.0.0.1:")
    old = bytes(range(256)) * 1024
    world.publish("1", root=old)
    first = run(world.options(ca_file=str(lab.ca.cert)), ListReporter())
    assert first.outcome == Outcome.DOWNLOADED
    new = old[:200_000] + b"changed" + old[200_007:]
    files = world.publish("2", root=new)
    second = run(world.options(ca_file=str(lab.ca.cert)), ListReporter())
    rootfs = release_names("2")[1]
    assert (world.updates / rootfs).read_bytes() == files[rootfs]
    assert second.reused_bytes > 0
    assert https.bytes_served()[rootfs] == 1024  # one sub-block over TLS


@pytest.mark.parametrize("which", ["stranger-ca", "system-store"])
def test_certificate_from_another_ca_is_fetch_tls_without_retries(
    world: World, lab: Lab, https: nginx.Nginx, which: str
) -> None:
    world.publish("1")
    ca_file = str(lab.stranger.cert) if which == "stranger-ca" else None
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        run(world.options(ca_file=ca_file, timeout_s=20.0), ListReporter())
    assert info.value.code == "fetch.tls"
    assert "TLS certificate is not trusted" in info.value.message
    assert (
        "certificate verify failed" in info.value.message or "unable to get" in info.value.message
    )
    assert time.monotonic() - started < 5  # not retried until the time limit
    assert https.requests() == []  # not a single request reached the server
    assert not any(world.updates.iterdir())


def test_certificate_for_another_host_name_is_refused(
    world: World, lab: Lab, tmp_path: Path
) -> None:
    cert, key = tlsca.issue(lab.ca, tmp_path / "cert", dns=("updates.example.org",), ips=())
    config = nginx.NginxConfig(
        root=world.origin, workdir=tmp_path / "ng", tls=nginx.Tls(cert=cert, key=key)
    )
    world.publish("1")
    with nginx.serving(config) as web:
        world.set_url(web.url)
        with pytest.raises(FetchError) as info:
            run(world.options(ca_file=str(lab.ca.cert)), ListReporter())
    assert info.value.code == "fetch.tls"
    assert "mismatch" in info.value.message or "match" in info.value.message


def test_negative_control_the_right_ca_file_is_what_makes_it_work(
    world: World, lab: Lab, https: nginx.Nginx
) -> None:
    world.publish("1")
    assert (
        run(world.options(ca_file=str(lab.ca.cert)), ListReporter()).outcome == Outcome.DOWNLOADED
    )


def test_cli_reports_a_wrong_certificate_in_one_line(
    world: World, lab: Lab, https: nginx.Nginx
) -> None:
    world.publish("1")
    proc = subprocess.run(
        [sys.executable, "-m", "airlock", "agent", "--share", str(world.share), "--json",
         "--timeout", "20", "--ca-file", str(lab.stranger.cert)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == ExitStatus.FETCH
    final = json.loads(proc.stdout.splitlines()[-1])
    assert final["code"] == "fetch.tls"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "TLS certificate is not trusted" in errors[0]
    assert "Traceback" not in proc.stderr


def test_unreadable_ca_file_is_fetch_tls(world: World, https: nginx.Nginx, tmp_path: Path) -> None:
    world.publish("1")
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(FetchError) as info:
        run(world.options(ca_file=str(bad)), ListReporter())
    assert info.value.code == "fetch.tls"
