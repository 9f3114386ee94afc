# SPDX-License-Identifier: MIT
"""CLI verb ``agent``: the update VM's downloader (thin; the work is in ``airlock.agent``).

Progress goes to stderr (the VM's serial log) as one line per step and per-file bytes, rate and
ETA; with ``--json`` every event is a JSON line on stdout.  The final line (or the final JSON
``result`` event) says whether anything new was downloaded.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from airlock.agent.main import run
from airlock.agent.options import (
    DEFAULT_SHARE,
    DEFAULT_STALL_S,
    DEFAULT_TIMEOUT_S,
    Mode,
    Options,
    Outcome,
    Result,
)
from airlock.cli.report import JsonReporter, print_json
from airlock.errors import UsageError
from airlock.events import Event, Failed, Notice, StepFinished, StepProgress, StepStarted
from airlock.limits import Limits

CONSOLE_INTERVAL_S = 5.0


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


class ConsoleReporter:
    """Human progress on stderr: steps, and per file bytes, rate and ETA every few seconds."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._last: dict[str, float] = {}

    def emit(self, event: Event) -> None:
        """Render ``event`` as a line."""
        out = self._stream
        match event:
            case StepStarted(step=step, detail=detail):
                print(f"agent: {step}" + (f": {detail}" if detail else ""), file=out, flush=True)
            case StepFinished(step=step, duration_s=d, detail=detail):
                print(
                    f"agent: {step} done in {d:.1f} s" + (f": {detail}" if detail else ""),
                    file=out,
                    flush=True,
                )
            case StepProgress(done=done, total=total, item=item, rate=rate, eta_s=eta):
                now = time.monotonic()
                finished = total > 0 and done >= total
                if not finished and now - self._last.get(item, 0.0) < CONSOLE_INTERVAL_S:
                    return
                self._last[item] = now
                amount = f"{_size(done)} / {_size(total)}" if total else _size(done)
                pct = f" {done * 100 // total}%" if total else ""
                eta_text = f", ETA {eta:.0f} s" if eta is not None and not finished else ""
                print(
                    f"agent:   {item}{pct} {amount}, {_size(rate)}/s{eta_text}",
                    file=out,
                    flush=True,
                )
            case Notice(message=message):
                print(f"agent: note: {message}", file=out, flush=True)
            case Failed(code=code, message=message):
                print(f"agent: failed [{code}] {message}", file=out, flush=True)


def summary(result: Result) -> str:
    """The final human line."""
    version = f"version {result.version}" if result.version else "no complete version"
    if result.outcome == Outcome.DOWNLOADED:
        reused = f", {result.reused_bytes} bytes reused" if result.reused_bytes else ""
        return (
            f"downloaded: {version}, {result.files_downloaded} files, "
            f"{result.payload_bytes} payload bytes{reused}"
        )
    return (
        f"nothing new: {version} already present"
        if result.version
        else f"nothing new: the server offers {version}"
    )


def _handle(args: argparse.Namespace) -> int:
    if args.timeout <= 0 or args.stall_timeout <= 0:
        raise UsageError("airlock agent: timeouts must be positive", code="usage.invalid")
    limits = Limits()
    if args.max_file_bytes is not None:
        if args.max_file_bytes <= 0:
            raise UsageError("airlock agent: --max-file-bytes must be positive")
        limits = replace(limits, max_file_bytes=args.max_file_bytes)
    options = Options(
        share=Path(args.share),
        mode=Mode(args.mode),
        timeout_s=args.timeout,
        stall_s=args.stall_timeout,
        limits=limits,
        verifier=args.verifier,
        ca_file=args.ca_file,
        delta=not args.no_delta,
    )
    reporter = JsonReporter() if args.json else ConsoleReporter()
    result = run(options, reporter)
    if args.json:
        print_json(
            "result",
            outcome=str(result.outcome),
            version=result.version,
            files_downloaded=result.files_downloaded,
            payload_bytes=result.payload_bytes,
            reused_bytes=result.reused_bytes,
            index_bytes=result.index_bytes,
            signatures=list(result.signatures),
        )
    else:
        print(summary(result), flush=True)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``agent`` verb."""
    p = sub.add_parser(
        "agent",
        help="download an update inside the update VM (into SHARE/updates)",
        description="Run inside the update VM: read SHARE/etc, fetch and check the signed "
        "manifest, download the newest release into SHARE/updates. Exit 0: downloaded or "
        "nothing new (the last line says which); 20: could not fetch; 3: bad SHARE/etc.",
    )
    p.add_argument(
        "--share",
        default=str(DEFAULT_SHARE),
        metavar="DIR",
        help="the host share (default: %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="JSON lines on stdout")
    p.add_argument(
        "--mode",
        choices=[m.value for m in Mode],
        default=Mode.NATIVE.value,
        help="native download, or Spectrum's systemd-sysupdate run",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help="bound on the whole run in seconds (default: %(default)s)",
    )
    p.add_argument(
        "--stall-timeout",
        type=float,
        default=DEFAULT_STALL_S,
        metavar="S",
        help="give up a connection silent this long, then retry " "(default: %(default)s)",
    )
    p.add_argument(
        "--max-file-bytes",
        type=int,
        default=None,
        metavar="N",
        help="largest payload accepted (default: the configured limit)",
    )
    p.add_argument(
        "--verifier",
        default="auto",
        choices=["auto", "sqv", "gpgv"],
        help="OpenPGP verifier for the early signature check",
    )
    p.add_argument(
        "--ca-file",
        default=None,
        metavar="FILE",
        help="https: trust only the CA certificates in FILE (default: the system's trust store)",
    )
    p.add_argument(
        "--no-delta",
        action="store_true",
        help="always download whole files (ignore block indexes and earlier versions)",
    )
    p.set_defaults(func=_handle)
