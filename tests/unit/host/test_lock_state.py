# SPDX-License-Identifier: MIT
"""lock.py (flock, holder pid, --wait) and state.py (atomic, strict)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from airlock import lock, state
from airlock.errors import BusyError, ConfigError

HOLDER = """
import sys, time
from pathlib import Path
from airlock import lock
with lock.hold(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(path: Path, seconds: float) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "held"
    return p


def test_busy_names_the_holder_pid(tmp_path: Path) -> None:
    path = tmp_path / "update-lock"
    p = _holder(path, 30)
    try:
        with pytest.raises(BusyError) as info, lock.hold(path):
            pass
        assert f"pid {p.pid}" in info.value.message
        assert info.value.code == "busy.lock"
    finally:
        p.kill()
        p.wait()


def test_sigkilled_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "update-lock"
    p = _holder(path, 30)
    p.kill()
    p.wait()
    with lock.hold(path):
        assert lock.holder_pid(path) == os.getpid()
    assert lock.holder_pid(path) is None


def test_wait_blocks_until_free(tmp_path: Path) -> None:
    path = tmp_path / "update-lock"
    p = _holder(path, 0.5)
    start = time.monotonic()
    with lock.hold(path, wait=True, timeout_s=10):
        pass
    assert time.monotonic() - start > 0.2
    p.wait()


def test_wait_with_timeout_gives_up(tmp_path: Path) -> None:
    path = tmp_path / "update-lock"
    p = _holder(path, 30)
    try:
        with pytest.raises(BusyError), lock.hold(path, wait=True, timeout_s=0.3):
            pass
    finally:
        p.kill()
        p.wait()


def test_lock_refuses_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "target").write_text("")
    (tmp_path / "update-lock").symlink_to(tmp_path / "target")
    with pytest.raises(Exception) as info, lock.hold(tmp_path / "update-lock"):  # noqa: PT011
        pass
    assert "lock" in str(info.value)


def test_state_round_trip_and_atomic_mode(tmp_path: Path) -> None:
    path = tmp_path / "s" / "state.json"
    assert state.load(path) == state.State()
    s = state.State(
        installed="1",
        pending="2",
        booted="1",
        blessed=True,
        failed=("1.5", "1.10"),
        floor="2",
        last_check=datetime(2026, 1, 2, tzinfo=UTC),
        newest_signature=datetime(2026, 1, 1, tzinfo=UTC),
        manifest_sha256="a" * 64,
    )
    state.save(path, s)
    assert state.load(path) == s
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"[]",
        b'{"format": 2}',
        b'{"format": 1, "floor": 3}',
        b'{"format": 1, "last_check": "2026-01-01T00:00:00"}',
        b'{"format": 1, "floor": "a\\u001b"}',
        b'{"format": 1, "blessed": "yes"}',
        b'{"format": 1, "failed": "2"}',
        b'{"format": 1, "failed": [2]}',
        b'{"format": 1, "failed": [null]}',
        b'{"format": 1, "failed": ["a\\u001b"]}',
        b"\xff",
    ],
)
def test_corrupt_state_is_refused_not_reset(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(raw)
    with pytest.raises(ConfigError):
        state.load(path)
