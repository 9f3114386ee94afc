# SPDX-License-Identifier: MIT
"""``airlock inspect``: judge a staging snapshot without changing it.

Exit 0 when the content is acceptable (the output says whether it holds a release newer than
``--installed``), 21 (``ExitStatus.REJECTED``) when it is refused, 2/3/5 for usage, configuration
and host problems.  With ``--json`` one object is printed on stdout, rejections included; every
string that came from the snapshot is escaped (``display`` fields).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from airlock import fsutil
from airlock.backends import openpgp
from airlock.config import Limits
from airlock.errors import ConfigError, HostError, RejectedError, UsageError
from airlock.formats import definitions
from airlock.text import display
from airlock.trusted import verify
from airlock.trusted.policy import Policy, fingerprint
from airlock.trusted.release import VerifiedRelease
from airlock.untrusted.walk import subject_of

_OS_RELEASE = (Path("/etc/os-release"), Path("/usr/lib/os-release"))
_CAP_OPTIONS = (
    "max_entries",
    "max_file_bytes",
    "max_total_bytes",
    "max_manifest_bytes",
    "max_manifest_lines",
    "max_signature_bytes",
    "hash_threads",
    "hash_buffer_bytes",
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``inspect`` to the parser."""
    p = sub.add_parser(
        "inspect",
        help="judge a staging snapshot (read-only): structure, signatures, freshness, digests",
        description="Judge an untrusted staging directory strictly; it is never modified.",
    )
    p.add_argument("directory", metavar="DIR", type=Path, help="the frozen staging snapshot")
    p.add_argument(
        "--definitions",
        metavar="DEFDIR",
        type=Path,
        required=True,
        help="directory of the host's *.transfer definitions",
    )
    p.add_argument(
        "--keyring",
        metavar="FILE",
        type=Path,
        required=True,
        help="pinned OpenPGP keyring (binary or armoured)",
    )
    p.add_argument(
        "--trusted-fingerprint",
        metavar="FPR",
        action="append",
        default=[],
        help="primary-key fingerprint whose signatures count (repeatable; default: "
        "every key in the keyring)",
    )
    p.add_argument(
        "--threshold",
        metavar="K",
        type=int,
        default=1,
        help="distinct trusted keys that must have signed (default 1)",
    )
    p.add_argument("--floor", metavar="VERSION", help="never accept a release older than this")
    p.add_argument("--installed", metavar="VERSION", help="the installed version")
    p.add_argument(
        "--not-before",
        metavar="TIME",
        help="refuse signatures made before TIME (ISO 8601, or @EPOCH)",
    )
    p.add_argument(
        "--require-fresh",
        action="store_true",
        help="refuse a manifest without a BEST-BEFORE marker",
    )
    p.add_argument(
        "--verifier",
        choices=("auto", "sqv", "gpgv"),
        default="auto",
        help="OpenPGP verification backend (default: sqv, else gpgv)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    defaults = Limits()
    for name in _CAP_OPTIONS:
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            metavar="N",
            default=None,
            help=f"cap override (default {getattr(defaults, name)})",
        )
    p.set_defaults(func=run)


def _parse_time(text: str) -> datetime.datetime:
    try:
        if text.startswith("@"):
            return datetime.datetime.fromtimestamp(int(text[1:]), datetime.UTC)
        value = datetime.datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError) as exc:  # an epoch outside time_t: Overflow/OS
        raise UsageError(
            f"--not-before: not an ISO 8601 time: {display(text)}", code="usage.time"
        ) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value


def _limits(args: argparse.Namespace) -> Limits:
    overrides = {n: getattr(args, n) for n in _CAP_OPTIONS if getattr(args, n) is not None}
    for name, value in overrides.items():
        if value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1", code="usage.cap")
    known = {f.name for f in fields(Limits)}
    return replace(Limits(), **{k: v for k, v in overrides.items() if k in known})


def _policy(args: argparse.Namespace) -> Policy:
    return Policy(
        trusted_fingerprints=frozenset(fingerprint(f) for f in args.trusted_fingerprint),
        threshold=args.threshold,
        floor=args.floor,
        installed=args.installed,
        not_before=_parse_time(args.not_before) if args.not_before else None,
        require_fresh=args.require_fresh,
    )


