# SPDX-License-Identifier: MIT
"""Reporter implementations: human terminal lines and JSON lines (versioned schema)."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import TextIO

from airlock.events import Event, Failed, Notice, StepFinished, StepProgress, StepStarted

SCHEMA_VERSION = 1

_EVENT_NAMES: dict[type, str] = {
    StepStarted: "step-started",
    StepProgress: "step-progress",
    StepFinished: "step-finished",
    Notice: "notice",
    Failed: "failed",
}


def event_to_json(event: Event) -> str:
    """One JSON line for ``event`` (ASCII only; strings in events are already escaped)."""
    body: dict[str, object] = {"v": SCHEMA_VERSION, "event": _EVENT_NAMES[type(event)]}
    body.update(dataclasses.asdict(event))
    return json.dumps(body, ensure_ascii=True, default=str)


class JsonReporter:
    """One JSON object per event per line on stdout."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def emit(self, event: Event) -> None:
        """Write ``event`` as one JSON line."""
        print(event_to_json(event), file=self._stream, flush=True)


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
                print(f"    [{bar}] {pct:3d}%{label} {done}/{total} {unit}", file=out, flush=True)
            case Notice(message=message):
                print(f"  · {message}", file=out, flush=True)
            case Failed(step=step, code=code, message=message):
                print(f"  ✗ {step or ''} [{code}] {message}", file=out, flush=True)
