# SPDX-License-Identifier: MIT
"""``airlock updates-dir-check cleanup|check DIR``: Spectrum's C tool's interface and statuses.

Exactly two arguments, the mode and one directory; anything else prints the usage and exits 1, as
the C tool does.  Exit 0 on success, 1 on the first refused entry or failed operation, with the
tool's messages on stderr prefixed ``updates-dir-check:`` (``backends.staging.dircheck``).  An
integrator swaps it in with a one-line wrapper (docs/spectrum.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from airlock.backends.staging import dircheck

PROG = "updates-dir-check"
USAGE = f"Usage: {PROG} [cleanup|check] DIRECTORY"
FAILURE = 1  # the C tool's EXIT_FAILURE, for every failure including usage


def _say(line: str) -> None:
    print(f"{PROG}: {line}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """``airlock updates-dir-check MODE DIR``."""
    argv: list[str] = args.arguments
    if len(argv) != 2 or argv[0] not in {m.value for m in dircheck.Mode}:
        _say(USAGE)
        return FAILURE
    try:
        dircheck.run(dircheck.Mode(argv[0]), Path(argv[1]))
    except dircheck.DirCheckError as exc:
        for line in exc.lines:
            _say(line)
        return FAILURE
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's verb to the parser."""
    p = sub.add_parser(
        PROG,
        help="Spectrum's directory checker: cleanup|check DIR (exit 0, or 1 with a message)",
        description="cleanup: unlink dot-files and old SHA256SUMS.* signatures; check: unlink"
        " dot-files and require a SHA256SUMS.* signature. Both refuse unsafe names and anything"
        " but regular files. Exit 0, or 1 on the first problem (or bad usage), as Spectrum's"
        " C tool.",
        # Every argument is the tool's own, even one starting with "-" (the C tool has no
        # options): it is refused with the usage and exit 1, not argparse's exit 2.
        prefix_chars="\0",
        add_help=False,
    )
    p.add_argument(
        "arguments",
        nargs="*",
        metavar="cleanup|check DIR",
        help="the mode, cleanup or check, and the directory (anything else: usage, exit 1)",
    )
    p.set_defaults(func=run)
