# SPDX-License-Identifier: MIT
"""airlock.drain.Drain: bounded head, tail and log whatever the writer sends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airlock.drain import Drain
from airlock.errors import HostError

MARKER = b"\n[truncated]\n"


def _feed(data: bytes, **kwargs: object) -> Drain:
    r, w = os.pipe()
    drain = Drain(r, **kwargs)  # type: ignore[arg-type]  # keyword arguments forwarded
    view = memoryview(data)
    while view:
        view = view[os.write(w, view[:65536]) :]
    os.close(w)
    assert drain.close(timeout=10)
    return drain


def test_head_tail_and_total_are_bounded() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    d = _feed(data, head=1000, tail=300)
    assert d.head == data[:1000]
    assert d.tail == data[-300:]
    assert d.total == len(data)


@pytest.mark.parametrize("size", [100, 4096, 4097, 200_000])
def test_log_keeps_the_first_bytes_then_the_marker_once(tmp_path: Path, size: int) -> None:
    log = tmp_path / "log"
    data = b"x" * size
    _feed(data, log_path=log, log_limit=4096, marker=MARKER)
    expected = data[:4096] + (MARKER if size > 4096 else b"")
    assert log.read_bytes() == expected


def test_an_unwritable_log_is_a_host_error_and_the_fd_is_closed(tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(HostError) as info:
            Drain(r, log_path=tmp_path / "missing" / "log", log_limit=10)
        assert info.value.code == "host.log"
        with pytest.raises(OSError, match="Bad file descriptor"):
            os.fstat(r)  # the Drain owned it and closed it
    finally:
        os.close(w)


def test_close_reports_a_writer_that_still_holds_the_pipe() -> None:
    r, w = os.pipe()
    d = Drain(r, tail=10)
    try:
        assert not d.close(timeout=0.1)
    finally:
        os.close(w)
    assert d.close(timeout=10)
