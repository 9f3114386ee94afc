# SPDX-License-Identifier: MIT
"""untrusted/walk.py: the no-follow walk, table tests and a model-based hypothesis test."""

from __future__ import annotations

import os
import re
import socket
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airlock import fsutil
from airlock.errors import InspectionError
from airlock.limits import Limits
from airlock.untrusted import walk


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    d = tmp_path / "snap"
    d.mkdir()
    return d


def run_walk(d: Path, limits: Limits | None = None) -> walk.Listing:
    fd = os.open(d, fsutil.DIR_FLAGS)
    try:
        return walk.walk(fd, limits=limits or Limits())
    finally:
        os.close(fd)


def code_of(d: Path, limits: Limits | None = None) -> str:
    with pytest.raises(InspectionError) as info:
        run_walk(d, limits)
    return info.value.code


def test_regular_files_and_temporaries_are_listed(tree: Path) -> None:
    (tree / "b_2.efi").write_bytes(b"xy")
    (tree / "SHA256SUMS").write_bytes(b"")
    (tree / ".tmp").symlink_to("/etc/shadow")
    listing = run_walk(tree)
    assert [f.name for f in listing.files] == ["SHA256SUMS", "b_2.efi"]
    assert [f.size for f in listing.files] == [0, 2]
    assert [t.name for t in listing.temporaries] == [".tmp"]
    assert listing.total_bytes == 2


def test_symlink_to_host_file_is_rejected(tree: Path) -> None:
    (tree / "SHA256SUMS").symlink_to("/etc/passwd")
    assert code_of(tree) == "reject.type"


def test_fifo_socket_directory_are_rejected(tree: Path) -> None:
    os.mkfifo(tree / "a")
    assert code_of(tree) == "reject.type"
    os.unlink(tree / "a")
    s = socket.socket(socket.AF_UNIX)
    s.bind(os.fspath(tree / "a"))
    s.close()
    assert code_of(tree) == "reject.type"
    os.unlink(tree / "a")
    (tree / "a").mkdir()
    assert code_of(tree) == "reject.type"


def test_dot_directory_is_rejected(tree: Path) -> None:
    (tree / ".d").mkdir()
    assert code_of(tree) == "reject.type"


def test_hard_link_is_rejected(tree: Path) -> None:
    (tree / "a").write_bytes(b"")
    os.link(tree / "a", tree / "b")
    assert code_of(tree) == "reject.links"


def test_setuid_is_rejected(tree: Path) -> None:
    (tree / "a").write_bytes(b"")
    os.chmod(tree / "a", 0o4644)
    assert code_of(tree) == "reject.mode"


def test_caps(tree: Path) -> None:
    (tree / "a").write_bytes(b"12345")
    (tree / "b").write_bytes(b"12345")
    assert code_of(tree, replace(Limits(), max_file_bytes=4)) == "reject.size"
    assert code_of(tree, replace(Limits(), max_total_bytes=9)) == "reject.size"
    assert code_of(tree, replace(Limits(), max_entries=1)) == "reject.count"
    assert run_walk(tree, replace(Limits(), max_total_bytes=10, max_entries=2)).total_bytes == 10


def test_unsafe_name_is_rejected_before_type(tree: Path) -> None:
    os.mkfifo(tree / "a\x1b")
    assert code_of(tree) == "reject.name"


def test_rejection_message_escapes_the_name(tree: Path) -> None:
    (tree / "a\x1b[2J\n").write_bytes(b"")
    with pytest.raises(InspectionError) as info:
        run_walk(tree)
    assert "\x1b" not in info.value.message
    assert "\n" not in info.value.message
    assert info.value.subject == repr("a\x1b[2J\n")


