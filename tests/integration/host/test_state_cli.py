# SPDX-License-Identifier: MIT
"""``airlock state show|reset`` (cli/admin.py): root only, under the update lock, only with --yes.

Privileged (the verbs are root's): the CLI runs as a real subprocess (its exit status and output
are what an administrator sees); the lock is held by another real process; non-root is a real
unprivileged uid (``setpriv``).
Every --json line is checked against the shipped schema (``schemas.check_output``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from airlock import cli, state
from airlock.errors import ExitStatus
from tests.support import schemas
from tests.unit.host.test_lock_state import _holder

SAVED = state.State(
    installed="2", pending="3", booted="2", blessed=True, failed=("2.5",), floor="2",
    last_check=datetime(2026, 11, 1, tzinfo=UTC),
    newest_signature=datetime(2026, 10, 1, tzinfo=UTC), manifest_sha256="a" * 64,
    last_seen=datetime(2026, 11, 2, tzinfo=UTC), best_before=date(2026, 11, 8), fresh_required=True,
)  # fmt: skip


@pytest.fixture
def host(tmp_path: Path) -> Path:
    cfg = tmp_path / "host.toml"
    cfg.write_text(f'[state]\npath = "{tmp_path}/state.json"\n[lock]\npath = "{tmp_path}/lock"\n')
    state.save(tmp_path / "state.json", SAVED)
    return tmp_path


def _airlock(
    host: Path, *args: str, user: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [
        *(user or []),
        sys.executable,
        "-m",
        "airlock",
        *args,
        "--config",
        str(host / "host.toml"),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    schemas.check_output(args, done.stdout)
    return done


def test_show_prints_every_field(host: Path) -> None:
    done = _airlock(host, "state", "show")
    assert done.returncode == 0, done.stderr
    assert "  floor:             2\n" in done.stdout
    assert "  fresh_required:    True\n" in done.stdout
    body = json.loads(_airlock(host, "state", "show", "--json").stdout)
    assert body["state"] == {k: v for k, v in SAVED.to_json().items() if k != "format"}
    assert (body["reset"], body["previous"]) == ([], None)


def test_reset_without_yes_writes_nothing_and_says_what_it_would_do(host: Path) -> None:
    before = (host / "state.json").read_bytes()
    done = _airlock(host, "state", "reset", "--field", "floor", "--field", "newest_signature")
    assert done.returncode == ExitStatus.USAGE
    assert done.stdout.splitlines() == [
        "would reset floor: 2 -> none",
        "would reset newest_signature: 2026-10-01T00:00:00+00:00 -> none",
    ]
    assert "add --yes" in done.stderr
    assert (host / "state.json").read_bytes() == before


@pytest.mark.parametrize(
    "args", [("state", "reset", "--yes"), ("state", "reset", "--field", "installed", "--yes")]
)
def test_reset_needs_a_known_field(host: Path, args: tuple[str, ...]) -> None:
    before = (host / "state.json").read_bytes()
    done = _airlock(host, *args)
    assert done.returncode == ExitStatus.USAGE
    assert len(done.stderr.splitlines()) <= 2 and "Traceback" not in done.stderr
    assert (host / "state.json").read_bytes() == before


def test_reset_changes_exactly_the_fields_named(host: Path) -> None:
    done = _airlock(
        host, "state", "reset", "--field", "floor", "--field", "fresh_required", "--yes"
    )
    assert done.returncode == 0, done.stderr
    assert "reset floor: 2 -> none" in done.stdout
    assert "reset fresh_required: True -> False" in done.stdout
    expected = dataclasses.replace(SAVED, floor=None, fresh_required=False)
    assert state.load(host / "state.json") == expected
    assert (host / "state.json").stat().st_mode & 0o777 == 0o600


def test_reset_all_json_lists_what_it_reset_and_what_was_there(host: Path) -> None:
    done = _airlock(host, "state", "reset", "--all", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["reset"] == list(state.RESETTABLE)
    assert body["previous"]["floor"] == "2"
    after = state.load(host / "state.json")
    assert (after.floor, after.newest_signature, after.fresh_required, after.last_check) == (
        None, None, False, None
    )  # fmt: skip
    assert (after.installed, after.booted) == ("2", "2")  # not resettable: what the disk says


def test_a_corrupt_state_file_is_replaced_only_by_reset_all(host: Path) -> None:
    (host / "state.json").write_bytes(b"{not json")
    assert _airlock(host, "state", "show").returncode == ExitStatus.CONFIG
    part = _airlock(host, "state", "reset", "--field", "floor", "--yes")
    assert part.returncode == ExitStatus.CONFIG
    assert "only --all" in part.stderr
    done = _airlock(host, "state", "reset", "--all", "--yes")
    assert done.returncode == 0, done.stderr
    assert "replaced the unreadable" in done.stdout
    assert state.load(host / "state.json") == state.State()


def test_reset_refuses_while_another_process_holds_the_update_lock(host: Path) -> None:
    before = (host / "state.json").read_bytes()
    holder = _holder(host / "lock", 30)
    try:
        busy = _airlock(host, "state", "reset", "--field", "floor", "--yes", "--json")
    finally:
        holder.kill()
        holder.wait()
    assert busy.returncode == ExitStatus.BUSY
    error = json.loads(busy.stdout)
    assert error["code"] == "busy.lock"
    assert f"pid {holder.pid}" in error["message"]
    assert (host / "state.json").read_bytes() == before
    # The holder is gone: the same command goes through.
    done = _airlock(host, "state", "reset", "--field", "floor", "--yes")
    assert done.returncode == 0, done.stderr
    assert state.load(host / "state.json").floor is None


@pytest.mark.parametrize("verb", [("show",), ("reset", "--all", "--yes")])
def test_non_root_is_refused_with_one_line(host: Path, verb: tuple[str, ...]) -> None:
    if os.geteuid() != 0:
        pytest.skip(
            "the suite runs unprivileged: every caller is non-root here"
        )  # pragma: no cover
    host.chmod(0o755)
    os.chmod(host / "host.toml", 0o644)
    before = (host / "state.json").read_bytes()
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    done = _airlock(host, "state", *verb, user=nobody)
    assert done.returncode == ExitStatus.HOST
    assert done.stderr.splitlines()[0] == (
        "error: airlock state needs root (the state file is root's, mode 0600)"
    )
    assert (host / "state.json").read_bytes() == before


def test_an_old_state_file_without_the_new_fields_loads(tmp_path: Path) -> None:
    old = {"format": 1, "installed": "2", "floor": "2", "last_check": "2026-11-01T00:00:00+00:00",
           "newest_signature": "2026-10-01T00:00:00+00:00", "pending": None, "booted": "2",
           "blessed": True, "failed": [], "manifest_sha256": None, "available": None}  # fmt: skip
    (tmp_path / "state.json").write_text(json.dumps(old))
    loaded = state.load(tmp_path / "state.json")
    assert (loaded.last_seen, loaded.best_before, loaded.fresh_required) == (None, None, False)
    assert loaded.floor == "2"


def test_the_root_check_comes_before_anything_is_read(
    host: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process, so it exercises the module under test even where a subprocess run as another
    # uid could not read a copy of the source (tests/mutation runs src/ from a private directory).
    before = (host / "state.json").read_bytes()
    monkeypatch.setattr(os, "geteuid", lambda: 65534)
    config = str(host / "host.toml")
    assert cli.main(["state", "reset", "--all", "--yes", "--config", config]) == ExitStatus.HOST
    assert "airlock state needs root" in capsys.readouterr().err
    assert (host / "state.json").read_bytes() == before
