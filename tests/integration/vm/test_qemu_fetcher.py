# SPDX-License-Identifier: MIT
"""QemuFetcher on a real TCG guest: downloads through its one relay into the 9p share, is killed
at the timeout, and its console output never reaches a message unescaped."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from airlock.backends.fetcher import FetchRequest, qemu
from airlock.backends.fetcher.qemu import QemuConfig, QemuFetcher
from airlock.errors import FetchError
from airlock.events import ListReporter
from airlock.release.serve import Server
from tests.integration.vm.conftest import vm_config, write_release

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.timeout(400)]

# A stand-in for the agent (same share contract): fetch SHA256SUMS and every file it lists from
# /host/etc/update-url into /host/updates, then probe the guest's walls.
DOWNLOADER = r"""
import os, sys, urllib.parse, httpx
url = open("/host/etc/update-url").read().strip()
sums = httpx.get(url + "SHA256SUMS", timeout=30).raise_for_status().content
for line in sums.decode().splitlines():
    name = line.split(" *", 1)[1]
    data = httpx.get(url + name, timeout=30).raise_for_status().content
    with open("/host/updates/." + name + ".part", "wb") as fh:
        fh.write(data)
    os.rename("/host/updates/." + name + ".part", "/host/updates/" + name)
open("/host/updates/SHA256SUMS", "wb").write(sums)
try:
    open("/host/etc/planted", "w").write("x")
    print("WALL etc writable")
except OSError:
    print("WALL etc read-only")
port = urllib.parse.urlsplit(url).port
try:
    httpx.get(f"http://10.0.2.2:{port}/SHA256SUMS", timeout=5)
    print("WALL host alias reachable")
except httpx.HTTPError:
    print("WALL host alias blocked")
import ctypes
# The guest is root: clear its own read-only flags (MS_REMOUNT without MS_RDONLY); QEMU's
# readonly=on exports must still refuse every write.
libc = ctypes.CDLL(None, use_errno=True)
for target in ("/usr", "/host/etc"):
    rc = libc.mount(None, target.encode(), None, 32, None)
    print("WALL", target, "remount rw status", rc, ctypes.get_errno())
    try:
        open(target + "/planted", "w").write("x")
        print("WALL", target, "writable after remount")
    except OSError as exc:
        print("WALL", target, "refused after remount:", exc.errno)