def test_symlinked_directory_is_not_opened(tmp_path: Path, tree: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(tree)
    with pytest.raises(OSError, match="Too many levels|Not a directory"):
        os.open(link, fsutil.DIR_FLAGS)


# --- model-based test: generated trees vs a simple reference predicate ---------------------------

_SAFE = re.compile(rb"[A-Za-z][A-Za-z0-9_.-]*")
KINDS = ("file", "file", "file", "symlink", "dir", "fifo", "hardlink", "setuid")
name_bytes = st.one_of(
    st.from_regex(rb"\A[A-Za-z][A-Za-z0-9_.-]{0,12}\Z"),
    st.binary(min_size=1, max_size=12).filter(
        lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")
    ),
)
entries = st.dictionaries(
    name_bytes, st.tuples(st.sampled_from(KINDS), st.integers(0, 40)), max_size=8
)


def reference(tree: dict[bytes, tuple[str, int]], limits: Limits) -> bool:
    """Accept exactly when every entry is allowed (the spec of issue #4, step 2)."""
    n = sum(2 if kind == "hardlink" else 1 for kind, _ in tree.values())
    if n > limits.max_entries:
        return False
    total = 0
    for name, (kind, size) in tree.items():
        if name.startswith(b"."):
            if kind == "dir":
                return False
            if kind == "hardlink":  # its second name is not a dot-name
                return False
            continue
        if not _SAFE.fullmatch(name) or name.endswith(b"."):
            return False
        if kind != "file":
            return False
        if size > limits.max_file_bytes:
            return False
        total += size
    return total <= limits.max_total_bytes


def build(d: Path, tree: dict[bytes, tuple[str, int]]) -> None:
    root = os.fsencode(d)
    for name, (kind, size) in tree.items():
        path = root + b"/" + name
        if kind in ("file", "setuid", "hardlink"):
            with open(path, "wb") as f:
                f.truncate(size)
            if kind == "setuid":
                os.chmod(path, 0o4644)
            if kind == "hardlink":
                os.link(path, root + b"/Link" + name.hex().encode())
        elif kind == "symlink":
            os.symlink(b"/etc/passwd", path)
        elif kind == "dir":
            os.mkdir(path)
        else:
            os.mkfifo(path)


@settings(deadline=None)  # file-system I/O per example: timing depends on machine load
@given(
    tree=entries,
    max_entries=st.integers(1, 12),
    max_file=st.integers(0, 41),
    max_total=st.integers(0, 200),
)
def test_walk_agrees_with_reference_predicate(
    tree: dict[bytes, tuple[str, int]], max_entries: int, max_file: int, max_total: int
) -> None:
    limits = replace(
        Limits(), max_entries=max_entries, max_file_bytes=max_file, max_total_bytes=max_total
    )
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "snap"
        d.mkdir()
        build(d, tree)
        expected = reference(tree, limits)
        try:
            listing = run_walk(d, limits)
        except InspectionError:
            assert not expected
        else:
            assert expected
            assert {os.fsencode(f.name) for f in listing.files} == {
                n for n, (k, _) in tree.items() if not n.startswith(b".")
            }
            assert {os.fsencode(t.name) for t in listing.temporaries} == {
                n for n in tree if n.startswith(b".")
            }


def test_negative_control_the_sparse_rule_fires_on_half_a_hole(tmp_path: Path) -> None:
    # Above 1 MiB, under half allocated: refused; exactly half allocated: listed.
    d = tmp_path / "d"
    d.mkdir()
    for name, written in (("Half", 1 << 20), ("Less", (1 << 20) - 4096)):
        with open(d / name, "wb") as fh:
            fh.write(b"\1" * written)
            fh.truncate(2 << 20)
    fd = os.open(d, fsutil.DIR_FLAGS)
    try:
        with pytest.raises(InspectionError) as info:
            walk.walk(fd, limits=Limits())
        assert info.value.code == "reject.sparse"
        os.unlink("Less", dir_fd=fd)
        assert [f.name for f in walk.walk(fd, limits=Limits()).files] == ["Half"]
    finally:
        os.close(fd)
