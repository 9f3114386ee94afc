# SPDX-License-Identifier: MIT
"""Persisted trusted state of the host updater, written atomically as one small JSON file.

Fields: the installed version, the version pending a reboot, the last successful check (a fresh,
valid manifest was seen), the rollback floor, the creation time of the newest accepted manifest
signature, and the newer release that check verified but did not install (``available``, what
``airlock status`` says the next update would install).  The floor and the signature time are
passed to the judge as ``floor`` and ``not_before``, so a replayed older release is refused even
when the GPT labels were rewritten.

How the state changes is one pure function, ``advance(old, event, now)``: the floor only rises,
the newest signature time never goes back, the last check is the run's reference time, the
pending version is the one just installed, and ``available`` is the verified version newer than
the installed one when this run did not install it (else none).  ``load`` and ``save`` only read
and write it.

Only the host writes this file and only values it verified go in; it is still parsed strictly
(a corrupt file is a ``ConfigError``, never silently reset, since resetting would lower the floor).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from airlock import fsutil
from airlock.errors import ConfigError, HostError
from airlock.formats import version
from airlock.settings import PATH, SECONDS, setting

FORMAT_VERSION = 1
_MAX_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class StateConfig:
    """``[state]``: where the host keeps what it verified between runs."""

    SECTION: ClassVar[str] = "state"

    path: Path = setting(
        Path("/var/lib/airlock/state.json"),
        kind=PATH,
        help="the state file (rollback floor, newest signature time, last check)",
    )
    stale_after_s: float = setting(
        86400.0,
        kind=SECONDS,
        help="airlock status calls the last successful check stale after this long",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class State:
    """What the host remembers between runs (all values verified before they were stored)."""

    installed: str | None = None
    pending: str | None = None
    last_check: datetime | None = None
    floor: str | None = None
    newest_signature: datetime | None = None
    manifest_sha256: str | None = None
    available: str | None = None

    def to_json(self) -> dict[str, object]:
        """A JSON-ready mapping (datetimes as ISO 8601 UTC)."""
        out: dict[str, object] = {"format": FORMAT_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.isoformat() if isinstance(value, datetime) else value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Verified:
    """A run saw a fresh, valid manifest (and maybe installed its release).

    Attributes:
        installed: the newest version sysupdate reported installed before the run.
        version: the verified release's version (``None``: the snapshot held none newer).
        applied: whether ``version`` was installed by this run.
        signed: creation times of the counted signatures over the manifest.
        manifest_sha256: SHA-256 of the manifest bytes that were verified.
    """

    installed: str | None
    version: str | None
    applied: bool
    signed: tuple[datetime, ...]
    manifest_sha256: str


Event = Verified  # boot counting (booted, pending, failed) will add its events here


def _higher(a: str | None, b: str | None) -> str | None:
    if a is None or (b is not None and version.compare(b, a) > 0):
        return b
    return a


def advance(old: State, event: Event, now: datetime) -> State:
    """The state after ``event`` at ``now`` (pure: no I/O, ``old`` is not changed).

    The floor rises to the release just installed and to what sysupdate reports installed (so a
    run killed between apply and record converges on the next run), and never falls; the newest
    signature time never goes back.
    """
    newest = max((*event.signed, *filter(None, [old.newest_signature])), default=None)
    floor = _higher(old.floor, event.installed)
    pending = old.pending
    available = None
    if event.applied and event.version is not None:
        floor = _higher(floor, event.version)
        pending = event.version
    elif event.version is not None and (
        event.installed is None or version.compare(event.version, event.installed) > 0
    ):
        available = event.version  # verified newer than what is installed, not installed yet
    return dataclasses.replace(
        old,
        installed=event.installed if event.installed is not None else old.installed,
        pending=pending,
        last_check=now,
        floor=floor,
        newest_signature=newest,
        manifest_sha256=event.manifest_sha256,
        available=available,
    )


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


def _text(raw: object, key: str) -> str | None:
    if raw is None or (
        isinstance(raw, str) and raw.isascii() and raw.isprintable() and 0 < len(raw) <= 255
    ):
        return raw
    raise ConfigError(f"State file: {key} is not a short printable string", code="config.state")


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
        last_check=_time(data.get("last_check"), "last_check"),
        floor=_text(data.get("floor"), "floor"),
        newest_signature=_time(data.get("newest_signature"), "newest_signature"),
        manifest_sha256=_text(data.get("manifest_sha256"), "manifest_sha256"),
        available=_text(data.get("available"), "available"),
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
