# SPDX-License-Identifier: MIT
"""QEMU runs as an unprivileged host uid under a seccomp filter that denies spawning and privilege
changes, and the guest's connections all go through one bounded forwarder process (issue #15
item 3, ADRs 0171 and 0172), seen from the host's /proc.

One real TCG boot of the new shape while the guest holds 150 connections; one with the old
per-connection ``guestfwd … cmd:`` forwarder added to that same argv as the negative control:
the first guest connection through it makes QEMU fork, and the filter kills QEMU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airlock.backends.fetcher import FetchRequest, qemu, unprivileged
from airlock.backends.fetcher.qemu import QemuConfig, QemuFetcher
from airlock.errors import FetchError
from airlock.events import ListReporter
from airlock.proc.child import GUARD
from tests.integration.vm.conftest import vm_config
from tests.support import leaks

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.timeout(600)]

UID, GID = 4_000_123, 4_000_321
LIMIT = 64
MAX_CONNECTIONS = 8
CONNECTIONS = 150

# Open many connections to the update server and hold them while the host counts.
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
    qemu_sandbox: str  # the -sandbox value on QEMU's command line
    forwarders: int  # host relay processes
    forwarder_uids: set[int]
    forwarder_threads: int
    others: list[str]  # names of any other process below the test (per-connection forwarders)
    upstream: int  # connections the server had accepted (it keeps them all)
    qemu_netns: str  # /proc/PID/ns/net of QEMU
    forwarder_netns: set[str]


@contextlib.contextmanager
def _holding_listener() -> Iterator[tuple[int, list[int]]]:
    """A loopback TCP listener that accepts and keeps every connection: (port, [accepted])."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1024)
    srv.settimeout(0.2)
    kept: list[socket.socket] = []
    accepted = [0]
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                kept.append(srv.accept()[0])
                accepted[0] += 1

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(10)
        for conn in kept:
            conn.close()
        srv.close()


