# SPDX-License-Identifier: MIT
"""SIGKILL ``airlock update --fetcher spectrum`` while the update VM runs (real s6, a real
persistent mount namespace, the stand-in VMM): the VM is not airlock's child, so the teardown
guard stops it (``vm-stop``) and unbinds ``shared`` from its mount namespace; with that guard
stopped too, the next run does it from the run record before it touches ``shared``."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.host.conftest import btrfs_dir  # noqa: F401 - the fixture
from tests.integration.host.test_update_e2e import assert_no_leftovers, assert_v2_installed
from tests.integration.host.world import World, build, events
from tests.integration.vm.spectrum_world import World as Spectrum
from tests.integration.vm.spectrum_world import spectrum_world
from tests.support import killer, leaks
from tests.support.killer import Point

pytestmark = [pytest.mark.s6, pytest.mark.btrfs, pytest.mark.sysupdate]


@pytest.fixture
def worlds(tmp_path: Path, btrfs_dir: Path) -> Iterator[tuple[World, Spectrum]]:  # noqa: F811
    w = build(tmp_path / "w", btrfs_dir)
    try:
        with spectrum_world(tmp_path / "spectrum") as sw:
            spectrum = sw.config()
            w.write_config(
                ["/usr/bin/airlock"],  # unused: Spectrum's VM decides what it runs
                {
                    "fetcher.spectrum.run_dir": spectrum.run_dir,
                    "fetcher.spectrum.vm_name": spectrum.vm_name,
                    "fetcher.spectrum.vm_start": spectrum.vm_start,
                    "fetcher.spectrum.vm_stop": spectrum.vm_stop,
                    "fetcher.spectrum.stop_timeout_s": spectrum.stop_timeout_s,
                    "fetcher.timeout_s": 120,
                },
            )
            yield w, sw
    finally:
        w.key.close()


def _guests() -> set[int]:
    """The stand-in guest (``tail -f``) below this test: s6 runs it in the VM's namespace."""
    return {p for p in leaks.descendants(os.getpid()) if leaks.exe_name(p) == "tail"}


def _kill_while_the_vm_runs(w: World, sw: Spectrum, *, stop_the_guard: bool) -> killer.Killed:
    copied = w.staging / "shared" / ".copied"
    sw.set_guest(
        f"cp {w.release}/* {sw.fs}/updates/ && touch {sw.fs}/updates/.copied\n"
        "exec tail -f /dev/null"
    )
    sw.wait_up()
    guests: set[int] = set()

    def vm_wrote_into_shared() -> bool:
        if not copied.exists():
            return False
        guests.update(_guests())
        if stop_the_guard:
            (teardown,) = json.loads((w.staging / "run.json").read_text())["teardowns"]
            os.kill(teardown["guard"]["pid"], signal.SIGSTOP)
        return True

    killed = killer.kill_at(
        [sys.executable, "-m", "airlock", "update", str(w.staging), "--json",
         "--fetcher", "spectrum", "--config", str(w.config)],
        Point(name="spectrum-vm-running", step="fetch", ready=vm_wrote_into_shared),
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    assert guests  # the VM was running when airlock died
    return killed


def _wait(condition: object, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.1)


def _rerun_converges(w: World, sw: Spectrum) -> dict[str, object]:
    sw.set_guest(f"cp {w.release}/* {sw.fs}/updates/")
    out = w.update("--fetcher", "spectrum", timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert events(out.stdout)[-1]["outcome"] == "updated"
    assert_v2_installed(w)
    assert_no_leftovers(w)
    assert sw.vm_mounts() == [str(sw.fs)]
    return next(
        e for e in events(out.stdout) if e["event"] == "step-finished" and e["step"] == "prepare"
    )


def test_the_vm_is_stopped_and_shared_unbound_when_airlock_is_sigkilled(
    worlds: tuple[World, Spectrum],
) -> None:
    w, sw = worlds
    killed = _kill_while_the_vm_runs(w, sw, stop_the_guard=False)
    assert killer.gone(killed.tree) == set()
    _wait(lambda: not _guests() and sw.vm_mounts() == [str(sw.fs)])
    assert _guests() == set()  # vm-stop ran: the VMM that ran the guest is gone
    assert sw.vm_mounts() == [str(sw.fs)]  # and shared is no longer bound into the VM
    assert killer.released(w.staging) == set()
    prepare = _rerun_converges(w, sw)
    # The guard had done it all; the record's teardown runs again (it is idempotent).
    assert "stopped 0 process(es) and ran 1 teardown(s)" in str(prepare["detail"])


def test_with_its_guard_stopped_too_the_next_run_stops_the_vm_first(
    worlds: tuple[World, Spectrum],
) -> None:
    """Negative control for the guard (stopped, it cannot act: the VM runs on, shared bound),
    positive test for the run record (the next run replays the teardown before anything else)."""
    w, sw = worlds
    killed = _kill_while_the_vm_runs(w, sw, stop_the_guard=True)
    time.sleep(2)
    assert _guests()  # the VM still runs...
    assert sw.vm_mounts() == [str(sw.fs), str(sw.fs / "updates")]  # ...with shared bound
    prepare = _rerun_converges(w, sw)
    assert "stopped 1 process(es) and ran 1 teardown(s)" in str(prepare["detail"])
    assert _guests() == set()
    assert killer.gone(killed.tree) == set()
