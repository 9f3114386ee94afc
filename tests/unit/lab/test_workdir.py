# SPDX-License-Identifier: MIT
"""airlock.lab.workdir: a killed lab's work directory is removed by the next lab, and nothing else.

A running lab is simulated by holding the lock through a second open file description (flock
locks belong to one), exactly as another process would hold it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock.errors import HostError
from airlock.lab import workdir


def _lab_dir(parent: Path, name: str) -> Path:
    d = parent / f"{workdir.PREFIX}{name}"
    d.mkdir()
    (d / workdir.LOCK).write_text("x\n")
    (d / "disk.img").write_bytes(b"data")
    return d


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Path]:
    d = _lab_dir(tmp_path, "running")
    fd = os.open(d / workdir.LOCK, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield d
    os.close(fd)


def test_sweep_removes_only_abandoned_lab_directories(tmp_path: Path, running: Path) -> None:
    dead = _lab_dir(tmp_path, "dead")
    kept = _lab_dir(tmp_path, "kept")
    workdir.keep(kept)
    foreign = tmp_path / f"{workdir.PREFIX}not-a-lab"  # no lock file: not ours to judge
    foreign.mkdir()
    other = tmp_path / "dead-but-other-name"
    other.mkdir()
    (other / workdir.LOCK).write_text("x\n")
    assert workdir.sweep(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [running.name, kept.name, foreign.name, other.name]
    )


def test_claim_holds_the_lock_until_the_lab_ends(tmp_path: Path) -> None:
    d = tmp_path / f"{workdir.PREFIX}mine"
    with workdir.claim(d) as created:
        assert created
        assert workdir.sweep(tmp_path) == []  # ours is running: the sweep leaves it
        with pytest.raises(HostError) as info, workdir.claim(d):
            pass
        assert info.value.code == "host.lab"
    assert workdir.sweep(tmp_path) == [d]  # once it ended without --keep, it is abandoned


def test_claim_replaces_a_killed_labs_directory(tmp_path: Path) -> None:
    dead = _lab_dir(tmp_path, "again")
    with workdir.claim(dead) as created:
        assert created
        assert not (dead / "disk.img").exists()


def test_claim_reuses_a_directory_that_is_not_an_abandoned_lab(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes").write_text("keep me\n")
    with workdir.claim(mine) as created:
        assert not created
    assert (mine / "notes").read_text() == "keep me\n"
    kept = _lab_dir(tmp_path, "kept")
    workdir.keep(kept)
    with workdir.claim(kept) as created:
        assert not created
    assert (kept / "disk.img").exists()


def test_default_parent_follows_tmpdir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert workdir.default_parent() == tmp_path
    monkeypatch.delenv("TMPDIR")
    assert workdir.default_parent() == Path("/var/tmp")
