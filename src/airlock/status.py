# SPDX-License-Identifier: MIT
"""What ``airlock status`` reports: the host's update state at a glance, and what to do next.

``gather()`` reads the facts once — the booted version (os-release) and the boot entries in
``$BOOT`` (``airlock.assessment``: blessed, pending, failed), the installed versions
(``systemd-sysupdate --offline list``), the state file (floor, last successful check, a newer
release the last check verified: ``[state] path``, else ``state.json`` in the staging directory
given, else unknown), the systemd-sysupdate runtime in use — and never fails for one
of them: what could not be read becomes a ``Problem`` with its error code, and the rest is still
reported.  ``advise()`` is pure: from the facts, the one next action (fix, reboot, update, check
or nothing) and why.

Trusts: the host's own files and what sysupdate lists (versions installed from verified
releases; still only shown when they pass the version grammar, else escaped).
"""

from __future__ import annotations

import enum
import functools
import os
import shlex
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import assert_never

from airlock import assessment, state
from airlock.backends import openpgp
from airlock.backends.apply.runtime import Runtime
from airlock.config import HostConfig
from airlock.errors import AirlockError, ConfigError
from airlock.formats import dialect, version
from airlock.pipeline.wiring import make_applier
from airlock.text import display
from airlock.trusted import judge


class Action(enum.StrEnum):
    """What the operator (or the timer) should do next."""

    FIX = "fix"  # something is broken: see ``problems``
    REBOOT = "reboot"  # a newer version is installed and waits for a reboot
    UPDATE = "update"  # the last check verified a newer release: ``airlock update`` installs it
    CHECK = "check"  # never checked, or the last successful check is stale
    NONE = "none"  # up to date as of a recent check


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """Something ``status`` could not read; ``code`` is the error's stable code."""

    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeInfo:
    """The systemd-sysupdate ``airlock update`` applies with, and whose rules the judge uses."""

    root: Path  # "/" for the host's own
    version: int
    name: str = "host"  # [apply] runtime's name for it: host, 257, 262
    rules: int | None = None  # the dialect row (formats.dialect): its first version
    rules_verified: bool = True  # False: a version newer than any row, given the newest row
    signature_names: tuple[str, ...] = ()  # what it reads next to SHA256SUMS from the snapshot

    @classmethod
    def of(cls, rt: Runtime, rules: dialect.Dialect) -> RuntimeInfo:
        """From the located runtime and its dialect row."""
        names = rules.signature_names if rules.file_fallback else rules.signature_names[:1]
        return cls(
            root=rt.root,
            version=rt.version,
            name=rt.name,
            rules=rules.since,
            rules_verified=rules.verified,
            signature_names=names,
        )

    @property
    def source(self) -> str:
        """``host`` (the system's own systemd-sysupdate) or ``runtime`` (a separate root)."""
        return "host" if self.root == Path("/") else "runtime"


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """Everything ``status`` read, at ``now``."""

    now: datetime
    booted: str | None
    installed: tuple[str, ...]
    newest_installed: str | None
    saved: state.State
    blessed: bool = True  # the booted version's boot entry carries no counter (a good boot)
    entry_pending: tuple[str, ...] | None = None  # from $BOOT's entries (None: no entries)
    failed: tuple[str, ...] = ()  # failed to boot and were rolled back
    state_file: Path | None  # None: [state] path unset and no staging directory given
    staging_dir: Path | None = None
    runtime: RuntimeInfo | None
    stale_after_s: float
    problems: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()  # weaknesses of the settings (``trusted.judge.weaknesses``)

    @property
    def pending(self) -> tuple[str, ...]:
        """What the next boot will try, newest first: the boot entries with tries left that are
        newer than the booted version, or without entries, installed versions newer than it."""
        if self.entry_pending is not None:
            newer = list(self.entry_pending)
        elif self.booted is None:
            return ()
        else:
            newer = [v for v in self.installed if _newer(v, self.booted)]
        newer = [v for v in newer if v not in self.failed]
        return tuple(sorted(newer, key=functools.cmp_to_key(version.compare), reverse=True))

    @property
    def check_age_s(self) -> float | None:
        """Seconds since the last successful check (``None``: never)."""
        last = self.saved.last_check
        return None if last is None else max(0.0, (self.now - last).total_seconds())

    @property
    def stale(self) -> bool:
        """The last successful check is older than ``stale_after_s`` (or there was none), or the
        ``BEST-BEFORE`` date of the manifest it saw has passed."""
        age = self.check_age_s
        best = self.saved.best_before
        expired = best is not None and state.expires(best) < self.now
        return age is None or age > self.stale_after_s or expired

    @property
    def freshness(self) -> Freshness:
        """What can honestly be said of the last check (``freshness_of``)."""
        return freshness_of(self.saved, self.now)