def _status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def _argv(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _sample(share: Path, accepted: list[int], earlier: set[int]) -> Sample:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (share / "holding").exists():
        time.sleep(0.2)
    time.sleep(2)  # let the last connections reach the server (or be refused)
    found: dict[int, tuple[dict[str, str], list[str]]] = {}
    # What ran below the test before the fetch started is not the fetch's (a session fixture's
    # server when this module runs in one session with others, as the mutation check runs it).
    for pid in set(leaks.descendants(os.getpid())) - earlier:
        with contextlib.suppress(OSError):
            found[pid] = (_status(pid), _argv(pid))
    vm = [pid for pid, (st, _) in found.items() if st["Name"].startswith("qemu-system")]
    assert len(vm) == 1, found
    # Below the test: the guards (python3 -I -S … guard … -- COMMAND), their inits (forks of
    # the guards), QEMU and the forwarder.  A guard's argv names guard.py or its directory.
    marks = {os.fspath(GUARD), os.fspath(GUARD.parent)}
    guards = {pid for pid, (_, argv) in found.items() if marks & set(argv)}
    relays = [pid for pid, (_, argv) in found.items() if "--upstream" in argv and pid not in guards]
    vm_status, vm_argv = found[vm[0]]
    others = [st["Name"] for pid, (st, _) in found.items() if pid not in {*vm, *relays, *guards}]
    return Sample(
        qemu_uid=[int(v) for v in vm_status["Uid"].split()],
        qemu_seccomp=int(vm_status["Seccomp"]),
        qemu_no_new_privs=int(vm_status["NoNewPrivs"]),
        qemu_sandbox=vm_argv[vm_argv.index("-sandbox") + 1],
        forwarders=len(relays),
        forwarder_uids={int(found[pid][0]["Uid"].split()[0]) for pid in relays},
        forwarder_threads=max((int(found[pid][0]["Threads"]) for pid in relays), default=0),
        others=others,
        upstream=accepted[0],
        qemu_netns=_netns(vm[0]),
        forwarder_netns={_netns(pid) for pid in relays},
    )


def _netns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return "gone"


def _request(tmp_path: Path, port: int, command: tuple[str, ...]) -> FetchRequest:
    cfg = vm_config(tmp_path, f"http://127.0.0.1:{port}/")
    share = tmp_path / "share"
    share.mkdir()
    return FetchRequest(
        config_dir=cfg,
        share=share,
        timeout_s=300,
        command=command,
        log_path=tmp_path / "console.log",
    )


def test_qemu_is_unprivileged_under_seccomp_and_one_forwarder_bounds_the_connections(
    guest_dir: Path, tmp_path: Path
) -> None:
    config = QemuConfig(
        guest_dir=guest_dir,
        uid=UID,
        gid=GID,
        max_processes=LIMIT,
        max_connections=MAX_CONNECTIONS,
    )
    with _holding_listener() as (port, accepted):
        request = _request(tmp_path, port, ("python3", "-c", HOLDER))
        samples: list[Sample] = []
        earlier = set(leaks.descendants(os.getpid()))
        sampler = threading.Thread(
            target=lambda: samples.append(_sample(request.share, accepted, earlier))
        )
        sampler.start()
        start = time.monotonic()
        QemuFetcher(config).fetch(request, ListReporter())
        took = time.monotonic() - start
        sampler.join(30)
    assert samples, "the sampler saw nothing"
    sample = samples[0]
    console = request.log_path.read_text(errors="replace") if request.log_path else ""
    print(f"boot to power-off {took:.1f} s; {sample}")
    assert sample.qemu_uid == [UID] * 4
    assert sample.qemu_seccomp == 2  # a seccomp filter
    assert sample.qemu_no_new_privs == 1
    assert {"spawn=deny", "elevateprivileges=deny"} <= set(sample.qemu_sandbox.split(","))
    assert sample.forwarders == 1  # one process for all 150 connections
    assert sample.forwarder_uids == {UID}
    assert sample.forwarder_threads <= MAX_CONNECTIONS + 1
    assert sample.others == []  # no per-connection process of any name
    # QEMU has a network namespace of its own, empty (ADR 0177); the forwarder, which connects
    # to the upstream, stays in ours.
    ours = os.readlink("/proc/self/ns/net")
    assert sample.qemu_netns not in (ours, "gone")
    assert sample.forwarder_netns == {ours}
    assert sample.upstream == MAX_CONNECTIONS  # the guest held 150; the server saw the bound
    assert f"HOLDING {CONNECTIONS} FAILED 0" in console  # the guest's relay accepted them all
    assert "RELEASED" in console
    assert (tmp_path / "share").stat().st_uid == UID


# The guest (root) gives itself the old NIC's address, as the old init did, and connects to the
# old forward.  The guest's initramfs still carries virtio_net for exactly this control (and for
# the mutation that gives the guest a NIC: the IPv6 test in test_qemu_fetcher.py then fails).
OLD_FORWARD_USER = r"""
import fcntl, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def req(ip):
    return struct.pack("16sH2s4s8s", b"eth0", socket.AF_INET, b"", socket.inet_aton(ip), b"")
fcntl.ioctl(s, 0x8916, req("10.0.2.15"))  # SIOCSIFADDR
fcntl.ioctl(s, 0x891C, req("255.255.255.0"))  # SIOCSIFNETMASK
flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16s16s", b"eth0", b""))[:18])[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sH14s", b"eth0", flags | 1, b""))  # SIOCSIFFLAGS: up
print("OLD NIC up", flush=True)
c = socket.create_connection(("10.0.2.101", PORT), timeout=20)
c.sendall(b"through the old forward")
print("OLD FORWARD CONNECTED", flush=True)
c.recv(1)
"""


def test_negative_control_the_old_per_connection_forwarder_now_kills_qemu(
    guest_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _holding_listener() as (port, accepted):
        old_forward = (
            f"user,id=n0,restrict=on,ipv6=off,guestfwd=tcp:10.0.2.101:{port}"
            f"-cmd:/bin/busybox nc 127.0.0.1 {port}"
        )
        serial_port = qemu._serial_port
        monkeypatch.setattr(
            qemu,
            "_serial_port",
            lambda fd: [
                *serial_port(fd),
                *("-netdev", old_forward, "-device", "virtio-net-pci,netdev=n0"),
            ],
        )
        # In its own empty network namespace (ADR 0177) QEMU never gets as far as spawning the
        # old forward (the fetch ends without SIGSYS, seen): put it back in ours, so that the
        # spawn is attempted and seccomp's spawn=deny is what stops it.
        as_unprivileged = qemu._as_unprivileged

        @contextlib.contextmanager
        def in_our_netns(*args: Any, **kwargs: Any) -> Iterator[tuple[Any, dict[Path, Path]]]:
            with as_unprivileged(*args, **kwargs) as (who, sources):
                assert who is not None and who.own_netns
                yield dataclasses.replace(who, own_netns=False), sources

        monkeypatch.setattr(qemu, "_as_unprivileged", in_our_netns)
        request = _request(
            tmp_path, port, ("python3", "-c", OLD_FORWARD_USER.replace("PORT", str(port)))
        )
        config = QemuConfig(guest_dir=guest_dir, uid=UID, gid=GID, max_processes=LIMIT)
        with pytest.raises(FetchError) as info:
            QemuFetcher(config).fetch(request, ListReporter())
        time.sleep(0.5)
        reached = accepted[0]
    console = request.log_path.read_text(errors="replace") if request.log_path else ""
    assert "OLD NIC up" in console  # the guest did try the old way
    assert info.value.code == "fetch.vm"
    assert "status -31" in info.value.message  # SIGSYS: the forwarder's fork was the spawn
    assert "OLD FORWARD CONNECTED" not in console
    assert reached == 0


def _probe_uids(guest_dir: Path, config: QemuConfig) -> tuple[bool, set[int]]:
    """Run a TCG probe boot; return its verdict and the uids its QEMU was seen with."""
    kernel, initrd = guest_dir / "vmlinuz", guest_dir / "initrd.img"
    verdict: list[bool] = []
    thread = threading.Thread(
        target=lambda: verdict.append(qemu._probe_boot(config, qemu.Accel.TCG, kernel, initrd))
    )
    thread.start()
    seen: set[int] = set()
    while thread.is_alive():
        for pid in leaks.descendants(os.getpid()):
            with contextlib.suppress(OSError, KeyError):
                st = _status(pid)
                if st["Name"].startswith("qemu-system"):
                    seen.update(int(v) for v in st["Uid"].split())
        time.sleep(0.05)
    thread.join()
    return verdict[0], seen


def test_the_kvm_probe_boot_runs_qemu_as_the_unprivileged_uid_too(guest_dir: Path) -> None:
    """``accel = auto`` boots the guest once to see whether KVM works: that QEMU, too, never holds
    a privilege, and it runs as exactly the configured uid (two uids, two answers: the check
    reads the real one, it does not assume it)."""
    for uid in (UID, UID + 1):
        config = QemuConfig(
            guest_dir=guest_dir, uid=uid, gid=GID, max_processes=LIMIT, probe_timeout_s=120
        )
        ok, seen = _probe_uids(guest_dir, config)
        assert ok  # TCG always boots: the binds reach the kernel and initrd as that uid
        assert seen == {uid}
    assert not [p for p in os.listdir("/run") if p.startswith(unprivileged.QEMU_PROBE_PREFIX)]
