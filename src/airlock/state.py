# SPDX-License-Identifier: MIT
"""Persisted trusted state of the host updater, written atomically as one small JSON file.

Fields: the installed version, the version pending a reboot, the version booted (and whether its
boot was blessed), the versions that failed to boot and were rolled back, the last successful
check (a *fresh*, valid manifest was seen, ``fresh()``) with the ``BEST-BEFORE`` date it carried,
the last run that verified any manifest (``last_seen``), the rollback floor, the creation time of
the newest accepted manifest signature, the freshness ratchet (``fresh_required``: once a manifest
with ``BEST-BEFORE`` was accepted, later ones must carry one too), and the newer release that check
verified but did not install (``available``, what ``airlock status`` says the next update would
install).  The floor and the
signature time are passed to the judge as ``floor`` and ``not_before``, so a replayed older
release is refused even when the GPT labels were rewritten.

How the state changes is one pure function, ``advance(old, event, now)``, over two events: a run
saw what booted (``Booted``, from the boot entries in ``$BOOT`` and os-release, see
``airlock.assessment``), and a run verified a release and maybe installed it (``Verified``).  The
floor only rises, and only to a version that has booted and been blessed (a good boot): until
then the previous version must stay installable, since the new one may yet fail to boot and be
rolled back.  The newest signature time never goes back nor past ``now``, the last check is the
run's reference time, the pending version is the one just installed until it boots or fails, and
``available`` is the verified version newer than the installed one when the run did not install it
(else none).  ``load`` and ``save`` only read and write it; ``reset`` is the administrator's way
out (``airlock state reset``).  Fields added after format 1 was first written default when absent,
so an older file loads unchanged.

It lives where ``[state] path`` says, by default in the staging directory (``state.json`` beside
the ``shared`` subvolume): persistent, on the host's own filesystem even when the root is read-only,
and never bound into the VM (only ``shared`` is).  Deleting the staging directory forgets it; the
floor then falls back to what systemd-sysupdate reports installed.

Only the host writes this file and only values it verified go in; it is still parsed strictly
(a corrupt file is a ``ConfigError``, never silently reset, since resetting would lower the floor).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import ClassVar, assert_never

from airlock import fsutil
from airlock.errors import ConfigError, HostError
from airlock.formats import version
from airlock.settings import PATH, SECONDS, optional, setting

FORMAT_VERSION = 1
IN_STAGING = "state.json"
_MAX_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class StateConfig:
    """``[state]``: where the host keeps what it verified between runs."""

    SECTION: ClassVar[str] = "state"

    path: Path | None = setting(
        None,
        kind=optional(PATH),
        help="the state file (rollback floor, newest signature time, last check); unset: "
        f"{IN_STAGING} in the staging directory, next to shared but never shared with the VM",
    )
    stale_after_s: float = setting(
        86400.0,
        kind=SECONDS,
        help="airlock status calls the last successful check stale after this long",
    )

    def file(self, staging_dir: Path) -> Path:
        """Where the state lives for a run on ``staging_dir``: ``path``, else inside it."""
        return self.path if self.path is not None else staging_dir / IN_STAGING


@dataclass(frozen=True, slots=True, kw_only=True)
class State:
    """What the host remembers between runs (all values verified before they were stored)."""

    installed: str | None = None
    pending: str | None = None
    booted: str | None = None
    blessed: bool = False
    failed: tuple[str, ...] = ()
    last_check: datetime | None = None
    floor: str | None = None
    newest_signature: datetime | None = None
    manifest_sha256: str | None = None
    available: str | None = None
    last_seen: datetime | None = None
    best_before: date | None = None
    fresh_required: bool = False

    def to_json(self) -> dict[str, object]:
        """A JSON-ready mapping (datetimes as ISO 8601 UTC)."""
        out: dict[str, object] = {"format": FORMAT_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime | date):
                value = value.isoformat()
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Verified:
    """A run verified a manifest (and maybe installed its release); fresh or not, see ``fresh``.

    Attributes:
        installed: the newest version sysupdate reported installed before the run.
        version: the verified release's version (``None``: the snapshot held none newer).
        applied: whether ``version`` was installed by this run.
        signed: creation times of the counted signatures over the manifest.
        manifest_sha256: SHA-256 of the manifest bytes that were verified.
        best_before: the manifest's ``BEST-BEFORE`` date (``None``: it carried none).
    """

    installed: str | None
    version: str | None
    applied: bool
    signed: tuple[datetime, ...]
    manifest_sha256: str
    best_before: date | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Booted:
    """What a run saw of the running system (``airlock.assessment``).

    Attributes:
        version: the booted version (os-release ``IMAGE_VERSION``), if known.
        blessed: its boot entry carries no boot counter (a good boot, or no boot counting).
        failed: versions whose boot entry has no try left and that are not booted: systemd-boot
            gave up on them and booted another.
    """

    version: str | None
    blessed: bool
    failed: tuple[str, ...] = ()


Event = Verified | Booted


def _higher(a: str | None, b: str | None) -> str | None:
    if a is None or (b is not None and version.compare(b, a) > 0):
        return b
    return a


def _by_version(versions: set[str]) -> tuple[str, ...]:
    return tuple(sorted(versions, key=functools.cmp_to_key(version.compare)))


def advance(old: State, event: Event, now: datetime) -> State:
    """The state after ``event`` at ``now`` (pure: no I/O, ``old`` is not changed)."""
    match event:
        case Booted():
            return _booted(old, event)
        case Verified():
            return _verified(old, event, now)
        case _:
            assert_never(event)


def _booted(old: State, event: Booted) -> State:
    """The floor rises to a blessed booted version; a pending version it covers, or one that
    failed, is no longer pending; failures accumulate until that version boots well."""
    floor = old.floor
    pending = old.pending
    failed = set(old.failed) | set(event.failed)
    if event.blessed and event.version is not None:
        floor = _higher(floor, event.version)
        failed.discard(event.version)
        if pending is not None and version.compare(pending, event.version) <= 0:
            pending = None
    if pending in failed:
        pending = None
    return dataclasses.replace(
        old,
        booted=event.version,
        blessed=event.blessed,
        failed=_by_version(failed),
        floor=floor,
        pending=pending,
    )


def expires(best_before: date) -> datetime:
    """When a ``BEST-BEFORE`` date stops holding: 00:00 UTC that day (as ``trusted.verify``)."""
    return datetime.combine(best_before, time(0), UTC)


def fresh(old: State, event: Verified, now: datetime) -> bool:
    """Whether ``event``'s manifest is fresh: proof that the publisher spoke since the last check.

    Fresh means either (docs/adr/0155):

    * it carries a ``BEST-BEFORE`` date still ahead of ``now``: the publisher vouches for it until
      then, replayed or not; or
    * its newest counted signature (capped at ``now``) is strictly newer than the newest one
      recorded: the publisher signed something this host had not seen.

    A manifest without a marker whose signatures are no newer than the recorded one is what a VM
    replaying the last release sends forever: valid, but no evidence that nothing newer exists.
    The version is not a separate test: a release newer than the installed one that this host had
    not seen yet carries a newer signature (signatures older than the recorded one are refused as
    ``reject.replay``), and one it had seen proves nothing new.
    """
    if event.best_before is not None and expires(event.best_before) >= now:
        return True
    newest = max((t if t < now else now for t in event.signed), default=None)
    if newest is None:
        return False
    return old.newest_signature is None or newest > old.newest_signature


def _verified(old: State, event: Verified, now: datetime) -> State:
    """A verified run: the check, the signature time and what it installed (pending a boot).

    Pending is the version just installed, or what sysupdate reports installed beyond the booted
    version (unless it failed).  The floor does not move here: it rises only once a version has
    booted and been blessed.  ``last_check`` (and the ``best_before`` shown with it) moves only
    when the manifest is ``fresh``; ``last_seen`` on every verified run.  The freshness ratchet
    (``fresh_required``) is set once a manifest with a ``BEST-BEFORE`` date was accepted and is
    never cleared here (only ``airlock state reset``).
    """
    is_fresh = fresh(old, event, now)
    # Never later than the run's reference time: a signature within the verifier's clock skew
    # must not lift the floor past genuine releases signed in the next minutes.
    newest = max(
        (*(min(t, now) for t in event.signed), *filter(None, [old.newest_signature])), default=None
    )
    pending = old.pending
    available = None
    if event.applied and event.version is not None:
        pending = event.version
    elif event.version is not None and (
        event.installed is None or version.compare(event.version, event.installed) > 0
    ):
        available = event.version  # verified newer than what is installed, not installed yet
    if (  # installed beyond what runs, not failed: a run killed after apply converges here
        event.installed is not None
        and old.booted is not None
        and event.installed not in old.failed
        and version.compare(event.installed, old.booted) > 0
    ):
        pending = _higher(pending, event.installed)
    return dataclasses.replace(
        old,
        installed=event.installed if event.installed is not None else old.installed,
        pending=pending,
        last_check=now if is_fresh else old.last_check,
        last_seen=now,
        best_before=event.best_before if is_fresh else old.best_before,
        fresh_required=old.fresh_required or event.best_before is not None,
        newest_signature=newest,
        manifest_sha256=event.manifest_sha256,
        available=available,
    )


# What ``airlock state reset`` may reset, and what resetting each one means.
RESETTABLE: dict[str, str] = {
    "floor": "the rollback floor (then what systemd-sysupdate lists installed is the floor)",
    "newest_signature": "the replay floor: the creation time of the newest accepted signature",
    "fresh_required": "the freshness ratchet: a manifest without BEST-BEFORE is accepted again",
    "pending": "the version installed and waiting for a reboot",
    "failed": "the versions recorded as failed to boot",
    "available": "the newer release the last check verified",
    "last_check": "the last fresh check, its BEST-BEFORE date and the last run (status: never)",
}


def reset(old: State, fields: tuple[str, ...]) -> State:
    """``old`` with ``fields`` (names of ``RESETTABLE``) set back to their defaults (pure).

    Raises:
        ValueError: a name that is not in ``RESETTABLE``.
    """
    unknown = [f for f in fields if f not in RESETTABLE]
    if unknown:
        raise ValueError(f"not resettable: {', '.join(unknown)}")
    blank = State()
    changes: dict[str, object] = {f: getattr(blank, f) for f in fields}
    if "last_check" in fields:
        changes.update(last_seen=None, best_before=None)
    return dataclasses.replace(old, **changes)  # type: ignore[arg-type]  # keys are State fields


def _time(raw: object, key: str) -> datetime | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ConfigError(f"State file: {key} is not a string", code="config.state")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ConfigError(f"State file: {key} is not an ISO time", code="config.state") from exc
    if value.tzinfo is None:
        raise ConfigError(f"State file: {key} has no time zone", code="config.state")
    return value.astimezone(UTC)


def _date(raw: object, key: str) -> date | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ConfigError(f"State file: {key} is not a string", code="config.state")
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise ConfigError(f"State file: {key} is not an ISO date", code="config.state") from exc


def _text(raw: object, key: str) -> str | None:
    if raw is None or (
        isinstance(raw, str) and raw.isascii() and raw.isprintable() and 0 < len(raw) <= 255
    ):
        return raw
    raise ConfigError(f"State file: {key} is not a short printable string", code="config.state")


def _flag(raw: object, key: str) -> bool:
    if isinstance(raw, bool):
        return raw
    raise ConfigError(f"State file: {key} is not true or false", code="config.state")


def _texts(raw: object, key: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or len(raw) > 64 or not all(isinstance(i, str) for i in raw):
        raise ConfigError(f"State file: {key} is not a short list of strings", code="config.state")
    return tuple(str(_text(item, key)) for item in raw)


def load(path: Path) -> State:
    """Read the state file; a missing file is the empty state.

    Raises:
        ConfigError: the file exists but is not a valid state file.
    """
    try:
        fd = os.open(path, fsutil.FILE_FLAGS)
    except FileNotFoundError:
        return State()
    except OSError as exc:
        raise ConfigError(
            f"Failed to read state file {os.fspath(path)}: {exc.strerror}", code="config.state"
        ) from exc
    try:
        raw = fsutil.read_bounded(fd, _MAX_BYTES)
    except ValueError as exc:
        raise ConfigError("State file is too large", code="config.state") from exc
    finally:
        os.close(fd)
    try:
        data = json.loads(raw.decode("utf-8", errors="strict"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"State file {os.fspath(path)} is corrupt",
            code="config.state",
            hint="inspect it by hand; it holds the rollback floor, so it is never reset silently",
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
        raise ConfigError(
            f"State file {os.fspath(path)} has an unknown format", code="config.state"
        )
    return State(
        installed=_text(data.get("installed"), "installed"),
        pending=_text(data.get("pending"), "pending"),
        booted=_text(data.get("booted"), "booted"),
        blessed=_flag(data.get("blessed", False), "blessed"),
        failed=_texts(data.get("failed", []), "failed"),
        last_check=_time(data.get("last_check"), "last_check"),
        floor=_text(data.get("floor"), "floor"),
        newest_signature=_time(data.get("newest_signature"), "newest_signature"),
        manifest_sha256=_text(data.get("manifest_sha256"), "manifest_sha256"),
        available=_text(data.get("available"), "available"),
        # Added later in format 1: a file written before has none of them (the defaults).
        last_seen=_time(data.get("last_seen"), "last_seen"),
        best_before=_date(data.get("best_before"), "best_before"),
        fresh_required=_flag(data.get("fresh_required", False), "fresh_required"),
    )


def save(path: Path, state: State) -> None:
    """Write ``state`` atomically (temporary file, fsync, rename, fsync of the directory).

    Raises:
        HostError: the file could not be written.
    """
    data = json.dumps(state.to_json(), indent=2, sort_keys=True).encode() + b"\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fsutil.atomic_write(path, data, mode=0o600)
    except OSError as exc:
        raise HostError(
            f"Failed to write state file {os.fspath(path)}: {exc.strerror}", code="host.state"
        ) from exc
