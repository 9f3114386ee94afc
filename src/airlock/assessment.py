# SPDX-License-Identifier: MIT
"""Boot assessment as the host sees it: what booted, what waits for a reboot, what failed.

systemd's automatic boot assessment keeps its whole state in the names of the boot entries in
``$BOOT``: a UKI installed with boot counting is ``NAME_V+LEFT-DONE.efi``; systemd-boot counts one
try down at each boot of it; with no try left (``+0-DONE``) it sorts the entry last and boots the
next one; a boot found good removes the counter (``NAME_V.efi``, systemd-bless-boot).  Without
boot counting the names carry no counter at all.  The booted version is ``IMAGE_VERSION`` of the
running system's os-release.

``assess()`` reads those facts (pure: names in, an ``Assessment`` out), with the host's own
target patterns of the boot-entry transfer; ``observe()`` gathers them on the host (the
transfers whose target lives in ``$BOOT``, the names there, os-release).  A version is:

* **booted**: the running one; **blessed** unless its entry carries a counter (a good boot was
  marked so, or there is no boot counting at all);
* **pending**: installed, newer than the booted one, with tries left (or no counter): the next
  boot will try it;
* **failed**: an entry with no try left that is not the booted version — systemd-boot has given
  up on it and booted another (rolled back).

Trusts: the host's ``$BOOT`` and os-release (written by sysupdate, systemd-boot and the booted
system, never by the update VM); the names are still parsed with the strict pattern matcher.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from airlock.formats import definitions, pattern, version
from airlock.formats.transfer import PathRelativeTo, ResourceType, Transfer

_BOOT_PLACES = frozenset({PathRelativeTo.BOOT, PathRelativeTo.ESP, PathRelativeTo.XBOOTLDR})
_DEFAULT_BOOT = (Path("/efi"), Path("/boot"), Path("/boot/efi"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One boot entry in ``$BOOT``: its version and its counter, if it has one."""

    name: str
    version: str
    tries_left: int | None
    tries_done: int | None

    @property
    def counted(self) -> bool:
        """The entry still carries a boot counter (not blessed yet)."""
        return self.tries_left is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Assessment:
    """What booted, whether that boot was blessed, what is pending and what failed."""

    booted: str | None
    blessed: bool
    pending: tuple[str, ...]
    failed: tuple[str, ...]
    entries: tuple[Entry, ...]

    def as_json(self) -> dict[str, object]:
        """A JSON-friendly form."""
        return {
            "booted": self.booted,
            "blessed": self.blessed,
            "pending": list(self.pending),
            "failed": list(self.failed),
            "entries": [
                {"name": e.name, "version": e.version, "tries_left": e.tries_left,
                 "tries_done": e.tries_done}
                for e in self.entries
            ],
        }  # fmt: skip


def entries(names: Iterable[str], patterns: Sequence[pattern.Pattern]) -> tuple[Entry, ...]:
    """The names that are boot entries of the transfer (the rest is ignored), by version."""
    found = []
    for name in names:
        fields = pattern.match_any(patterns, name)
        if fields is None or fields.version is None or not version.is_valid(fields.version):
            continue
        found.append(
            Entry(
                name=name,
                version=fields.version,
                tries_left=fields.tries_left,
                tries_done=fields.tries_done,
            )
        )
    return tuple(sorted(found, key=functools.cmp_to_key(_older_first)))


def _older_first(a: Entry, b: Entry) -> int:
    return version.compare(a.version, b.version) or (a.name > b.name) - (a.name < b.name)


def assess(
    names: Iterable[str], patterns: Sequence[pattern.Pattern], *, booted: str | None
) -> Assessment:
    """The assessment of the boot entries ``names`` while ``booted`` runs."""
    found = entries(names, patterns)
    blessed = booted is not None and not any(e.counted for e in found if e.version == booted)
    failed = tuple(e.version for e in found if e.tries_left == 0 and e.version != booted)
    pending = tuple(
        e.version
        for e in found
        if e.version != booted
        and e.tries_left != 0
        and (booted is None or version.compare(e.version, booted) > 0)
    )
    return Assessment(booted=booted, blessed=blessed, pending=pending, failed=failed, entries=found)


def booted_version(os_release: Path) -> str | None:
    """``IMAGE_VERSION`` of the running system's os-release (``None``: unreadable or unset)."""
    try:
        text = os_release.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "IMAGE_VERSION":
            value = value.strip().strip("\"'")
            return value if version.is_valid(value) else None
    return None


def observe(transfers: Sequence[Transfer], *, boot: Path | None, os_release: Path) -> Assessment:
    """The assessment of the host's boot entries: the regular files in ``$BOOT`` that the host's
    boot-entry transfers manage, and the booted version from ``os_release``.

    ``boot`` is the configured ESP; unset, the first of sysupdate's own places (``/efi``,
    ``/boot``, ``/boot/efi``) holding the transfer's directory.  No entries: nothing to assess
    (the booted version counts as blessed, as without boot counting).
    """
    names: list[str] = []
    patterns: list[pattern.Pattern] = []
    for t in transfers:
        if t.target.type is not ResourceType.REGULAR_FILE or not t.enabled:
            continue
        if t.target.path_relative_to not in _BOOT_PLACES:
            continue
        patterns += t.target.match_patterns
        for place in [boot] if boot is not None else list(_DEFAULT_BOOT):
            try:
                entries = os.scandir(place / t.target.path.lstrip("/"))
            except OSError:
                continue
            with entries:
                names += [e.name for e in entries if e.is_file(follow_symlinks=False)]
            break
    return assess(names, patterns, booted=booted_version(os_release))


def observe_host(definitions_dir: Path, *, boot: Path | None, os_release: Path) -> Assessment:
    """``observe`` with the host's transfer definitions read from ``definitions_dir``.

    Raises:
        FormatError: ``config.definition``, a definition does not parse.
    """
    try:
        text = os_release.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    specifiers = definitions.Specifiers.from_os_release(text)
    transfers = definitions.load_dir(definitions_dir, specifiers=specifiers)
    return observe(transfers, boot=boot, os_release=os_release)
