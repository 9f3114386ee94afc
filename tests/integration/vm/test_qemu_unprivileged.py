# SPDX-License-Identifier: MIT
"""QEMU runs as an unprivileged host uid under seccomp, and a guest opening many connections meets
that uid's process limit (issue #15 item 3, ADR 0171), seen from the host's /proc.

One real TCG boot with the new shape and one with the old (QEMU as root, no limit) as the
negative control: the same sampling that passes on the first fails on the second.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from airlock.backends.fetcher import FetchRequest, qemu
from airlock.backends.fetcher.qemu import QemuConfig, QemuFetcher
from airlock.events import ListReporter
from tests.integration.vm.conftest import vm_config
from tests.support import leaks

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.timeout(600)]

UID, GID = 4_000_123, 4_000_321
LIMIT = 64
CONNECTIONS = 150

# Open many connections through the one forward and hold them while the host counts.
HOLDER = r"""
import socket, time
url = open("/host/etc/update-url").read().strip()
host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
held, failed = [], 0
for _ in range(CONNECTIONS):
    try:
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(b"x")
        held.append(s)
    except OSError:
        failed += 1
print("HOLDING", len(held), "FAILED", failed, flush=True)
open("/host/updates/holding", "w").write("%d %d" % (len(held), failed))
time.sleep(25)
print("RELEASED", flush=True)
""".replace("CONNECTIONS", str(CONNECTIONS))


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """What the host's /proc showed while the guest held its connections."""

    qemu_uid: list[int]
    qemu_seccomp: int
    qemu_no_new_privs: int
    forwarders: int  # forwarder processes (busybox nc) at once
    forwarder_uids: set[int]


@contextlib.contextmanager
def _holding_listener() -> Iterator[int]:
    """A loopback TCP listener that accepts and keeps every connection (the forwarders' peer)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1024)
    srv.settimeout(0.2)
    kept: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                kept.append(srv.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        thread.join(10)
        for conn in kept:
            conn.close()
        srv.close()


def _status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def _sample(share: Path) -> Sample:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (share / "holding").exists():
        time.sleep(0.2)
    time.sleep(2)  # let the last forwarders start (or fail to)
    found: dict[int, dict[str, str]] = {}
    for pid in leaks.descendants(os.getpid()):
        with contextlib.suppress(OSError):
            found[pid] = _status(pid)
    vm = [pid for pid, st in found.items() if st["Name"].startswith("qemu-system")]
    assert len(vm) == 1, found
    # libslirp starts each forwarder detached (a double fork): count them by name, wherever
    # they were reparented (still below this test: the guard's init is their reaper).
    below = {pid for pid, st in found.items() if st["Name"] == "busybox"}
    return Sample(
        qemu_uid=[int(v) for v in found[vm[0]]["Uid"].split()],
        qemu_seccomp=int(found[vm[0]]["Seccomp"]),
        qemu_no_new_privs=int(found[vm[0]]["NoNewPrivs"]),
        forwarders=len(below),
        forwarder_uids={int(found[pid]["Uid"].split()[0]) for pid in below},
    )


def _run(tmp_path: Path, config: QemuConfig) -> tuple[Sample, str]:
    with _holding_listener() as port:
        cfg = vm_config(tmp_path, f"http://127.0.0.1:{port}/")
        share = tmp_path / "share"
        share.mkdir()
        log = tmp_path / "console.log"
        request = FetchRequest(
            config_dir=cfg,
            share=share,
            timeout_s=300,
            command=("python3", "-c", HOLDER),
            log_path=log,
        )
        samples: list[Sample] = []
        sampler = threading.Thread(target=lambda: samples.append(_sample(share)))
        sampler.start()
        QemuFetcher(config).fetch(request, ListReporter())
        sampler.join(30)
    assert samples, "the sampler saw nothing"
    return samples[0], log.read_text(errors="replace")


def test_qemu_is_unprivileged_under_seccomp_and_its_forwarders_are_bounded(
    guest_dir: Path, tmp_path: Path
) -> None:
    config = QemuConfig(guest_dir=guest_dir, uid=UID, gid=GID, max_processes=LIMIT)
    sample, console = _run(tmp_path, config)
    assert sample.qemu_uid == [UID] * 4
    assert sample.qemu_seccomp == 2  # a seccomp filter
    assert sample.qemu_no_new_privs == 1
    assert sample.forwarder_uids <= {UID}
    assert 0 < sample.forwarders < LIMIT  # QEMU's own threads count against the same limit
    assert "RELEASED" in console
    assert (tmp_path / "share").stat().st_uid == UID


def test_negative_control_qemu_as_root_forks_a_forwarder_per_connection(
    guest_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    @contextlib.contextmanager
    def old_shape(*_: object) -> Iterator[tuple[None, dict[Path, Path]]]:
        yield None, {}

    monkeypatch.setattr(qemu, "_as_unprivileged", old_shape)
    sample, _ = _run(tmp_path, QemuConfig(guest_dir=guest_dir, uid=UID, gid=GID))
    assert sample.qemu_uid == [0] * 4  # the first assertion above fires
    assert sample.forwarders >= LIMIT  # and so does the bound
    assert sample.forwarder_uids == {0}
