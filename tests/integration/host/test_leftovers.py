# SPDX-License-Identifier: MIT
"""What a killed run leaves is found by its run record, never by command lines (issue #15 item 7).

A local user's process that names the snapshot in its argv no longer makes updates busy (the old
``/proc/*/cmdline`` scan refused with ``busy.orphan``).  What the record of a dead run names is
stopped before ``shared`` is touched, but only if it is the very same process (pid and start
time), the record is root's, and it is from this boot.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock import pids
from tests.support import killer, leaks
from tests.support.killer import Point

from .test_update_e2e import assert_no_leftovers, assert_v2_installed
from .world import World, events

pytestmark = [pytest.mark.btrfs, pytest.mark.sandbox, pytest.mark.sysupdate]


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not airlock's and must survive every run."""
    p = subprocess.Popen(["/bin/sleep", "600"])
    yield p
    p.kill()
    p.wait()


def _identity(p: subprocess.Popen[bytes]) -> dict[str, int]:
    who = pids.identify(p.pid)
    assert who is not None
    return who.as_json()


def _plant_record(w: World, record: dict[str, object], *, owner_uid: int = 0) -> None:
    w.staging.mkdir(mode=0o700, exist_ok=True)
    path = w.staging / "run.json"
    base = {"v": 1, "boot_id": pids.boot_id(), "pid_ns": pids.frame(), "owner": None}
    path.write_text(json.dumps({**base, **record}))
    os.chown(path, owner_uid, owner_uid)


def test_a_local_process_naming_the_snapshot_does_not_block_the_update(world: World) -> None:
    w = world
    # Any local user can put the snapshot's path in their argv; it proves nothing.
    squatter = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
         "/usr/bin/python3", "-c", "import time; time.sleep(600)",
         str(w.staging / "snapshot"), str(w.staging)],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while (
            str(w.staging / "snapshot").encode()
            not in Path(f"/proc/{squatter.pid}/cmdline").read_bytes()
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        out = w.update()
        assert out.returncode == 0, out.stderr[-2000:]
        assert events(out.stdout)[-1]["outcome"] == "updated"
        assert_v2_installed(w)
        assert squatter.poll() is None  # and it was not touched either
    finally:
        squatter.kill()
        squatter.wait()


def test_a_recorded_leftover_is_stopped_before_shared_is_touched(world: World) -> None:
    """Negative control for the guard, positive test for the record: with the sandbox's guard
    stopped (SIGSTOP) it cannot do its job, so the sandbox outlives the killed airlock; the next
    run finds it in the record and stops it before anything else."""
    w = world
    copied = w.staging / "shared" / ".copied"
    w.write_config(w.copy_in("&& touch /host/updates/.copied && exec sleep 600"))
    stopped_guard: list[int] = []

    def sandbox_running_and_guard_stopped() -> bool:
        if not copied.exists():
            return False
        record = json.loads((w.staging / "run.json").read_text())
        (child,) = record["children"]  # the sandbox: the only child alive during fetch
        os.kill(child["guard"]["pid"], signal.SIGSTOP)
        stopped_guard.append(child["guard"]["pid"])
        return True

    killed = killer.kill_at(
        [sys.executable, "-m", "airlock", "update", str(w.staging), "--json",
         "--config", str(w.config)],
        Point(name="guard-stopped", step="fetch", ready=sandbox_running_and_guard_stopped),
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    record = json.loads((w.staging / "run.json").read_text())
    init = pids.ProcessId.from_json(record["children"][0]["init"])
    assert init is not None
    time.sleep(1)
    survivors = leaks.alive(killed.tree)
    assert pids.alive(init)  # the leftover really is there (the guard could not act)
    assert len(survivors) >= 4  # the stopped guard, its init, bwrap and the payload

    w.write_config(w.copy_in())
    out = w.update()
    assert out.returncode == 0, out.stderr[-2000:]
    prepare = next(
        e for e in events(out.stdout) if e["event"] == "step-finished" and e["step"] == "prepare"
    )
    assert "stopped 2 process(es)" in str(prepare["detail"])  # the sandbox's init and guard
    assert not pids.alive(init)
    assert killer.gone(survivors) == set()
    assert_v2_installed(w)
    assert_no_leftovers(w)
    assert not os.path.lexists(w.staging / "run.json")


def test_a_record_naming_a_reused_pid_kills_nothing(
    world: World, bystander: subprocess.Popen[bytes]
) -> None:
    who = _identity(bystander)
    # Same pid, another start time: the pid was reused by a process that is not ours to kill.
    _plant_record(world, {"children": [{"guard": {**who, "start": who["start"] + 1}}]})
    out = world.update()
    assert out.returncode == 0, out.stderr[-2000:]
    assert bystander.poll() is None


def test_negative_control_a_record_naming_the_very_process_stops_it(
    world: World, bystander: subprocess.Popen[bytes]
) -> None:
    _plant_record(world, {"children": [{"guard": _identity(bystander)}]})
    out = world.update()
    assert out.returncode == 0, out.stderr[-2000:]
    assert bystander.wait(timeout=10) == -signal.SIGKILL


@pytest.mark.parametrize("trick", ["other-owner", "other-boot", "other-pid-namespace"])
def test_a_record_not_ours_or_from_another_boot_is_ignored(
    world: World, bystander: subprocess.Popen[bytes], trick: str
) -> None:
    if trick == "other-owner":
        _plant_record(world, {"children": [{"guard": _identity(bystander)}]}, owner_uid=65534)
    elif trick == "other-boot":
        _plant_record(world, {"children": [{"guard": _identity(bystander)}]})
        path = world.staging / "run.json"
        path.write_text(path.read_text().replace(pids.boot_id(), "0" * 32))
    else:  # numbered in another PID namespace: the same numbers name other processes here
        _plant_record(world, {"pid_ns": "pid:[1]", "children": [{"guard": _identity(bystander)}]})
    out = world.update()
    assert out.returncode == 0, out.stderr[-2000:]
    assert bystander.poll() is None


def test_a_record_whose_owner_still_runs_makes_the_run_busy(
    world: World, bystander: subprocess.Popen[bytes]
) -> None:
    """Two configurations with different lock files on one staging directory."""
    digest = world.disk_digest()
    _plant_record(world, {"owner": _identity(bystander), "children": []})
    out = world.update()
    assert out.returncode == 4, out.stderr[-2000:]
    assert events(out.stdout)[-1]["code"] == "busy.staging"
    assert world.disk_digest() == digest
    assert bystander.poll() is None
