# SPDX-License-Identifier: MIT
"""lock.py (OFD record lock vs s6-setlock, holder pid, --wait) and state.py (atomic, strict)."""

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


def _s6_setlock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """``s6-setlock PATH`` (skalibs' fd_lock, as Spectrum takes the lock) holding it for a while."""
    p = subprocess.Popen(
        ["s6-setlock", str(path), "sh", "-c", f"echo held; exec sleep {seconds}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "held"
    return p


def _lock_kind(path: Path) -> str:
    """The kind of lock /proc/locks lists on ``path`` (POSIX, OFDLCK or FLOCK)."""
    st = path.stat()
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    kinds = [
        line.split()[1]
        for line in Path("/proc/locks").read_text().splitlines()
        if "->" not in line and line.split()[5] == where
    ]
    assert len(kinds) == 1, kinds
    return kinds[0]


def test_s6_setlock_holds_a_posix_record_lock(tmp_path: Path) -> None:
    # What skalibs' fd_lock takes: the reason airlock cannot use flock (docs/adr/0132).
    path = tmp_path / "update-lock"
    p = _s6_setlock(path, 30)
    try:
        assert _lock_kind(path) == "POSIX"
    finally:
        p.kill()
        p.wait()
    with lock.hold(path):
        assert _lock_kind(path) == "OFDLCK"


def test_s6_setlock_holder_makes_airlock_busy_with_its_pid(tmp_path: Path) -> None:
    path = tmp_path / "update-lock"
    p = _s6_setlock(path, 30)
    try:
        with pytest.raises(BusyError) as info, lock.hold(path):
            pass
        assert f"pid {p.pid}" in info.value.message
    finally:
        p.kill()
        p.wait()


def test_negative_control_flock_does_not_exclude_s6_setlock(tmp_path: Path) -> None:
    # The old lock kind: both "hold" the same file at once, so the detector above is needed.
    import fcntl

    path = tmp_path / "update-lock"
    p = _s6_setlock(path, 30)
    try:
        with open(path, "rb") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        p.kill()
        p.wait()


def test_waiting_airlock_gets_the_lock_after_s6_setlock_releases_it(tmp_path: Path) -> None:
    path = tmp_path / "update-lock"
    p = _s6_setlock(path, 0.6)
    seen: list[int | None] = []
    start = time.monotonic()
    with lock.hold(path, wait=True, timeout_s=20, on_wait=seen.append):
        assert time.monotonic() - start > 0.3
    assert seen == [p.pid]
    p.wait()


def test_s6_setlock_waits_for_airlock(tmp_path: Path) -> None:
    path = tmp_path / "update-lock"
    with lock.hold(path):
        p = subprocess.Popen(
            ["s6-setlock", str(path), "echo", "got it"], stdout=subprocess.PIPE, text=True
        )
        time.sleep(0.5)
        assert p.poll() is None  # still waiting: airlock holds the lock
    out, _ = p.communicate(timeout=10)
    assert out.strip() == "got it"


def test_bounded_wait_names_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "update-lock"
    p = _s6_setlock(path, 30)
    try:
        with pytest.raises(BusyError) as info, lock.hold(path, wait=True, timeout_s=0.5):
            pass
        assert "Gave up waiting" in info.value.message
        assert f"pid {p.pid}" in info.value.message
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
