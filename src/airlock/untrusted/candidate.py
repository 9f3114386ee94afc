# SPDX-License-Identifier: MIT
"""The allowlist and version assembly over a walked snapshot: ``Listing`` → ``CandidateRelease``.

Inputs are the walk's ``Listing`` (untrusted names, already structurally safe), the host's transfer
definitions (trusted) and, for assembly, the parsed manifest (parsed but not yet judged: this module
never decides whether it is authentic or fresh — ``trusted.verify`` does).

Rules (threats A12, B12, B13, B18, D3 of design.md#catalogue):

* Allowlist: every listed file is ``SHA256SUMS``, ``SHA256SUMS.gpg``, ``SHA256SUMS.sha256.asc``, or
  matches, in ``exact`` mode (the whole name), the source patterns of exactly one transfer. Anything
  else refuses the snapshot (``reject.unlisted``; two transfers: ``reject.ambiguous``).
* The release version is the newest version among manifest entries that match an enabled transfer;
  at that version every enabled transfer must have exactly one manifest entry (``reject.manifest``
  when one has none, ``reject.mixmatch`` when one has two), and no two distinct version strings
  in the manifest may compare equal (``reject.manifest``).
* A file of the snapshot at the release version that is not the manifest's entry, or at any newer
  version, refuses the snapshot (``reject.unlisted``). Files of older versions (stale downloads kept
  in staging) and of disabled transfers are listed to drop and never read.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from airlock.errors import InspectionError, ManifestError
from airlock.formats import manifest as manifest_format
from airlock.formats import pattern, version
from airlock.formats.definitions import Transfer
from airlock.limits import Limits
from airlock.text import display
from airlock.untrusted import walk
from airlock.untrusted.walk import ListedFile, Listing

logger = logging.getLogger(__name__)

MANIFEST_NAME = "SHA256SUMS"
SIGNATURE_NAMES = ("SHA256SUMS.gpg", "SHA256SUMS.sha256.asc")
CONTROL_NAMES = (MANIFEST_NAME, *SIGNATURE_NAMES)
_MAGIC_PREFIX = "BEST-BEFORE-"


@dataclass(frozen=True, slots=True, kw_only=True)
class Payload:
    """A listed file that matched one transfer's source pattern; ``version`` is from its name."""

    file: ListedFile
    transfer: str
    version: str
    enabled: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Classified:
    """The snapshot sorted by role: control files, payload candidates, temporaries."""

    manifest: ListedFile | None
    signatures: tuple[ListedFile, ...]
    payloads: tuple[Payload, ...]
    listing: Listing


@dataclass(frozen=True, slots=True, kw_only=True)
class CandidateFile:
    """A payload of the release version with the digest the (unverified) manifest claims."""

    file: ListedFile
    transfer: str
    claimed_sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Drop:
    """An entry to drop: ``name`` is the raw name usable with ``dir_fd=``; never print it."""

    name: str
    name_display: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CandidateRelease:
    """The release the manifest describes and what of it the snapshot holds (unverified)."""

    version: str
    files: tuple[CandidateFile, ...]
    missing: tuple[str, ...]
    dropped: tuple[Drop, ...]


def _match(transfer: Transfer, name: str) -> str | None:
    # ADR 0010: judge only names on which EXACT and systemd 257's own matching agree.
    fields = pattern.match_agreed(transfer.source.match_patterns, name)
    return fields.version if fields is not None else None


def _owner(transfers: Sequence[Transfer], name: str) -> tuple[Transfer, str] | None:
    """The single transfer whose source patterns match ``name`` exactly, with the version.

    A name that a second transfer's patterns would pick up the way systemd 257 matches (prefix
    matching) is ambiguous: sysupdate could install it under that other transfer.
    """
    loose = [
        t
        for t in transfers
        if pattern.match_any(t.source.match_patterns, name, pattern.Mode.SYSUPDATE) is not None
    ]
    hits = [(t, v) for t in transfers if (v := _match(t, name)) is not None]
    if len(loose) > 1:
        raise InspectionError(
            f"Refusing {display(name)}: it matches the patterns of transfers "
            + ", ".join(display(t.name) for t in loose),
            code="reject.ambiguous",
            subject=name,
        )
    return hits[0] if hits else None