class Freshness(enum.StrEnum):
    """What the state says of how current the host's knowledge is (docs/adr/0155)."""

    NEVER = "never"  # no fresh manifest seen yet
    UNTIL = "fresh-until"  # the last fresh manifest's BEST-BEFORE date is still ahead
    EXPIRED = "expired"  # it carried BEST-BEFORE, and that date has passed since
    UNKNOWN = "unknown"  # a newer signature was seen, but no BEST-BEFORE: nobody vouches for now
    NO_NEWER = "no-newer"  # runs since the last fresh one saw no newer manifest (maybe a replay)


def freshness_of(saved: state.State, now: datetime) -> Freshness:
    """Classify the last check (pure); never claims "fresh" without an unexpired BEST-BEFORE."""
    if saved.last_check is None:
        return Freshness.NEVER
    if saved.last_seen is not None and saved.last_seen > saved.last_check:
        return Freshness.NO_NEWER
    if saved.best_before is None:
        return Freshness.UNKNOWN
    return Freshness.UNTIL if state.expires(saved.best_before) >= now else Freshness.EXPIRED


def freshness_text(saved: state.State, now: datetime) -> str:
    """One phrase for ``freshness_of``: what the last check proves, and what it does not."""
    last = saved.last_check
    when = "" if last is None else last.strftime("%Y-%m-%d %H:%M:%S UTC")
    match freshness_of(saved, now):
        case Freshness.NEVER:
            return "freshness unknown: no fresh, valid manifest seen yet"
        case Freshness.NO_NEWER:
            return f"no newer manifest since {when}: freshness unknown, maybe a replay"
        case Freshness.UNKNOWN:
            return "a newer signed manifest; freshness unknown: no BEST-BEFORE date"
        case Freshness.UNTIL:
            return f"fresh until {saved.best_before}: its signed BEST-BEFORE date"
        case Freshness.EXPIRED:
            return f"stale: its BEST-BEFORE date {saved.best_before} has passed"
        case other:
            assert_never(other)


@dataclass(frozen=True, slots=True, kw_only=True)
class Advice:
    """The next action, the command that does it, and why."""

    action: Action
    command: str | None
    reason: str


def _newer(a: str, b: str) -> bool:
    return version.is_valid(a) and version.is_valid(b) and version.compare(a, b) > 0


def shown_version(raw: str) -> str:
    """A version as status shows it: itself when it is a valid version, else escaped."""
    return raw if version.is_valid(raw) else display(raw)


def age(seconds: float) -> str:
    """``3 d 4 h``, ``2 h 5 min``, ``42 s``: a duration at a glance."""
    s = int(seconds)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60)):
        if s >= size:
            rest = (s % size) // sub_size
            return f"{s // size} {unit}" + (f" {rest} {sub}" if rest else "")
    return f"{s // 60} min" if s >= 60 else f"{s} s"


def _command(verb: str, staging_dir: Path | None) -> str:
    """The command to run next, with the staging directory given (quoted for a shell)."""
    raw = "STAGING_DIR" if staging_dir is None else os.fspath(staging_dir)
    return f"airlock {verb} {shlex.quote(raw) if raw.isprintable() else display(raw)}"


def advise(facts: Facts) -> Advice:
    """The one next action for ``facts`` (pure)."""
    if facts.problems:
        first = facts.problems[0]
        return Advice(action=Action.FIX, command=None, reason=first.message)
    if facts.pending:
        newest = shown_version(facts.pending[0])
        booted = shown_version(facts.booted or "")
        return Advice(
            action=Action.REBOOT,
            command="reboot",
            reason=f"{newest} is installed but {booted} is running; a reboot starts {newest}",
        )
    available, installed = facts.saved.available, facts.newest_installed
    if available is not None and (
        facts.newest_installed is None or _newer(available, facts.newest_installed)
    ):
        return Advice(
            action=Action.UPDATE,
            command=_command("update", facts.staging_dir),
            reason=f"the last check verified {shown_version(available)}, newer than "
            f"{shown_version(installed) if installed else 'nothing installed'}; "
            "airlock update fetches, verifies and installs it",
        )
    age_s = facts.check_age_s
    if facts.state_file is None:
        return Advice(
            action=Action.CHECK,
            command=_command("check", None),
            reason="the last check is unknown: the state is kept in the staging directory "
            "([state] path unset); airlock status STAGING_DIR shows it",
        )
    if age_s is None:
        return Advice(
            action=Action.CHECK,
            command=_command("check", facts.staging_dir),
            reason="no successful check yet: nothing says whether a newer release exists",
        )
    if facts.stale:
        return Advice(
            action=Action.CHECK,
            command=_command("check", facts.staging_dir),
            reason=f"the last successful check is {age(age_s)} old "
            f"(stale after {age(facts.stale_after_s)}); " + freshness_text(facts.saved, facts.now),
        )
    return Advice(
        action=Action.NONE,
        command=None,
        reason=f"up to date as of the last check, {age(age_s)} ago; "
        + freshness_text(facts.saved, facts.now),
    )


