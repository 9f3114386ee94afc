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
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airlock import config, fsutil, settings
from airlock.backends import openpgp
from airlock.cli.jsonout import envelope
from airlock.errors import HostError, RejectedError, UsageError
from airlock.formats import version
from airlock.limits import Limits
from airlock.text import display
from airlock.trusted.policy import Baseline, PolicyConfig

if TYPE_CHECKING:
    from airlock.trusted.judge import Judge
    from airlock.trusted.release import VerifiedRelease

_OS_RELEASE = (Path("/etc/os-release"), Path("/usr/lib/os-release"))
# The settings ``inspect`` takes as flags (declared with their sections in airlock.config).
FLAGS = (
    "host.definitions_dir",
    "host.keyring",
    "policy.trusted_fingerprints",
    "policy.threshold",
    "policy.require_fresh",
    "policy.verifier",
    *(f"limits.{key}" for key, _ in settings.declarations(Limits)),
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``inspect`` to the parser."""
    p = sub.add_parser(
        "inspect",
        help="judge a staging snapshot (read-only): structure, signatures, freshness, digests",
        description="Judge an untrusted staging directory strictly; it is never modified.",
    )
    p.add_argument("directory", metavar="DIR", type=Path, help="the frozen staging snapshot")
    config.add_flags(p, FLAGS, required=("host.definitions_dir", "host.keyring"))
    p.add_argument("--floor", metavar="VERSION", help="never accept a release older than this")
    p.add_argument("--installed", metavar="VERSION", help="the installed version")
    p.add_argument(
        "--not-before",
        metavar="TIME",
        help="refuse signatures made before TIME (ISO 8601, or @EPOCH)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
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


def _baseline(args: argparse.Namespace) -> Baseline:
    for flag, value in (("--floor", args.floor), ("--installed", args.installed)):
        if value is not None and not version.is_valid(value):
            raise UsageError(f"{flag}: not a valid version: {display(value)}", code="usage.version")
    return Baseline(
        floor=args.floor,
        installed=args.installed,
        not_before=_parse_time(args.not_before) if args.not_before else None,
    )


def _judge(args: argparse.Namespace) -> Judge:
    # The three sections inspect reads, as config.load(None, flags=...) builds them; the other
    # sections (and the backends that declare them) are not imported.
    flags = config.given_flags(args)
    host = config.load_section(config.HostFiles, flags=flags)
    policy = config.load_section(PolicyConfig, flags=flags)
    limits = config.load_section(Limits, flags=flags)
    prepared = None
    if host.keyring.is_file():  # else Judge.build says so, as without a preparation
        # sqv --version and the keyring listing start now, and run while the judge's modules
        # are imported (ADR 0175).
        prepared = openpgp.Preparation(policy.verifier, host.keyring, limits=limits)
    try:
        from airlock.trusted.judge import Judge  # here: imported while the children start
    except BaseException:  # ^C or SIGTERM meanwhile: the threads end, and clean up, first
        if prepared is not None:
            prepared.wait()
        raise
    os_release = next((p for p in _OS_RELEASE if p.is_file()), _OS_RELEASE[0])
    return Judge.build(
        definitions_dir=host.definitions_dir,
        os_release=os_release,
        keyring=host.keyring,
        policy=policy,
        limits=limits,
        prepared=prepared,
    )


def release_json(release: VerifiedRelease, *, installed: str | None) -> str:
    """The ``--json`` object of an accepted snapshot."""
    body: dict[str, Any] = {
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
        "uncounted": [
            {"fingerprint": s.fingerprint, "created": s.created.isoformat()}
            for s in release.uncounted
        ],
        "best_before": release.best_before.isoformat() if release.best_before else None,
        "bytes_hashed": release.bytes_hashed,
        "manifest_sha256": release.manifest_sha256,
        "errors": [],
    }
    return envelope(None, **body)


def rejection_json(exc: RejectedError, *, installed: str | None) -> str:
    """The ``--json`` object of a refused snapshot."""
    body: dict[str, Any] = {
        "accepted": False,
        "version": None,
        "installed": installed,
        "newer": False,
        "files": [],
        "dropped": [],
        "signers": [],
        "uncounted": [],
        "best_before": None,
        "bytes_hashed": 0,
        "manifest_sha256": None,
        "errors": [{"code": exc.code, "display": exc.subject, "message": exc.message}],
        "exit_status": int(exc.exit_status),
    }
    return envelope(None, **body)


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
    for s in release.uncounted:
        print(f"  also signed by {s.fingerprint} at {s.created.isoformat()} (does not count)")
    if release.best_before:
        print(f"  best before {release.best_before.isoformat()}")
    print(f"  {release.bytes_hashed} bytes hashed")


def run(args: argparse.Namespace) -> int:
    """Handle ``airlock inspect``."""
    baseline = _baseline(args)
    judge = _judge(args)
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
        release = judge.judge(dir_fd, baseline=baseline, now=now)
    except RejectedError as exc:
        if not args.json:
            raise
        # --json promises one object, rejections included (issue #4); the error is reported here.
        print(rejection_json(exc, installed=baseline.installed), flush=True)
        return int(exc.exit_status)
    finally:
        os.close(dir_fd)
    if args.json:
        print(release_json(release, installed=baseline.installed), flush=True)
    else:
        _print_human(release, baseline.installed)
    return 0
