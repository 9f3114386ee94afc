# SPDX-License-Identifier: MIT
"""``airlock manifest check FILE [--json]``: judge a ``SHA256SUMS`` file by airlock's rules.

The file is untrusted: it is read with a size bound (``Limits.max_manifest_bytes``) and parsed
by ``airlock.formats.manifest``; nothing from it is printed except the entry count, the best-before
date and, on refusal, the line number and the problem (never the line itself).

Exit statuses: 0 valid; 21 (``REJECTED``) the manifest breaks a rule; 2 (``USAGE``) the file cannot
be opened or read (missing, a directory, no permission).
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
import sys

from airlock.cli.report import print_json
from airlock.errors import ExitStatus, ManifestError, UsageError
from airlock.formats import manifest
from airlock.fsutil import read_bounded
from airlock.limits import Limits
from airlock.text import shown


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``manifest check`` to the parser."""
    parser = sub.add_parser("manifest", help="inspect SHA256SUMS manifests")
    verbs = parser.add_subparsers(dest="manifest_verb", metavar="VERB", required=True)
    check = verbs.add_parser(
        "check",
        help="check that FILE is a valid SHA256SUMS manifest",
        description=(
            "Exit 0 if FILE is a SHA256SUMS that systemd-sysupdate 257 and airlock accept; "
            "21 with a one-line reason naming the line otherwise; 2 if FILE cannot be read."
        ),
    )
    check.add_argument("file", metavar="FILE", help="the SHA256SUMS file")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(func=run_check)


def _read(path: str, limit: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise UsageError(
            f"Failed to open {shown(path)}: {os.strerror(exc.errno or errno.EIO)}",
            code="usage.file",
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            problem = f"Failed to read {shown(path)}: not a regular file"
            raise UsageError(problem, code="usage.file")
        return read_bounded(fd, limit)
    except ValueError:
        raise ManifestError(
            f"manifest: larger than {limit} bytes, refusing", line=None, code="reject.size"
        ) from None
    except OSError as exc:
        raise UsageError(
            f"Failed to read {shown(path)}: {os.strerror(exc.errno or errno.EIO)}",
            code="usage.file",
        ) from None
    finally:
        os.close(fd)


def run_check(args: argparse.Namespace) -> int:
    """Handle ``airlock manifest check``."""
    limits = Limits()
    path: str = args.file
    try:
        raw = _read(path, limits.max_manifest_bytes)
        parsed = manifest.parse(
            raw, max_bytes=limits.max_manifest_bytes, max_lines=limits.max_manifest_lines
        )
    except ManifestError as exc:
        message = f"{shown(path)}: {exc.message}"
        if args.json:
            print_json(
                "manifest-check",
                valid=False,
                file_display=shown(path),
                code=exc.code,
                line=exc.line,
                message=message,
                exit_status=int(ExitStatus.REJECTED),
            )
        print(f"error: {message}", file=sys.stderr)
        return int(ExitStatus.REJECTED)
    best = parsed.best_before.isoformat() if parsed.best_before else None
    if args.json:
        print_json(
            "manifest-check",
            valid=True,
            file_display=shown(path),
            entries=len(parsed.entries),
            best_before=best,
        )
    else:
        suffix = f", best before {best}" if best else ", no best-before date"
        count = len(parsed.entries)
        print(f"{shown(path)}: valid, {count} {'entry' if count == 1 else 'entries'}{suffix}")
    return int(ExitStatus.OK)