def _transfers(defdir: Path) -> tuple[definitions.Transfer, ...]:
    text = ""
    for candidate in _OS_RELEASE:
        if candidate.is_file():
            text = candidate.read_text(encoding="utf-8", errors="replace")
            break
    transfers = definitions.load_dir(
        defdir, specifiers=definitions.Specifiers.from_os_release(text)
    )
    if not any(t.enabled for t in transfers):
        raise ConfigError(
            f"No enabled transfer definition in {display(os.fspath(defdir))}",
            code="config.definition",
        )
    return transfers


def release_json(release: VerifiedRelease, *, installed: str | None) -> dict[str, Any]:
    """The ``--json`` object of an accepted snapshot."""
    return {
        "v": 1,
        "accepted": True,
        "version": release.version,
        "installed": installed,
        "newer": release.newer,
        "files": [
            {
                "name": f.name,
                "display": display(f.name),
                "size": f.size,
                "sha256": f.sha256,
                "transfer": f.transfer,
            }
            for f in release.files
        ],
        "dropped": [{"display": d.name_display, "reason": d.reason} for d in release.dropped],
        "signers": [
            {"fingerprint": s.fingerprint, "created": s.created.isoformat()}
            for s in release.signers
        ],
        "best_before": release.best_before.isoformat() if release.best_before else None,
        "bytes_hashed": release.bytes_hashed,
        "manifest_sha256": release.manifest_sha256,
        "errors": [],
    }


def rejection_json(exc: RejectedError, *, installed: str | None) -> dict[str, Any]:
    """The ``--json`` object of a refused snapshot."""
    return {
        "v": 1,
        "accepted": False,
        "version": None,
        "installed": installed,
        "newer": False,
        "files": [],
        "dropped": [],
        "signers": [],
        "best_before": None,
        "bytes_hashed": 0,
        "manifest_sha256": None,
        "errors": [{"code": exc.code, "display": subject_of(exc), "message": exc.message}],
        "exit_status": int(exc.exit_status),
    }


def _print_human(release: VerifiedRelease, installed: str | None) -> None:
    if release.version is None:
        print(f"accepted: no release newer than the installed version {installed}")
    else:
        newer = "newer than" if release.newer else "not newer than"
        print(f"accepted: release {release.version} ({newer} installed {installed or 'none'})")
    for f in release.files:
        print(f"  keep {f.name}  {f.size} bytes  sha256 {f.sha256}  ({f.transfer})")
    for d in release.dropped:
        print(f"  drop {d.name_display}: {d.reason}")
    for s in release.signers:
        print(f"  signed by {s.fingerprint} at {s.created.isoformat()}")
    if release.best_before:
        print(f"  best before {release.best_before.isoformat()}")
    print(f"  {release.bytes_hashed} bytes hashed")


def run(args: argparse.Namespace) -> int:
    """Handle ``airlock inspect``."""
    limits = _limits(args)
    policy = _policy(args)
    if not args.keyring.is_file():
        raise ConfigError(
            f"Keyring {display(os.fspath(args.keyring))} is not a file", code="config.keyring"
        )
    transfers = _transfers(args.definitions)
    verifier = openpgp.verifier(args.verifier, limits=limits)
    now = datetime.datetime.now(datetime.UTC)
    try:
        dir_fd = os.open(args.directory, fsutil.DIR_FLAGS)
    except OSError as exc:
        raise HostError(
            f"Failed to open staging directory {display(os.fspath(args.directory))}:"
            f" {exc.strerror}",
            code="host.staging",
        ) from exc
    try:
        release = verify.judge(
            dir_fd,
            transfers=transfers,
            keyring=args.keyring.absolute(),
            policy=policy,
            limits=limits,
            verifier=verifier,
            now=now,
        )
    except RejectedError as exc:
        if not args.json:
            raise
        # --json promises one object, rejections included (issue #4); the error is reported here.
        print(json.dumps(rejection_json(exc, installed=policy.installed)), flush=True)
        return int(exc.exit_status)
    finally:
        os.close(dir_fd)
    if args.json:
        print(json.dumps(release_json(release, installed=policy.installed)), flush=True)
    else:
        _print_human(release, policy.installed)
    return 0
