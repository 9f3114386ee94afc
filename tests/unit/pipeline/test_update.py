# SPDX-License-Identifier: MIT
"""The orchestrator with a fake for every backend: order, nothing applied after a rejection,
cleanup after a failure at each step, the state written last."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from airlock import lock, state
from airlock.assessment import Assessment
from airlock.backends.apply import Listing
from airlock.errors import (
    AirlockError,
    ApplyError,
    BusyError,
    FetchError,
    HostError,
    SignatureError,
)
from airlock.events import Failed, Notice, Step, StepFinished, StepProgress, StepStarted
from airlock.formats import dialect
from airlock.pipeline.context import Outcome
from airlock.pipeline.update import run_check, run_update
from airlock.trusted.policy import Room

from .fakes import NOW, SIGNED, make_world, release, signer

ALL_STEPS = [
    Step.LOCK,
    Step.PREPARE,
    Step.CLEAN,
    Step.FETCH,
    Step.FREEZE,
    Step.INSPECT,
    Step.APPLY,
    Step.RECORD,
    Step.CLEANUP,
]


FREEZE_CALLS = ["snapshot", "droppable", "drop", "make_read_only", "sync"]


def fetch_before(calls: Sequence[str], name: str, later: str) -> bool:
    """``name`` was called once, after the fetch and before ``later``."""
    return calls.count(name) == 1 and calls.index("fetch") < calls.index(name) < calls.index(later)


def started(events: Sequence[object]) -> list[Step]:
    return [e.step for e in events if isinstance(e, StepStarted)]


def test_update_runs_every_step_in_the_design_order(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    assert run_update(w.ctx) is Outcome.UPDATED
    assert started(w.reporter.events) == ALL_STEPS
    finished = [e.step for e in w.reporter.events if isinstance(e, StepFinished)]
    assert finished == ALL_STEPS
    # The host's facts are read beside the freeze (ADR 0176): after the fetch, before the judge.
    calls = w.journal.calls
    assert fetch_before(calls, "installed", "judge")
    assert [c for c in calls if c != "installed"] == [
        "prepare",
        "remove_stale",
        "clean_share",
        "fetch",
        *FREEZE_CALLS,
        "judge",
        "apply",
        "delete_snapshot",
    ]
    assert w.inspector.listed == 1
    assert w.applier.applied == ["2"]
    assert any(isinstance(e, StepProgress) and e.step is Step.APPLY for e in w.reporter.events)
    saved = state.load(w.ctx.state_file)
    assert saved.pending == "2"
    assert (saved.booted, saved.blessed) == ("1", True)
    assert saved.floor == "1"  # 2 has not booted yet: 1 must stay installable
    assert saved.last_check == NOW
    assert saved.newest_signature == SIGNED


def test_inspection_gets_the_persisted_floor_and_signature_time(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    run_update(w.ctx)
    w2 = make_world(tmp_path, verdict=release(newer=False), current="2")  # 2 booted, blessed
    assert run_update(w2.ctx) is Outcome.UP_TO_DATE
    seen = w2.inspector.baselines[0]
    assert seen.floor == "2"
    assert seen.not_before == SIGNED
    assert seen.installed == "2"
    saved = state.load(w.ctx.state_file)
    assert (saved.floor, saved.pending, saved.booted) == ("2", None, "2")


def test_the_judge_gets_the_room_the_applier_measured(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    w.applier.rooms = (Room(transfer="60-root", bytes=8 << 20, where="slot"),)
    run_update(w.ctx)
    assert w.inspector.baselines[0].room == w.applier.rooms


def test_weak_settings_are_told_as_notices_of_the_inspect_step(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    w.inspector.warnings = ("every key in the keyring counts as a signer",)
    run_update(w.ctx)
    told = [e for e in w.reporter.events if isinstance(e, Notice) and e.step is Step.INSPECT]
    assert [e.message for e in told] == ["warning: every key in the keyring counts as a signer"]


def test_negative_control_no_weakness_no_notice(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    run_update(w.ctx)
    assert not [e for e in w.reporter.events if isinstance(e, Notice) and "warning" in e.message]


def test_a_boot_on_trial_or_a_failed_one_does_not_raise_the_floor(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    run_update(w.ctx)  # installs 2 while 1 runs
    trial = make_world(tmp_path, verdict=release(newer=False), current="2")
    trial.applier.boot = Assessment(booted="2", blessed=False, pending=(), failed=(), entries=())
    run_update(trial.ctx)
    assert trial.inspector.baselines[0].floor == "1"
    assert state.load(w.ctx.state_file).pending == "2"
    # 2 ran out of tries; systemd-boot went back to 1 by itself.
    back = make_world(tmp_path, verdict=release(newer=False), current="2")
    back.applier.boot = Assessment(booted="1", blessed=True, pending=(), failed=("2",), entries=())
    run_update(back.ctx)
    saved = state.load(w.ctx.state_file)
    assert (saved.floor, saved.pending, saved.failed, saved.booted) == ("1", None, ("2",), "1")
    assert back.inspector.baselines[0].floor == "1"


def test_up_to_date_applies_nothing_but_records_the_check(tmp_path: Path) -> None:
    w = make_world(tmp_path, verdict=release(newer=False, version="1"))
    assert run_update(w.ctx) is Outcome.UP_TO_DATE
    assert "apply" not in w.journal.calls
    assert Step.APPLY not in started(w.reporter.events)
    assert w.journal.calls[-1] == "delete_snapshot"
    saved = state.load(w.ctx.state_file)
    assert saved.last_check == NOW
    assert saved.floor == "1"  # the version that booted and was blessed
    assert saved.installed == "1"


def test_newest_signature_time_never_goes_back(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    run_update(w.ctx)
    older = signer(created=SIGNED.replace(year=2020))
    w2 = make_world(tmp_path, verdict=release(newer=False, signers=(older,)))
    run_update(w2.ctx)
    assert state.load(w.ctx.state_file).newest_signature == SIGNED


def test_rejection_applies_nothing_and_keeps_state(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    w.journal.fail["judge"] = SignatureError("Refusing SHA256SUMS: bad signature")
    with pytest.raises(SignatureError):
        run_update(w.ctx)
    assert w.applier.applied == []
    assert "apply" not in w.journal.calls
    assert not w.ctx.state_file.exists()
    assert w.journal.calls[-1] == "delete_snapshot"
    failed = [e for e in w.reporter.events if isinstance(e, Failed)]
    assert [(f.step, f.code) for f in failed] == [(Step.INSPECT, "reject.signature")]


FAILURES: list[tuple[str, AirlockError]] = [
    ("prepare", HostError("not btrfs", code="host.not-btrfs")),
    ("remove_stale", HostError("x")),
    ("clean_share", HostError("x")),
    ("fetch", FetchError("timed out", code="fetch.timeout")),
    ("snapshot", HostError("x")),
    ("droppable", HostError("x")),
    ("drop", HostError("x")),
    ("make_read_only", HostError("x")),
    ("sync", HostError("x")),
    ("installed", ApplyError("x")),
    ("judge", SignatureError("x")),
    ("apply", ApplyError("sysupdate failed", code="apply.sysupdate")),
]


@pytest.mark.parametrize(("where", "error"), FAILURES, ids=[f[0] for f in FAILURES])
def test_failure_at_each_step_cleans_up_and_releases_the_lock(
    tmp_path: Path, where: str, error: AirlockError
) -> None:
    w = make_world(tmp_path)
    w.journal.fail[where] = error
    with pytest.raises(type(error)):
        run_update(w.ctx)
    calls = w.journal.calls
    # Nothing after the failing call except the snapshot deletion (and, for the host's facts,
    # read in a thread beside the freeze, the rest of the freeze).
    after = [
        c for c in calls[calls.index(where) + 1 :] if where != "installed" or c not in FREEZE_CALLS
    ]
    assert set(after) <= {"delete_snapshot"}
    if "snapshot" in calls:
        assert after == ["delete_snapshot"] or where == "delete_snapshot"
    assert not w.staging.snapshot_exists
    assert not w.ctx.state_file.exists()
    if where != "apply":
        assert w.applier.applied == []
    # The lock is free again.
    with lock.hold(w.config.lock.path):
        pass
    failed = [e for e in w.reporter.events if isinstance(e, Failed)]
    assert len(failed) == 1
    assert failed[0].code == error.code


def test_check_never_applies_and_reports_available(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    assert run_check(w.ctx) is Outcome.AVAILABLE
    assert "apply" not in w.journal.calls
    assert Step.APPLY not in started(w.reporter.events)
    saved = state.load(w.ctx.state_file)
    assert saved.last_check == NOW
    assert saved.pending is None


def test_check_up_to_date(tmp_path: Path) -> None:
    w = make_world(tmp_path, verdict=release(newer=False))
    assert run_check(w.ctx) is Outcome.UP_TO_DATE


def test_busy_lock_fails_fast_before_any_backend_call(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    with lock.hold(w.config.lock.path), pytest.raises(BusyError) as info:
        run_update(w.ctx)
    assert w.journal.calls == []
    assert info.value.exit_status == 4
    failed = [e for e in w.reporter.events if isinstance(e, Failed)]
    assert failed[0].step is Step.LOCK


def test_fetch_request_carries_share_config_and_timeout(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    (tmp_path / "vm-defs").mkdir()
    (tmp_path / "vm-defs" / "50-a.transfer").write_text("[Transfer]\n")
    (tmp_path / "vm-defs" / "60-masked.transfer").symlink_to("/dev/null")
    (tmp_path / "update-url").write_text("http://127.0.0.1:1/\n")
    run_update(w.ctx)
    fetcher = w.ctx.fetcher
    req = fetcher.requests[0]  # type: ignore[attr-defined]  # FakeFetcher
    assert req.share == w.staging.share
    assert req.timeout_s == w.config.fetcher.timeout_s
    assert req.command == w.config.fetcher.command
    assert (req.config_dir / "vm-sysupdate.d" / "50-a.transfer").is_file()
    masked = req.config_dir / "vm-sysupdate.d" / "60-masked.transfer"
    assert os.readlink(masked) == "/dev/null"
    assert oct(req.config_dir.stat().st_mode & 0o777) == "0o755"
    assert (req.config_dir / "update-url").read_text() == "http://127.0.0.1:1/\n"
    assert (req.config_dir / "systemd" / "import-pubring.gpg").read_bytes() == b"k"


def test_a_cleanup_failure_does_not_hide_the_rejection(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    w.journal.fail["judge"] = SignatureError("bad signature")
    w.journal.fail["delete_snapshot"] = HostError("btrfs failed", code="host.btrfs")
    with pytest.raises(SignatureError):
        run_update(w.ctx)
    codes = [e.code for e in w.reporter.events if isinstance(e, Failed)]
    assert codes == ["reject.signature", "host.btrfs"]


def test_a_cleanup_failure_after_success_is_reported(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    w.journal.fail["delete_snapshot"] = HostError("btrfs failed", code="host.btrfs")
    with pytest.raises(HostError):
        run_update(w.ctx)
    assert w.applier.applied == ["2"]


@pytest.mark.parametrize("bad", ["-rf", "1 2", "a/b", ""])
def test_an_invalid_version_never_reaches_sysupdate(tmp_path: Path, bad: str) -> None:
    w = make_world(tmp_path, verdict=release(version=bad))
    with pytest.raises(ApplyError) as info:
        run_update(w.ctx)
    assert info.value.code == "apply.version"
    assert w.applier.applied == []


@pytest.mark.parametrize(
    ("delivered", "code"),
    [
        ((), "fetch.nothing"),
        (("SHA256SUMS.gpg",), "fetch.nothing"),
        (("SHA256SUMS",), "fetch.unsigned"),
    ],
)
def test_a_vm_that_sent_nothing_usable_is_could_not_check_with_its_log(
    tmp_path: Path, delivered: tuple[str, ...], code: str
) -> None:
    # Spectrum's updates-dir-check: no signature arrived → "check its logs" (status 20, not 21).
    w = make_world(tmp_path)
    w.staging.delivered = delivered
    with pytest.raises(FetchError) as info:
        run_update(w.ctx)
    assert info.value.code == code
    assert info.value.hint is not None
    assert os.fspath(tmp_path / "staging" / "fetch.log") in info.value.hint
    assert "judge" not in w.journal.calls
    assert w.applier.applied == []
    assert w.journal.calls[-1] == "delete_snapshot"


def test_negative_control_a_delivery_reaches_the_judge(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    w.staging.delivered = ("SHA256SUMS", "SHA256SUMS.sha256.asc")
    assert run_update(w.ctx) is Outcome.UPDATED
    assert "judge" in w.journal.calls


def test_the_state_file_defaults_to_the_staging_directory(tmp_path: Path) -> None:
    w = make_world(tmp_path, state_path=None)
    assert run_update(w.ctx) is Outcome.UPDATED
    saved = state.load(tmp_path / "staging" / "state.json")
    assert saved.pending == "2"
    assert not (tmp_path / "state").exists()


def test_a_waiting_run_says_who_holds_the_lock(tmp_path: Path) -> None:
    import threading

    w = make_world(tmp_path, wait=True)
    release_it = threading.Event()

    def holder() -> None:
        with lock.hold(w.config.lock.path):
            held.set()
            release_it.wait(10)

    held = threading.Event()
    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    threading.Timer(0.5, release_it.set).start()
    assert run_update(w.ctx) is Outcome.UPDATED
    t.join()
    notices = [e.message for e in w.reporter.events if isinstance(e, Notice)]
    assert notices[0] == f"waiting for the update lock (pid {os.getpid()} holds it)"


def test_a_spectrum_vm_s_signature_is_presented_under_the_name_sysupdate_257_reads(
    tmp_path: Path,
) -> None:
    w = make_world(tmp_path)
    w.applier.rules = dialect.V257
    w.staging.delivered = ("SHA256SUMS", "SHA256SUMS.sha256.asc")
    assert run_update(w.ctx) is Outcome.UPDATED
    assert w.staging.frozen == ["SHA256SUMS", "SHA256SUMS.gpg", "SHA256SUMS.sha256.asc"]
    freeze = [e for e in w.reporter.events if isinstance(e, StepFinished) and e.step is Step.FREEZE]
    assert "SHA256SUMS.gpg from SHA256SUMS.sha256.asc" in freeze[0].detail


def test_negative_control_without_the_need_nothing_is_copied(tmp_path: Path) -> None:
    w = make_world(tmp_path)  # its applier is a 262, which reads .sha256.asc itself
    w.staging.delivered = ("SHA256SUMS", "SHA256SUMS.sha256.asc")
    assert run_update(w.ctx) is Outcome.UPDATED
    assert "copy_signature" not in w.journal.calls


def test_the_host_facts_are_read_while_the_snapshot_is_frozen(tmp_path: Path) -> None:
    """The freeze's last call waits for ``installed()``: it returns only if they overlap."""
    w = make_world(tmp_path)
    listed = threading.Event()
    installed, sync = w.applier.installed, w.staging.sync

    def installed_then_tell() -> Listing:
        try:
            return installed()
        finally:
            listed.set()

    def sync_once_listed(snapshot: Path) -> None:
        # Read after the freeze (the old order), the facts would never come: fail, not hang.
        assert listed.wait(10), "the host facts were not read during the freeze"
        sync(snapshot)

    w.applier.installed = installed_then_tell  # type: ignore[method-assign]
    w.staging.sync = sync_once_listed  # type: ignore[method-assign]
    assert run_update(w.ctx) is Outcome.UPDATED
    assert w.inspector.baselines[0].installed == "1"


def test_a_failed_freeze_waits_for_the_host_facts_thread(tmp_path: Path) -> None:
    """No child of the facts thread outlives the run, on a failure path either."""
    w = make_world(tmp_path)
    w.journal.fail["snapshot"] = HostError("no room", code="host.snapshot")
    installed = w.applier.installed
    ended = threading.Event()

    def slow_installed() -> Listing:
        time.sleep(0.3)  # longer than the failing freeze takes
        try:
            return installed()
        finally:
            ended.set()

    w.applier.installed = slow_installed  # type: ignore[method-assign]
    with pytest.raises(HostError):
        run_update(w.ctx)
    assert ended.is_set()
    assert not [t for t in threading.enumerate() if t.name == "airlock-facts"]


def test_a_failed_listing_is_the_inspect_steps_failure(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    w.journal.fail["installed"] = ApplyError("sysupdate list failed", code="apply.list")
    with pytest.raises(ApplyError):
        run_update(w.ctx)
    failed = [(e.step, e.code) for e in w.reporter.events if isinstance(e, Failed)]
    assert failed == [(Step.INSPECT, "apply.list")]
    assert "judge" not in w.journal.calls
    assert w.journal.calls[-1] == "delete_snapshot"