def _problem(exc: AirlockError) -> Problem:
    return Problem(code=exc.code, message=exc.message)


def gather(config: HostConfig, *, now: datetime, staging_dir: Path | None = None) -> Facts:
    """Read every fact ``status`` shows; what fails becomes a ``Problem``.

    The state is ``[state] path``, else ``state.json`` in ``staging_dir``; with neither it is
    unknown (``state_file`` is ``None``), which is not a problem: the rest is still read.
    """
    problems: list[Problem] = []
    where = config.state.path if staging_dir is None else config.state.file(staging_dir)
    saved = state.State()
    if staging_dir is not None and not staging_dir.is_dir():
        problems.append(
            Problem(
                code="host.staging",
                message=f"Staging directory {display(os.fspath(staging_dir))} does not exist",
            )
        )
    try:
        if where is not None:
            saved = state.load(where)
    except AirlockError as exc:
        problems.append(_problem(exc))
    rt: RuntimeInfo | None = None
    installed: tuple[str, ...] = ()
    newest: str | None = None
    definitions = config.host.definitions_dir
    try:
        applier = make_applier(config)
        rt = RuntimeInfo.of(applier.runtime, applier.dialect)
        if not definitions.is_dir():
            raise ConfigError(
                f"No transfer definitions: {os.fspath(definitions)} is not a directory"
                " (setting host.definitions_dir); this host is not set up for updates",
                code="config.definition",
            )
        listing = applier.installed()
        installed, newest = listing.versions, listing.current
        boot = applier.booted()
    except AirlockError as exc:
        problems.append(_problem(exc))
        boot = None
    failed = set(saved.failed) | set(boot.failed if boot else ())
    warnings: tuple[str, ...] = ()
    try:
        verifier = openpgp.verifier(config.policy.verifier, limits=config.limits)
        warnings = judge.weaknesses(config.policy, verifier)  # the runtime line tells unverified
    except AirlockError as exc:
        problems.append(_problem(exc))
    return Facts(
        now=now,
        booted=assessment.booted_version(config.host.os_release),
        installed=installed,
        newest_installed=newest,
        saved=saved,
        blessed=boot.blessed if boot else True,
        entry_pending=boot.pending if boot and boot.entries else None,
        failed=tuple(sorted(failed, key=functools.cmp_to_key(version.compare))),
        state_file=where,
        staging_dir=staging_dir,
        runtime=rt,
        stale_after_s=config.state.stale_after_s,
        problems=tuple(problems),
        warnings=warnings,
    )


def as_json(facts: Facts, advice: Advice) -> dict[str, object]:
    """The body of ``status --json`` (see the ``status`` schema)."""
    saved = facts.saved
    age_s = facts.check_age_s
    return {
        "booted": None if facts.booted is None else shown_version(facts.booted),
        "installed": [shown_version(v) for v in facts.installed],
        "newest_installed": None if facts.newest_installed is None
        else shown_version(facts.newest_installed),
        "pending": [shown_version(v) for v in facts.pending],
        "blessed": facts.blessed,
        "failed": [shown_version(v) for v in facts.failed],
        "available": None if saved.available is None else shown_version(saved.available),
        "floor": saved.floor,
        "last_check": None if saved.last_check is None else {
            "time": saved.last_check.isoformat(),
            "age_s": round(age_s or 0.0, 3),
            "stale": facts.stale,
            "stale_after_s": facts.stale_after_s,
            "best_before": None if saved.best_before is None else saved.best_before.isoformat(),
        },
        "freshness": str(facts.freshness),
        "last_seen": None if saved.last_seen is None else saved.last_seen.isoformat(),
        "fresh_required": saved.fresh_required,
        "newest_signature": None if saved.newest_signature is None
        else saved.newest_signature.isoformat(),
        "state_file": None if facts.state_file is None else os.fspath(facts.state_file),
        "runtime": None if facts.runtime is None else {
            "root": os.fspath(facts.runtime.root),
            "version": facts.runtime.version,
            "source": facts.runtime.source,
            "name": facts.runtime.name,
            "rules": facts.runtime.rules,
            "rules_verified": facts.runtime.rules_verified,
            "signature_names": list(facts.runtime.signature_names),
        },
        "next": {"action": str(advice.action), "command": advice.command, "reason": advice.reason},
        "problems": [{"code": p.code, "message": p.message} for p in facts.problems],
        "warnings": list(facts.warnings),
    }  # fmt: skip
