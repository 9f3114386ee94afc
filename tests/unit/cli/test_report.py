# SPDX-License-Identifier: MIT
"""cli/report.py: the JSON-lines schema, terminal rendering, sd_notify and rich bars."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from airlock.cli.report import (
    FanoutReporter,
    JsonReporter,
    NotifyReporter,
    RichTerminalReporter,
    TerminalReporter,
    event_to_json,
)
from airlock.events import (
    Failed,
    ListReporter,
    Notice,
    Step,
    StepFinished,
    StepProgress,
    StepStarted,
)


def test_json_lines_are_versioned_ascii_objects() -> None:
    out = io.StringIO()
    r = JsonReporter(out)
    r.emit(StepStarted(step=Step.FETCH, detail="sandbox"))
    r.emit(StepProgress(step=Step.APPLY, done=5, total=10, unit="percent"))
    r.emit(StepFinished(step=Step.FETCH, duration_s=1.5))
    r.emit(Failed(step=Step.INSPECT, code="reject.type", message="Refusing 'x\\u202e'"))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [ln["event"] for ln in lines] == [
        "step-started",
        "step-progress",
        "step-finished",
        "failed",
    ]
    assert all(ln["v"] == 1 for ln in lines)
    assert lines[0]["step"] == "fetch"
    assert out.getvalue().isascii()


def test_json_escapes_non_ascii_even_if_a_producer_forgot() -> None:
    line = event_to_json(Notice(message="bidi \u202e and esc \x1b"))
    assert line.isascii()
    assert "\x1b" not in line


def test_terminal_lines() -> None:
    out = io.StringIO()
    r = TerminalReporter(out)
    r.emit(StepStarted(step=Step.APPLY, detail="'2'"))
    r.emit(StepProgress(step=Step.APPLY, done=50, total=100, unit="percent"))
    r.emit(StepFinished(step=Step.APPLY, duration_s=2.0))
    r.emit(Failed(step=Step.INSPECT, code="reject.digest", message="Refusing x"))
    text = out.getvalue()
    assert "‣ apply: '2'" in text
    assert " 50%" in text
    assert "✓ apply (2.00 s)" in text
    assert "✗ inspect [reject.digest] Refusing x" in text


def test_rich_reporter_prints_plain_text_without_markup() -> None:
    out = io.StringIO()
    r = RichTerminalReporter(out)
    r.emit(StepStarted(step=Step.APPLY, detail="[bold red]not markup[/]"))
    for done in (10, 60, 100):
        r.emit(StepProgress(step=Step.APPLY, done=done, total=100, unit="percent"))
    r.emit(StepFinished(step=Step.APPLY, duration_s=1.0))
    assert "[bold red]not markup[/]" in out.getvalue()
    assert "✓ apply" in out.getvalue()


def test_notify_reporter_sends_ready_then_each_steps_status_and_progress(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    try:
        r = NotifyReporter(str(path))
        r.emit(StepStarted(step=Step.FETCH, detail="sandbox, timeout 60 s"))
        r.emit(StepFinished(step=Step.FETCH, duration_s=1.25))
        r.emit(StepProgress(step=Step.APPLY, done=3, total=4))
        r.emit(StepProgress(step=Step.APPLY, done=30, total=40))  # same percentage: not sent
        r.emit(StepProgress(step=Step.APPLY, done=4, total=4))
        r.emit(Failed(step=Step.APPLY, code="apply.sysupdate", message="line 1\nline 2"))
        got = [sock.recv(4096).decode() for _ in range(5)]
    finally:
        sock.close()
    assert got == [
        "READY=1\nSTATUS=fetch: sandbox, timeout 60 s\nX_AIRLOCK_STEP=fetch\nX_AIRLOCK_PROGRESS=0",
        "STATUS=fetch: done in 1.2 s\nX_AIRLOCK_STEP=fetch\nX_AIRLOCK_PROGRESS=100",
        "STATUS=apply: 75%\nX_AIRLOCK_STEP=apply\nX_AIRLOCK_PROGRESS=75",
        "STATUS=apply: 100%\nX_AIRLOCK_STEP=apply\nX_AIRLOCK_PROGRESS=100",
        "STATUS=failed: [apply.sysupdate] line 1 line 2",
    ]


def test_the_last_status_is_read_before_airlock_exits(tmp_path: Path) -> None:
    # Like systemd: read the STATUS, then the BARRIER=1 with its fd; airlock must wait until
    # that fd is closed (a status read after the process exited would be dropped).
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    child = subprocess.Popen(
        [sys.executable, "-m", "airlock", "update", "--config", str(tmp_path / "no.toml"), "x"],
        env={**os.environ, "NOTIFY_SOCKET": str(path)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        status = sock.recv(4096).decode()
        barrier, fds, _, _ = socket.recv_fds(sock, 4096, 1)
        time.sleep(0.5)
        assert child.poll() is None, "airlock exited before its last status was read"
        for fd in fds:
            os.close(fd)
        assert child.wait(timeout=5) == 3
    finally:
        sock.close()
        if child.poll() is None:
            child.kill()
            child.wait()
    assert status.startswith("STATUS=failed: [config.host] Failed to read config ")
    assert (barrier, len(fds)) == (b"BARRIER=1", 1)


def test_fanout() -> None:
    a, b = ListReporter(), ListReporter()
    FanoutReporter(a, b).emit(Notice(message="x"))
    assert a.events == b.events == [Notice(message="x")]
