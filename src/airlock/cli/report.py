# SPDX-License-Identifier: MIT
"""Reporter implementations: human terminal lines (rich bars on a TTY), JSON lines, sd_notify.

Event strings are already escaped by their producers (``events.py``); the terminal reporter still
prints them only as plain text (rich markup is disabled), so nothing in an event can style or move
the terminal.
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import os
import select
import socket
import sys
from typing import TextIO

from airlock.cli.jsonout import SCHEMA_VERSION as SCHEMA_VERSION
from airlock.cli.jsonout import envelope as envelope
from airlock.cli.jsonout import print_json as print_json
from airlock.events import (
    Event,
    Failed,
    Notice,
    Reporter,
    StepFinished,
    StepProgress,
    StepStarted,
)

_EVENT_NAMES: dict[type, str] = {
    StepStarted: "step-started",
    StepProgress: "step-progress",
    StepFinished: "step-finished",
    Notice: "notice",
    Failed: "failed",
}


def event_to_json(event: Event) -> str:
    """One JSON line for a progress event (strings in events are already escaped)."""
    return envelope(_EVENT_NAMES[type(event)], **dataclasses.asdict(event))


class JsonReporter:
    """One JSON object per event per line on stdout."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def emit(self, event: Event) -> None:
        """Write ``event`` as one JSON line."""
        print(event_to_json(event), file=self._stream, flush=True)


