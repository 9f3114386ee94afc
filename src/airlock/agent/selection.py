# SPDX-License-Identifier: MIT
"""Choose what to download: systemd-sysupdate's version assembly over the manifest (inside the VM).

Trusts: the transfers (host-provided) and the manifest only after its signature was checked.  Even
so, every manifest name must pass ``formats.names`` and match a transfer's source pattern EXACTLY
(the whole name, agreeing with sysupdate 257's prefix matching) before it may become a file name
in the share; anything else is ignored and reported in escaped form.  Refuses a chosen version
that has two entries for one transfer.

The assembly is the AVAILABLE pass of ``context_discover_update_sets_by_flag``
(design.md#sysupdate-assembly): walk versions downwards, skip a version missing from any enabled
transfer, honour ``MinVersion=`` (an obsolete newest version yields no candidate).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from airlock.errors import FetchError
from airlock.formats import definitions, names, pattern, version
from airlock.formats.manifest import Manifest
from airlock.text import display

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Wanted:
    """One file of the chosen version."""

    transfer: str
    name: names.SafeName
    sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """The newest complete version on the server (``None``: nothing usable) and its files."""

    version: str | None
    files: tuple[Wanted, ...]
    ignored: tuple[str, ...]  # escaped names of manifest entries no transfer accepts


@dataclass(frozen=True, slots=True, kw_only=True)
class _Instance:
    version: str
    name: names.SafeName
    sha256: str


def file_version(transfer: definitions.Transfer, name: str) -> str | None:
    """The version ``name`` carries for ``transfer``, else ``None``.

    ``name`` must be a safe name and match EXACTLY, with the same fields systemd-sysupdate 257's
    prefix matching would find (``pattern.match_agreed``): the host judges the same way.
    """
    if not names.is_safe(name):
        return None
    fields = pattern.match_agreed(transfer.source.match_patterns, name)
    if fields is None or fields.version is None or not version.is_valid(fields.version):
        return None
    return fields.version


def _instances(manifest: Manifest, transfer: definitions.Transfer) -> list[_Instance]:
    found = []
    for entry in manifest.entries:
        v = file_version(transfer, entry.name)
        if v is not None:
            found.append(_Instance(version=v, name=names.parse(entry.name), sha256=entry.sha256))
    found.sort(key=lambda i: version.key(i.version), reverse=True)
    return found


def _assemble(per_transfer: Sequence[tuple[definitions.Transfer, list[_Instance]]]) -> str | None:
    boundary: str | None = None
    while True:
        cursor: str | None = None
        for _t, insts in per_transfer:
            for inst in insts:
                if boundary is not None and version.compare(inst.version, boundary) >= 0:
                    continue
                if cursor is not None and version.strverscmp(inst.version, cursor) <= 0:
                    break
                cursor = inst.version
                break
            if cursor is None:
                return None
        if cursor is None:
            return None
        boundary = cursor
        complete = all(
            any(version.compare(i.version, cursor) == 0 for i in insts)
            for _t, insts in per_transfer
        )
        if not complete:
            logger.debug("skipping incomplete version %s", display(cursor))
            continue
        obsolete = any(
            t.min_version and version.compare(t.min_version, cursor) > 0 for t, _ in per_transfer
        )
        if obsolete:
            logger.debug("newest complete version %s is obsolete (MinVersion=)", display(cursor))
            return None
        return cursor


def select(manifest: Manifest, transfers: Iterable[definitions.Transfer]) -> Selection:
    """The newest version available for every enabled transfer, and the files that make it up."""
    enabled = [t for t in transfers if t.enabled]
    per_transfer = [(t, _instances(manifest, t)) for t in enabled]
    accepted = {i.name for _t, insts in per_transfer for i in insts}
    ignored = tuple(display(e.name) for e in manifest.entries if e.name not in accepted)
    chosen = _assemble(per_transfer)
    if chosen is None:
        return Selection(version=None, files=(), ignored=ignored)
    files: list[Wanted] = []
    for t, insts in per_transfer:
        matching = [i for i in insts if version.compare(i.version, chosen) == 0]
        if len(matching) != 1:
            raise FetchError(
                f"Refusing manifest: version {display(chosen)} has {len(matching)} files for "
                f"transfer {display(t.name)}",
                code="fetch.manifest",
            )
        files.append(Wanted(transfer=t.name, name=matching[0].name, sha256=matching[0].sha256))
    return Selection(version=chosen, files=tuple(files), ignored=ignored)


def stale(
    present: Iterable[str], transfers: Iterable[definitions.Transfer], *, keep: str | None
) -> tuple[str, ...]:
    """Names in ``updates/`` to delete so each transfer keeps at most ``InstancesMax`` versions.

    The version ``keep`` (the one just downloaded) is always kept; versions in
    ``ProtectVersion=`` are kept too, as sysupdate's vacuum does.
    """
    doomed: list[str] = []
    listing = sorted(set(present))
    for t in transfers:
        by_version: dict[str, list[str]] = {}
        for name in listing:
            v = file_version(t, name)
            if v is not None:
                by_version.setdefault(v, []).append(name)
        ordered = sorted(by_version, key=version.key, reverse=True)
        if keep is not None:
            ordered = [v for v in ordered if version.compare(v, keep) != 0]
            limit = max(t.instances_max - 1, 0)
        else:
            limit = t.instances_max
        removable = [v for v in ordered if v not in t.protect_versions]
        excess = len(ordered) - limit
        for v in reversed(removable):
            if excess <= 0:
                break
            logger.debug("dropping old version %s of transfer %s", display(v), display(t.name))
            doomed.extend(by_version[v])
            excess -= 1
    return tuple(sorted(set(doomed)))