def classify(listing: Listing, transfers: Sequence[Transfer]) -> Classified:
    """Apply the allowlist to every listed file.

    Raises:
        InspectionError: ``reject.unlisted`` for a name no host pattern or control name allows,
            ``reject.ambiguous`` for a name that two transfers' patterns match.
    """
    manifest: ListedFile | None = None
    signatures: list[ListedFile] = []
    payloads: list[Payload] = []
    for f in listing.files:
        if f.name == MANIFEST_NAME:
            manifest = f
            continue
        if f.name in SIGNATURE_NAMES:
            signatures.append(f)
            continue
        owner = _owner(transfers, f.name)
        if owner is None:
            raise InspectionError(
                f"Refusing {display(f.name)}: no transfer source pattern matches it exactly",
                code="reject.unlisted",
                subject=f.name,
            )
        t, v = owner
        payloads.append(Payload(file=f, transfer=t.name, version=v, enabled=t.enabled))
    return Classified(
        manifest=manifest, signatures=tuple(signatures), payloads=tuple(payloads), listing=listing
    )


def release_entries(
    manifest: manifest_format.Manifest, transfers: Sequence[Transfer]
) -> tuple[str, dict[str, manifest_format.Entry]]:
    """The manifest's release version and its one entry per enabled transfer.

    Raises:
        ManifestError: no entry matches an enabled transfer, an entry (or the BEST-BEFORE
            line, a plain name to systemd 257) matches one only by systemd 257's prefix rule,
            two version strings compare equal, or an enabled transfer has no entry at the
            release version.
        InspectionError: ``reject.mixmatch`` when a transfer has two entries at that version,
            ``reject.ambiguous`` when an entry matches two transfers.
    """
    enabled = [t for t in transfers if t.enabled]
    matched: list[tuple[str, str, manifest_format.Entry]] = []  # (transfer, version, entry)
    for entry in manifest.entries:
        if entry.name.startswith(_MAGIC_PREFIX):
            continue
        owner = _owner(enabled, entry.name)
        if owner is not None:
            matched.append((owner[0].name, owner[1], entry))
        elif any(
            pattern.match_any(t.source.match_patterns, entry.name, pattern.Mode.SYSUPDATE)
            for t in enabled
        ):
            # systemd 257 would take this entry as an instance by prefix matching (ADR 0010).
            raise ManifestError(
                f"Refusing SHA256SUMS: {display(entry.name)} matches a transfer only by"
                " sysupdate's prefix rule",
                code="reject.manifest",
                subject=entry.name,
            )
    if manifest.best_before is not None:
        # systemd 257 reads the marker line as an ordinary file name (parse() hides it).
        marker = manifest_format.BEST_BEFORE_PREFIX + manifest.best_before.isoformat()
        if any(
            pattern.match_any(t.source.match_patterns, marker, pattern.Mode.SYSUPDATE)
            for t in enabled
        ):
            raise ManifestError(
                "Refusing SHA256SUMS: its BEST-BEFORE line matches a transfer's source pattern,"
                " so systemd 257 would take it for a file",
                code="reject.manifest",
            )
    if not matched:
        raise ManifestError(
            "Refusing SHA256SUMS: it lists no file of any enabled transfer", code="reject.manifest"
        )
    versions = sorted({v for _, v, _ in matched}, key=version.key)
    for a, b in itertools.pairwise(versions):
        if version.compare(a, b) == 0:
            raise ManifestError(
                f"Refusing SHA256SUMS: versions {display(a)} and {display(b)} compare equal",
                code="reject.manifest",
            )
    newest = versions[-1]
    by_transfer: dict[str, manifest_format.Entry] = {}
    for tname, v, entry in matched:
        if v != newest:
            continue
        if tname in by_transfer:
            raise InspectionError(
                f"Refusing SHA256SUMS: transfer {display(tname)} has two files for version"
                f" {display(newest)}",
                code="reject.mixmatch",
                subject=entry.name,
            )
        by_transfer[tname] = entry
    for t in enabled:
        if t.name not in by_transfer:
            raise ManifestError(
                f"Refusing SHA256SUMS: version {display(newest)} has no file for transfer"
                f" {display(t.name)}",
                code="reject.manifest",
            )
    return newest, by_transfer