os.symlink("/etc/shadow", "/host/updates/link")
os.mkfifo("/host/updates/fifo")
print("guest url", url)
"""


def _request(tmp_path: Path, cfg: Path, command: tuple[str, ...], timeout_s: float) -> FetchRequest:
    share = tmp_path / "share"
    share.mkdir(exist_ok=True)
    return FetchRequest(
        config_dir=cfg,
        share=share,
        timeout_s=timeout_s,
        command=command,
        log_path=tmp_path / "console.log",
    )


def test_guest_downloads_release_through_the_one_forward(
    guest_dir: Path,
    release_server: tuple[str, Path, Server],
    tmp_path: Path,
    new_processes: Callable[[], set[int]],
) -> None:
    url, root, server = release_server
    sums = write_release(root, "2", {"Demo_2.root": b"R" * 300_000, "Demo_2.efi": b"K" * 1234})
    cfg = vm_config(tmp_path, url)
    request = _request(tmp_path, cfg, ("python3", "-c", DOWNLOADER), 240)
    reporter = ListReporter()

    result = QemuFetcher(QemuConfig(guest_dir=guest_dir)).fetch(request, reporter)

    assert result.exit_status == 0
    for name, digest in sums.items():
        assert hashlib.sha256((request.share / name).read_bytes()).hexdigest() == digest
    log = (tmp_path / "console.log").read_text(errors="replace")
    assert "WALL etc read-only" in log
    assert "WALL host alias blocked" in log
    assert "WALL /usr remount rw status 0 " in log  # the guest's own read-only flag is gone,
    assert "WALL /usr refused after remount" in log  # QEMU's readonly=on still refuses
    assert "WALL /host/etc remount rw status 0 " in log
    assert "WALL /host/etc refused after remount" in log
    assert not (guest_dir / "root" / "usr" / "planted").exists()
    # The guest saw the alias, never the host's loopback address.
    assert "guest url http://10.0.2.100:" in log
    # The VM's symlink and FIFO exist on the host only as plain files (mapped-xattr).
    assert (request.share / "link").is_file()
    assert not (request.share / "link").is_symlink()
    assert (request.share / "fifo").is_file()
    assert not (cfg / "planted").exists()
    # Our config tree is untouched: the guest got a private copy with the rewritten URL.
    assert (cfg / "update-url").read_text() == url + "\n"
    assert sorted(server.bytes_served()) == sorted(["SHA256SUMS", "Demo_2.root", "Demo_2.efi"])
    assert new_processes() == set()  # QEMU and its forwarders are gone


def test_guest_that_never_powers_off_is_killed_at_the_timeout(
    guest_dir: Path,
    release_server: tuple[str, Path, Server],
    tmp_path: Path,
    new_processes: Callable[[], set[int]],
) -> None:
    url, _, _ = release_server
    cfg = vm_config(tmp_path, url)
    hang = "print('GUEST HANGING', flush=True); import time; time.sleep(3600)"
    request = _request(tmp_path, cfg, ("python3", "-c", hang), 60)
    start = time.monotonic()
    with pytest.raises(FetchError) as info:
        QemuFetcher(QemuConfig(guest_dir=guest_dir)).fetch(request, ListReporter())
    assert info.value.code == "fetch.timeout"
    assert info.value.exit_status == 20  # "could not check"
    assert time.monotonic() - start < 60 + 15
    # It was killed while running its command, not while still booting.
    assert "GUEST HANGING" in (tmp_path / "console.log").read_text(errors="replace")
    assert new_processes() == set()  # QEMU and its forwarders are gone


def test_hostile_console_output_is_bounded_and_escaped(
    guest_dir: Path, release_server: tuple[str, Path, Server], tmp_path: Path
) -> None:
    url, _, _ = release_server
    cfg = vm_config(tmp_path, url)
    evil = (
        "import sys; sys.stdout.write('A' * 65536 + '\\n');"
        "sys.stdout.write('airlock-guest: status 0\\n');"
        "sys.stdout.write('\\x1b]0;owned\\x07\\x1b[2J\\u202eEVIL\\r\\n'); sys.exit(7)"
    )
    request = _request(tmp_path, cfg, ("python3", "-c", evil), 240)
    fetcher = QemuFetcher(QemuConfig(guest_dir=guest_dir, max_log_bytes=4096))
    with pytest.raises(FetchError) as info:
        fetcher.fetch(request, ListReporter())
    message = info.value.message
    # The forged "status 0" line is not believed over init's own last line.
    assert info.value.code == "fetch.failed"
    assert "status 7" in message
    assert message.isascii()
    assert message.isprintable()
    assert "\\x1b" in message
    assert "\\u202e" in message
    log = (tmp_path / "console.log").read_bytes()
    assert len(log) <= 4096 + 64
    assert log.endswith(b"[airlock: console log truncated]\n")


def test_auto_accel_uses_kvm_only_if_a_probe_boot_reaches_init(guest_dir: Path) -> None:
    """`/dev/kvm` may exist and hang (nested PVM): `auto` decides by booting, within its bound."""
    kernel, initrd = guest_dir / "vmlinuz", guest_dir / "initrd.img"
    cfg = QemuConfig(guest_dir=guest_dir, accel=qemu.Accel.AUTO, probe_timeout_s=10)
    # Positive control: the probe recognises a guest that does boot (TCG always does).
    assert qemu._probe_boot(
        QemuConfig(guest_dir=guest_dir, probe_timeout_s=120), qemu.Accel.TCG, kernel, initrd
    )
    start = time.monotonic()
    kvm_works = qemu._probe_kvm(cfg, kernel, initrd)
    assert time.monotonic() - start < 10 + 10
    qemu._kvm_verdicts.clear()
    try:
        chosen = qemu._choose_accel(cfg, kernel, initrd)
        assert chosen is (qemu.Accel.KVM if kvm_works else qemu.Accel.TCG)
        assert (str(cfg.qemu), str(kernel)) in qemu._kvm_verdicts  # probed once per process
    finally:
        qemu._kvm_verdicts.clear()


# The guest (root, hostile) lists its interfaces, waits for an IPv6 address (which QEMU's user
# network gave it by router advertisement before ADR 0142's ipv6=off), then tries the host's
# address on it over TCP and UDP.  Since ADR 0172 the guest has no NIC at all: only lo, and the
# relay's 10.0.2.100 is the one address that leads anywhere.
V6_PROBE = r"""
import os, socket, time
print("WALL nics", sorted(os.listdir("/sys/class/net")), flush=True)
deadline, prefix = time.monotonic() + 15, None
while time.monotonic() < deadline and prefix is None:
    for line in open("/proc/net/if_inet6"):
        if line.startswith("fec0"):
            prefix = line.split()[0]
    time.sleep(0.5)
