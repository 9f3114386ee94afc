# SPDX-License-Identifier: MIT
"""CLI verbs: ``version-compare`` and ``pattern match`` (small tools over ``airlock.formats``).

``airlock version-compare A B`` keeps the contract of ``systemd-analyze compare-versions A B``: it
prints ``A < B``, ``A == B`` or ``A > B`` and exits 0 if equal, 11 if A is newer, 12 if A is older.
Like systemd-analyze it compares *any* two strings, valid sysupdate versions or not (``""`` and
``"_"`` are equal, ``1.0~rc1`` sorts before ``1.0``); ``--strict`` additionally refuses strings
that sysupdate 257 would ignore as versions (exit 3).  Use ``--`` before a version that starts
with ``-``.

``airlock pattern match PATTERN NAME`` exits 0 and prints the fields if NAME matches, 21 if it does
not, 3 if PATTERN is invalid.  Arguments are echoed escaped.
"""

from __future__ import annotations

import argparse
import dataclasses

from airlock.cli.report import print_json
from airlock.errors import ExitStatus, UsageError
from airlock.formats import pattern, version
from airlock.text import display, display_argv


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's verbs to the parser."""
    vc = sub.add_parser(
        "version-compare",
        help="compare two versions as systemd does (exit 0 equal, 11 A newer, 12 A older)",
        description="Compare two version strings with systemd's strverscmp_improved(), like "
        "'systemd-analyze compare-versions A B'. Exit 0 if equal, 11 if A is newer, 12 if A is "
        "older. Use -- before a version that starts with '-'.",
    )
    vc.add_argument("a", metavar="A")
    vc.add_argument("b", metavar="B")
    vc.add_argument(
        "--strict",
        action="store_true",
        help="refuse (exit 3) strings that are not valid sysupdate versions ([A-Za-z0-9.,_+-])",
    )
    vc.set_defaults(func=version_compare)

    pat = sub.add_parser("pattern", help="sysupdate MatchPattern= tools")
    pat_sub = pat.add_subparsers(dest="pattern_verb", metavar="ACTION", required=True)
    pm = pat_sub.add_parser(
        "match",
        help="match NAME against PATTERN (exit 0 match, 21 no match, 3 invalid pattern)",
    )
    pm.add_argument("pattern", metavar="PATTERN")
    pm.add_argument("name", metavar="NAME")
    pm.add_argument(
        "--mode",
        choices=[m.value for m in pattern.Mode],
        default=pattern.Mode.EXACT.value,
        help="exact: the whole name must match (default); sysupdate: systemd 257's prefix match",
    )
    pm.add_argument("--json", action="store_true", help="print one JSON object")
    pm.set_defaults(func=pattern_match)


def version_compare(args: argparse.Namespace) -> int:
    """``airlock version-compare A B``."""
    a: str = args.a
    b: str = args.b
    if args.strict:
        for v in (a, b):
            version.parse(v)  # raises FormatError (config.version, exit 3)
    result = version.compare(a, b)
    op = {-1: "<", 0: "==", 1: ">"}[result]
    print(f"{display_argv([a])} {op} {display_argv([b])}")
    if result == 0:
        return int(ExitStatus.OK)
    return int(ExitStatus.VERSION_NEWER if result > 0 else ExitStatus.VERSION_OLDER)


def pattern_match(args: argparse.Namespace) -> int:
    """``airlock pattern match PATTERN NAME [--mode exact|sysupdate] [--json]``."""
    if args.pattern_verb != "match":  # pragma: no cover - argparse enforces the choice
        raise UsageError("unknown pattern action", code="usage.invalid")
    pat = pattern.compile(args.pattern)  # PatternError: config.pattern, exit 3
    mode = pattern.Mode(args.mode)
    result, fields = pat.classify(args.name, mode)
    values = (
        {k: v for k, v in dataclasses.asdict(fields).items() if v is not None} if fields else {}
    )
    if args.json:
        # Field values are parsed values: versions are [A-Za-z0-9.,_+-], the rest numbers,
        # booleans or lowercase hex, so they are safe to emit as they are.
        print_json(
            None,
            fields=values,
            mode=mode.value,
            name_display=display(args.name, limit=400),
            pattern_display=display(args.pattern, limit=400),
            result=result.value,
        )
    else:
        print(f"{result.value}: {display(args.name, limit=400)}")
        for k, v in values.items():
            print(f"  {k}={v}")
    return int(ExitStatus.OK if result is pattern.MatchResult.YES else ExitStatus.REJECTED)