def assemble(
    classified: Classified, manifest: manifest_format.Manifest, transfers: Sequence[Transfer]
) -> CandidateRelease:
    """Assemble the manifest's release version from the snapshot's files.

    Returns:
        The release version, the present files of it, the transfers whose file is absent and the
        entries to drop (temporaries, stale versions, disabled transfers).

    Raises:
        ManifestError, InspectionError: see ``release_entries``; ``reject.unlisted`` for a file at
            the release version that is not the manifest's entry, or at a newer version.
    """
    newest, by_transfer = release_entries(manifest, transfers)
    wanted = {e.name: (t, e) for t, e in by_transfer.items()}
    files: list[CandidateFile] = []
    dropped = [
        Drop(name=t.name, name_display=t.name_display, reason="temporary")
        for t in classified.listing.temporaries
    ]
    for p in classified.payloads:
        name = p.file.name
        if not p.enabled:
            dropped.append(Drop(name=name, name_display=display(name), reason="transfer disabled"))
            continue
        order = version.compare(p.version, newest)
        if name in wanted and order == 0:
            tname, entry = wanted[name]
            files.append(
                CandidateFile(file=p.file, transfer=tname, claimed_sha256=entry.sha256.lower())
            )
        elif order >= 0:
            raise InspectionError(
                f"Refusing {display(name)}: version {display(p.version)} of transfer"
                f" {display(p.transfer)} is not the file the manifest lists",
                code="reject.unlisted",
                subject=name,
            )
        else:
            logger.debug("dropping stale version %s of %s", display(p.version), display(name))
            dropped.append(
                Drop(
                    name=name,
                    name_display=display(name),
                    reason=f"stale version {display(p.version)}",
                )
            )
    present = {f.transfer for f in files}
    missing = tuple(sorted(t for t in by_transfer if t not in present))
    return CandidateRelease(
        version=newest,
        files=tuple(sorted(files, key=lambda f: f.transfer)),
        missing=missing,
        dropped=tuple(dropped),
    )


def droppable(dir_fd: int, *, transfers: Sequence[Transfer], limits: Limits) -> tuple[str, ...]:
    """Names the host may unlink from the writable snapshot before it is made read-only.

    Dot-temporaries, files of disabled transfers, and files of enabled transfers older than the
    newest version for which every enabled transfer has a file.  Nothing is opened or followed;
    the manifest is not read (the judge re-checks everything on the read-only snapshot).

    Raises:
        InspectionError: the walk refused the snapshot (see ``walk.walk``).
        OSError: the directory could not be read.
    """
    listing = walk.walk(dir_fd, limits=limits)
    names = [t.name for t in listing.temporaries]
    enabled = [t for t in transfers if t.enabled]
    per_version: dict[str, set[str]] = {}
    located: list[tuple[ListedFile, Transfer, str]] = []
    for f in listing.files:
        if f.name in CONTROL_NAMES:
            continue
        try:
            owner = _owner(transfers, f.name)
        except InspectionError:
            continue
        if owner is None:
            continue
        located.append((f, owner[0], owner[1]))
        per_version.setdefault(owner[1], set()).add(owner[0].name)
    complete = [v for v, ts in per_version.items() if all(t.name in ts for t in enabled)]
    newest = max(complete, key=version.key) if complete and enabled else None
    for f, t, v in located:
        if not t.enabled or (newest is not None and version.compare(v, newest) < 0):
            names.append(f.name)
    return tuple(sorted(names, key=os.fsencode))
