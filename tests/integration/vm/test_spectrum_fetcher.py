# SPDX-License-Identifier: MIT
"""SpectrumFetcher against real s6, a real persistent mount namespace and a stand-in VMM."""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import airlock
from airlock.backends.fetcher import FetchRequest
from airlock.backends.fetcher.spectrum import SpectrumFetcher
from airlock.errors import FetchError
from airlock.events import ListReporter
from airlock.release.serve import Server
from tests.integration.vm.conftest import write_release
from tests.integration.vm.spectrum_world import World, spectrum_world
from tests.integration.vm.test_qemu_fetcher import DOWNLOADER
from tests.support import leaks

pytestmark = [pytest.mark.s6]


@pytest.fixture
def world(tmp_path: Path, new_processes: Callable[[], set[int]]) -> Iterator[World]:
    with spectrum_world(tmp_path) as w:
        yield w
    # Cleanup verified: no process of the world survives and nothing is mounted.
    assert new_processes() == set()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(tmp_path) not in mounts


def _guests() -> set[int]:
    """The stand-in guest's program (``tail -f``) anywhere below this test (s6 runs it)."""
    return {p for p in leaks.descendants(os.getpid()) if leaks.exe_name(p) == "tail"}


def _request(world: World, timeout_s: float = 30) -> FetchRequest:
    return FetchRequest(
        config_dir=world.config_dir,
        share=world.share,
        timeout_s=timeout_s,
        command=(),
        log_path=world.root / "fetch.log",
    )


WRITER = """
u={fs}/updates
cat {fs}/etc/update-url > $u/seen-url
echo payload > $u/Demo_2.root
touch {fs}/etc/planted 2>/dev/null && echo yes > $u/etc-writable
touch {fs}/planted 2>/dev/null && echo yes > $u/root-writable
exit 0
"""


def test_guest_that_finishes_before_vm_start_returns_is_seen(world: World) -> None:
    world.set_guest(WRITER.format(fs=world.fs))
    vmm_before = world.wait_up()
    start = time.monotonic()

    result = SpectrumFetcher(world.config()).fetch(_request(world), ListReporter())

    assert time.monotonic() - start < 10  # not a timeout: the early "really down" was caught
    assert result.exit_status is None
    assert (world.share / "Demo_2.root").read_text() == "payload\n"
    assert (world.share / "seen-url").read_text() == "https://updates.example/\n"
    assert not (world.share / "etc-writable").exists()  # the share root is read-only to the VM
    assert not (world.share / "root-writable").exists()
    assert (world.fs / "etc" / "vm-sysupdate.d" / "60-root.transfer").is_file()
    assert world.vm_mounts() == [str(world.fs)]  # the share is unmounted again
    assert world.wait_up() != vmm_before  # a fresh idle VMM replaced the one that ran the guest


def test_naive_svwait_after_vm_start_misses_the_quick_guest(world: World) -> None:
    """Negative control: Spectrum's `vm-start; s6-svwait -D` order loses the event
    (design.md#vm-wait-race)."""
    world.set_guest("exit 0")
    world.wait_up()
    subprocess.run([world.vm_start, "x"], check=True)
    waited = subprocess.run(["s6-svwait", "-D", "-t", "3000", world.service], check=False)
    assert waited.returncode == 99  # timed out: the "really down" event came and went


def test_guest_that_never_powers_off_is_stopped_at_the_timeout(world: World) -> None:
    world.set_guest(f"echo started > {world.fs}/updates/started\nexec tail -f /dev/null")
    world.wait_up()
    with pytest.raises(FetchError) as info:
        SpectrumFetcher(world.config()).fetch(_request(world, timeout_s=4), ListReporter())
    assert info.value.code == "fetch.timeout"
    assert (world.share / "started").exists()
    assert world.vm_mounts() == [str(world.fs)]
    assert _guests() == set()
    world.wait_up()  # the VMM is idle again


def test_failing_vm_stop_falls_back_to_the_supervisor(world: World, tmp_path: Path) -> None:
    world.set_guest("exec tail -f /dev/null")
    broken = tmp_path / "vm-stop-broken"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    world.wait_up()
    fetcher = SpectrumFetcher(world.config(vm_stop=(str(broken),)))
    with pytest.raises(FetchError) as info:
        fetcher.fetch(_request(world, timeout_s=3), ListReporter())
    assert info.value.code == "fetch.timeout"
    assert _guests() == set()
    assert world.vm_mounts() == [str(world.fs)]
    world.wait_up()  # restored with s6-svc -u


def test_vmm_service_down_is_refused_before_anything_is_mounted(world: World) -> None:
    subprocess.run(["s6-svc", "-d", world.service], check=True)
    time.sleep(0.5)
    with pytest.raises(FetchError) as info:
        SpectrumFetcher(world.config(stop_timeout_s=2)).fetch(_request(world), ListReporter())
    assert info.value.code == "fetch.vmm"
    assert world.vm_mounts() == [str(world.fs)]


def test_failing_vm_start_is_reported_and_nothing_stays_mounted(
    world: World, tmp_path: Path
) -> None:
    broken = tmp_path / "vm-start-broken"
    broken.write_text("#!/bin/sh\necho 'ch-remote: \x1b[31mboot failed' >&2\nexit 3\n")
    broken.chmod(0o755)
    world.wait_up()
    with pytest.raises(FetchError) as info:
        SpectrumFetcher(world.config(vm_start=(str(broken),))).fetch(
            _request(world), ListReporter()
        )
    assert info.value.code == "fetch.vm-start"
    assert "\x1b" not in info.value.message
    assert world.vm_mounts() == [str(world.fs)]


@pytest.mark.vm
@pytest.mark.slow
def test_spectrum_protocol_with_a_real_qemu_guest_as_the_vmm(
    world: World, guest_dir: Path, release_server: tuple[str, Path, Server]
) -> None:
    """The vmm instance boots the real guest on <run>/fs/<id>: Spectrum's protocol end to end."""
    url, root, _ = release_server
    sums = write_release(root, "2", {"Demo_2.root": b"R" * 100_000})
    (world.config_dir / "update-url").write_text(url + "\n")
    src = Path(airlock.__file__).resolve().parents[1]
    tests_root = Path(__file__).resolve().parents[3]
    world.set_guest(
        f"cd {shlex.quote(str(tests_root))}\n"
        f"exec env PYTHONPATH={shlex.quote(str(src))}:. {shlex.quote(sys.executable)} "
        f"-m tests.integration.vm.vmm_qemu {world.fs} {guest_dir} 200 python3 -c "
        f"{shlex.quote(DOWNLOADER)}"
    )
    world.wait_up()
    result = SpectrumFetcher(world.config()).fetch(_request(world, timeout_s=240), ListReporter())
    assert result.exit_status is None
    for name, digest in sums.items():
        assert hashlib.sha256((world.share / name).read_bytes()).hexdigest() == digest
    assert world.vm_mounts() == [str(world.fs)]
    assert not [p for p in leaks.descendants(os.getpid()) if "qemu" in leaks.exe_name(p)]