class RichTerminalReporter:
    """Like ``TerminalReporter`` but long steps get a live rich progress bar (TTY only)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

        self._console = Console(file=stream or sys.stderr, markup=False, highlight=False)
        self._plain = TerminalReporter(stream or sys.stderr)
        self._progress_cls = Progress
        self._columns = (
            TextColumn("    {task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(),
        )
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None

    def emit(self, event: Event) -> None:
        """Render ``event``: bars for StepProgress, plain lines for the rest."""
        if isinstance(event, StepProgress) and event.total > 0:
            if self._progress is None:
                self._progress = self._progress_cls(
                    *self._columns, console=self._console, transient=True
                )
                self._progress.start()
                self._task = self._progress.add_task(str(event.step), total=event.total)
            assert self._task is not None  # noqa: S101 - set together with _progress
            self._progress.update(self._task, completed=event.done, total=event.total)
            return
        self._stop()
        self._plain.emit(event)


class TerminalReporter:
    """One line per step on stderr, with a simple progress line for long steps."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._last_pct: dict[tuple[str, str], int] = {}

    def emit(self, event: Event) -> None:
        """Render ``event`` for a person."""
        out = self._stream
        match event:
            case StepStarted(step=step, detail=detail):
                print(f"‣ {step}" + (f": {detail}" if detail else ""), file=out, flush=True)
            case StepFinished(step=step, duration_s=d, detail=detail):
                print(
                    f"  ✓ {step} ({d:.2f} s)" + (f": {detail}" if detail else ""),
                    file=out,
                    flush=True,
                )
            case StepProgress(step=step, done=done, total=total, unit=unit, item=item):
                if total <= 0:
                    return
                pct = min(100, done * 100 // total)
                key = (str(step), item)
                if pct // 10 == self._last_pct.get(key, -1) // 10 and pct != 100:
                    return
                self._last_pct[key] = pct
                bar = "#" * (pct // 5) + "." * (20 - pct // 5)
                label = f" {item}" if item else ""
                amount = "" if unit == "percent" else f" {done}/{total} {unit}"
                print(f"    [{bar}] {pct:3d}%{label}{amount}", file=out, flush=True)
            case Notice(message=message):
                print(f"  · {message}", file=out, flush=True)
            case Failed(step=step, code=code, message=message):
                print(f"  ✗ {step or ''} [{code}] {message}", file=out, flush=True)


class FanoutReporter:
    """Sends each event to several reporters (e.g. JSON lines and sd_notify)."""

    def __init__(self, *reporters: Reporter) -> None:
        self._reporters = reporters

    def emit(self, event: Event) -> None:
        """Forward ``event`` to every reporter."""
        for reporter in self._reporters:
            reporter.emit(event)


def notify_address() -> str | None:
    """``$NOTIFY_SOCKET`` when it names a socket (set by systemd for ``Type=notify``), else None."""
    address = os.environ.get("NOTIFY_SOCKET")
    return address if address and address.startswith(("/", "@")) else None


class NotifyReporter:
    """sd_notify(3) for a ``Type=notify`` service: the step and its progress in ``STATUS=``.

    ``READY=1`` goes with the first event (the run has started: ``systemctl start`` returns and
    the unit is active while it works); then each step sets ``STATUS=`` to what ``systemctl
    status`` shows (``apply: 45%``, ``fetch: sandbox, timeout 60 s``, ``failed: [code] …``) and
    ``X_AIRLOCK_STEP=``/``X_AIRLOCK_PROGRESS=`` for tools, the way systemd-sysupdate reports
    ``X_SYSUPDATE_PROGRESS=`` (its own notifications are forwarded as the apply step's progress).
    Progress is sent only when the percentage changes.  Best effort: a lost datagram is ignored.
    """

    def __init__(self, address: str) -> None:
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._ready = False
        self._last: tuple[str, int] | None = None

    def send(self, fields: dict[str, str]) -> None:
        """One datagram of ``KEY=VALUE`` lines (values on one line, ASCII)."""
        text = "\n".join(f"{k}={' '.join(v.split())}" for k, v in fields.items())
        with contextlib.suppress(OSError):
            self._sock.sendto(text.encode("ascii", "backslashreplace"), self._address)

    def _fields(self, event: Event) -> dict[str, str] | None:
        match event:
            case StepStarted(step=step, detail=detail):
                self._last = (str(step), 0)
                status = f"{step}: {detail}" if detail else f"{step}"
                return {"STATUS": status, "X_AIRLOCK_STEP": str(step), "X_AIRLOCK_PROGRESS": "0"}
            case StepProgress(step=step, done=done, total=total) if total > 0:
                pct = min(100, done * 100 // total)
                if self._last == (str(step), pct):
                    return None
                self._last = (str(step), pct)
                return {"STATUS": f"{step}: {pct}%", "X_AIRLOCK_STEP": str(step),
                        "X_AIRLOCK_PROGRESS": str(pct)}  # fmt: skip
            case StepFinished(step=step, duration_s=duration, detail=detail):
                text = f"{step}: done in {duration:.1f} s" + (f" ({detail})" if detail else "")
                return {"STATUS": text, "X_AIRLOCK_STEP": str(step), "X_AIRLOCK_PROGRESS": "100"}
            case Notice(message=message):
                return {"STATUS": message}
            case Failed(code=code, message=message):
                return {"STATUS": f"failed: [{code}] {message}"}
        return None

    def emit(self, event: Event) -> None:
        """Send what ``event`` changes (with ``READY=1`` the first time)."""
        fields = self._fields(event)
        if fields is None:
            return
        if not self._ready:
            fields = {"READY": "1", **fields}
            self._ready = True
        self.send(fields)

    def barrier(self, timeout_s: float = 5.0) -> None:
        """Wait until the service manager has read every message sent so far (``BARRIER=1``).

        A message that arrives after the process exited cannot be attributed to the service and
        is dropped; the last status must be read before airlock exits.  Best effort: a manager
        without barriers (or none listening) costs at most ``timeout_s``.
        """
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            with contextlib.suppress(OSError):
                self._sock.sendmsg(
                    [b"BARRIER=1"],
                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [write_end]))],
                    0,
                    self._address,
                )
            os.close(write_end)
            write_end = -1
            poller = select.poll()
            poller.register(read_end, select.POLLHUP)
            poller.poll(int(timeout_s * 1000))  # the manager closes its copy once it has read
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)


def notify_status(text: str) -> None:
    """A last ``STATUS=`` (the run's result) when running as a ``Type=notify`` service, read by
    the service manager before airlock exits (``systemctl status`` keeps showing it)."""
    if (address := notify_address()) is not None:
        reporter = NotifyReporter(address)
        reporter.send({"STATUS": text})
        reporter.barrier()


def make_reporter(*, json_lines: bool) -> Reporter:
    """JSON lines on stdout with ``--json``, else the terminal reporter; plus sd_notify."""
    main: Reporter
    if json_lines:
        main = JsonReporter()
    elif sys.stderr.isatty():
        main = RichTerminalReporter()
    else:
        main = TerminalReporter()
    address = notify_address()
    return main if address is None else FanoutReporter(main, NotifyReporter(address))