print("WALL v6", "address " + prefix if prefix else "none", flush=True)
try:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as d:
        d.sendto(b"udp from the guest", ("fec0::2", PORT))
    with socket.create_connection(("fec0::2", PORT), timeout=5) as s:
        s.sendall(b"tcp from the guest")
    print("WALL v6 tcp reached", flush=True)
except OSError as exc:
    print("WALL v6 refused:", exc.errno, flush=True)
"""


def _listen_v6(
    accepted: list[bytes], stop: threading.Event
) -> tuple[int, list[socket.socket], threading.Thread]:
    """TCP and UDP listeners on the host's ::1 (one port) that record what reaches them."""
    tcp = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    tcp.bind(("::1", 0))
    tcp.listen(4)
    port = tcp.getsockname()[1]
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp.bind(("::1", port))
    for sock in (tcp, udp):
        sock.settimeout(0.2)

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = tcp.accept()
                with conn:
                    conn.settimeout(5)
                    accepted.append(conn.recv(64))
            with contextlib.suppress(TimeoutError):
                accepted.append(udp.recv(64))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, [tcp, udp], thread


def test_guest_gets_no_ipv6_and_cannot_reach_the_host_over_it(
    guest_dir: Path, release_server: tuple[str, Path, Server], tmp_path: Path
) -> None:
    url, _, _ = release_server
    cfg = vm_config(tmp_path, url)
    accepted: list[bytes] = []
    stop = threading.Event()
    port, socks, thread = _listen_v6(accepted, stop)
    try:
        # Control: the listeners do record what reaches ::1 (the detector fires).
        with socket.create_connection(("::1", port), timeout=5) as s:
            s.sendall(b"host")
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as d:
            d.sendto(b"host udp", ("::1", port))
        for _ in range(100):
            if len(accepted) == 2:
                break
            time.sleep(0.05)
        assert sorted(accepted) == [b"host", b"host udp"]
        accepted.clear()
        probe = V6_PROBE.replace("PORT", str(port))
        request = _request(tmp_path, cfg, ("python3", "-c", probe), 240)
        QemuFetcher(QemuConfig(guest_dir=guest_dir)).fetch(request, ListReporter())
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(10)
        for sock in socks:
            sock.close()
    log = (tmp_path / "console.log").read_text(errors="replace")
    assert "WALL nics ['lo']" in log  # with a user NIC: ['eth0', 'lo']
    assert "WALL v6 none" in log  # with a user NIC without ipv6=off: "WALL v6 address fec0…"
    assert "WALL v6 refused" in log
    assert accepted == []
