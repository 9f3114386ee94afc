# SPDX-License-Identifier: MIT
"""The gate: a frozen staging snapshot in, a ``VerifiedRelease`` out, or a ``RejectedError``.

``judge()`` is the only producer of ``VerifiedRelease``.  It trusts the host's transfer definitions,
the keyring, the policy, the limits and the clock; it trusts nothing in the snapshot.  Order of the
checks (each raises; nothing is returned that did not pass all of them):

1. ``syncfs`` the snapshot (threat A9; identifiers as in design.md#catalogue), then walk it without
   following or opening anything (``untrusted.walk``) and apply the allowlist
   (``untrusted.candidate.classify``).
2. Read ``SHA256SUMS`` once, bounded, from an fd re-checked with ``fstat``; read every signature
   file present (at least one), bounded.  Every one must verify over exactly those manifest bytes
   (C1–C5, C10, C11), none may use a weak hash (C9).
3. Signer policy: only trusted primary fingerprints count, at least ``threshold`` distinct ones
   (C7, ``reject.signer``, ``reject.threshold``); no counted signature older than ``not_before``
   (C12/D2, ``reject.replay``).  No signature may be created after ``now`` plus
   ``openpgp.CLOCK_SKEW`` (the verifier refuses it).  Only the counted signatures become the
   release's ``signers``, whose times the run records as the next ``not_before``.
4. Parse the authenticated manifest strictly (B1–B11); ``BEST-BEFORE`` in the past or, with
   ``require_fresh`` or the state's freshness ratchet, absent refuses it (D2, ``reject.expired``).
5. Assemble the release (one file per enabled transfer, D3/B18); a release older than the floor or
   the installed version is a rollback (D1, ``reject.rollback``); a newer release the snapshot does
   not fully hold is refused (B19, ``reject.missing``).
6. Before anything is hashed (``trusted.bounds``): a payload larger than its target's room
   (``Policy.room``: the largest partition it may write, the space in ``$BOOT``) is refused
   (``reject.room``, ADR 0160), and so is a partition label over GPT's 36 UTF-16 units
   (``reject.label``, ADR 0161).
   Hash each release file from an fd opened relative to the snapshot and compare with the manifest
   (``reject.digest``); a url-file payload sysupdate would decompress (compression magic) or fail
   on (under 6 bytes) is refused (B20, ``reject.payload``).

The snapshot is never modified.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from airlock import fsutil
from airlock.backends.openpgp import SignatureVerifier, ValidSignature
from airlock.errors import (
    DigestError,
    FreshnessError,
    HostError,
    InspectionError,
    ManifestError,
    SignatureError,
)
from airlock.formats import dialect, version
from airlock.formats import manifest as manifest_format
from airlock.formats.definitions import ResourceType, Transfer
from airlock.limits import Limits
from airlock.text import display
from airlock.trusted import bounds
from airlock.trusted.policy import Policy
from airlock.trusted.release import Dropped, VerifiedFile, VerifiedRelease
from airlock.untrusted import candidate, hashing, walk
from airlock.untrusted.walk import ListedFile, Listing

logger = logging.getLogger(__name__)

# OpenPGP hash algorithm ids (RFC 4880 §9.4) refused for signatures: MD5, SHA-1, RIPEMD-160.
WEAK_HASH_ALGOS = frozenset({1, 2, 3})

# systemd-sysupdate decompresses url-file payloads by magic (xz, gzip, bzip2 in 257; zstd from
# 258; lz4 in 262) and 257 fails on ones shorter than 6 bytes, after it has vacuumed
# (design.md#sysupdate-vacuum-first, design.md#sysupdate-decompress, docs/sysupdate-versions.md).
# The release format is uncompressed (design.md#no-compression; the publisher refuses both, threat
# B20).  The magic refused is that of every compression any supported sysupdate undoes
# (formats.dialect), so a release installs the same bytes under every runtime a host may use.
MIN_URL_FILE_BYTES = max(d.min_url_file_bytes for d in dialect.TABLE)
COMPRESSION_MAGIC = dialect.ALL_COMPRESSIONS


def _read_control(dir_fd: int, listed: ListedFile, max_bytes: int, what: str) -> bytes:
    """Read a manifest or signature file once, capped, from an fd re-checked with ``fstat``."""
    if listed.size > max_bytes:
        raise InspectionError(
            f"Refusing {display(listed.name)}: {listed.size} bytes exceeds the {what} cap of"
            f" {max_bytes}",
            code="reject.size",
            subject=listed.name,
        )
    fd = hashing.open_checked(dir_fd, listed)
    try:
        raw = fsutil.read_bounded(fd, max_bytes)
    except OSError as exc:
        raise HostError(
            f"Failed to read {display(listed.name)}: {exc.strerror}", code="host.read"
        ) from exc
    except ValueError:
        raise InspectionError(
            f"Refusing {display(listed.name)}: it grew past the {what} cap",
            code="reject.size",
            subject=listed.name,
        ) from None
    finally:
        os.close(fd)
    if len(raw) != listed.size:
        raise InspectionError(
            f"Refusing {display(listed.name)}: its size changed while reading",
            code="reject.size",
            subject=listed.name,
        )
    return raw


def _verify_signatures(
    dir_fd: int,
    signature_files: Sequence[ListedFile],
    raw_manifest: bytes,
    *,
    keyring: Path,
    limits: Limits,
    verifier: SignatureVerifier,
    now: datetime.datetime,
) -> tuple[ValidSignature, ...]:
    if not signature_files:
        raise SignatureError(
            "Refusing snapshot: no signature file (SHA256SUMS.gpg or SHA256SUMS.sha256.asc)",
            code="reject.signature",
        )
    valid: list[ValidSignature] = []
    for sig_file in signature_files:
        raw_signature = _read_control(dir_fd, sig_file, limits.max_signature_bytes, "signature")
        if not raw_signature:
            raise SignatureError(
                f"Refusing {sig_file.name}: it is empty",
                code="reject.signature",
                subject=sig_file.name,
            )
        try:
            found = verifier.verify(raw_signature, raw_manifest, keyring, now=now)
        except SignatureError as exc:
            exc.subject = display(sig_file.name)
            raise exc from None
        if not found:
            raise SignatureError(
                f"Refusing {sig_file.name}: it holds no valid signature",
                code="reject.signature",
                subject=sig_file.name,
            )
        for sig in found:
            if sig.hash_algo is not None and sig.hash_algo in WEAK_HASH_ALGOS:
                raise SignatureError(
                    f"Refusing {sig_file.name}: signature by {sig.fingerprint} uses weak hash"
                    f" algorithm {sig.hash_algo}",
                    code="reject.signature",
                    subject=sig_file.name,
                )
        logger.debug("%s: %d valid signature(s)", sig_file.name, len(found))
        valid.extend(found)
    return tuple(valid)


def _apply_signer_policy(
    signatures: Sequence[ValidSignature], policy: Policy
) -> tuple[ValidSignature, ...]:
    trusted = policy.trusted_fingerprints
    counted = tuple(s for s in signatures if not trusted or s.fingerprint.upper() in trusted)
    distinct = {s.fingerprint.upper() for s in counted}
    if not distinct:
        raise SignatureError(
            "Refusing SHA256SUMS: no signature by a trusted primary key (signed by "
            + ", ".join(sorted({s.fingerprint for s in signatures}))
            + ")",
            code="reject.signer",
        )
    if len(distinct) < policy.threshold:
        raise SignatureError(
            f"Refusing SHA256SUMS: signed by {len(distinct)} trusted key(s), the threshold is"
            f" {policy.threshold}",
            code="reject.threshold",
        )
    if policy.not_before is not None:
        for s in counted:
            if s.created < policy.not_before:
                raise FreshnessError(
                    f"Refusing SHA256SUMS: signature by {s.fingerprint} was made"
                    f" {s.created.isoformat()}, before {policy.not_before.isoformat()}",
                    code="reject.replay",
                )
    return counted


def _check_fresh(parsed: manifest_format.Manifest, policy: Policy, now: datetime.datetime) -> None:
    if parsed.best_before is None:
        if policy.require_fresh:
            raise FreshnessError(
                "Refusing SHA256SUMS: it carries no BEST-BEFORE marker", code="reject.expired"
            )
        if policy.fresh_ratchet:
            raise FreshnessError(
                "Refusing SHA256SUMS: it carries no BEST-BEFORE marker, and an earlier accepted"
                " one did (freshness ratchet)",
                code="reject.expired",
                hint="a replayed old release, or the publisher dropped the marker; if that was"
                " intended: airlock state reset --field fresh_required --yes",
            )
        return
    # As systemd (post-259): the date is a calendar day starting at 00:00 (here UTC); once that
    # instant is in the past the manifest is stale.
    deadline = datetime.datetime.combine(parsed.best_before, datetime.time(0), datetime.UTC)
    if deadline < now:
        raise FreshnessError(
            f"Refusing SHA256SUMS: BEST-BEFORE {parsed.best_before.isoformat()} is in the past",
            code="reject.expired",
        )


def _check_payload(digest: hashing.Digest, transfer: Transfer | None) -> None:
    """Refuse a url-file payload that sysupdate would decompress, or fail on (too short)."""
    if transfer is None or transfer.source.type != ResourceType.URL_FILE:
        return
    problem = None
    if digest.size < MIN_URL_FILE_BYTES:
        problem = f"{digest.size} bytes, shorter than sysupdate's minimum of {MIN_URL_FILE_BYTES}"
    for magic, kind in COMPRESSION_MAGIC:
        if digest.head.startswith(magic):
            problem = f"it starts with {kind} magic, so sysupdate would install other bytes"
    if problem is not None:
        raise InspectionError(
            f"Refusing {display(digest.name)}: {problem}",
            code="reject.payload",
            subject=digest.name,
        )


_ROLLBACK_HINTS = {
    "floor": "the floor is the newest version this host has verified; a release below it is never"
    " installed, whoever signed it",
    "installed version": "the update server offers nothing newer than what is installed; nothing"
    " was changed (if you installed a newer build yourself, there is nothing to do)",
}


def _check_rollback(release_version: str, policy: Policy) -> None:
    for label, bound in (("floor", policy.floor), ("installed version", policy.installed)):
        if bound is not None and version.compare(release_version, bound) < 0:
            raise FreshnessError(
                f"Refusing release {display(release_version)}: it is older than the {label}"
                f" {display(bound)}, and a rollback is never installed",
                code="reject.rollback",
                hint=_ROLLBACK_HINTS[label],
            )


def _list(dir_fd: int, limits: Limits) -> Listing:
    """Step 1: ``syncfs`` the snapshot (threat A9), then walk it without following anything."""
    try:
        fsutil.syncfs(dir_fd)
    except OSError as exc:
        raise HostError(
            f"Failed to sync the snapshot's filesystem: {exc.strerror}", code="host.syncfs"
        ) from exc
    try:
        return walk.walk(dir_fd, limits=limits)
    except OSError as exc:
        raise HostError(
            f"Failed to read the snapshot directory: {exc.strerror}", code="host.read"
        ) from exc


def _check_appliers_read_a_signature(
    classified: candidate.Classified, appliers: Sequence[dialect.Dialect]
) -> None:
    """Refuse a snapshot in which an applying sysupdate would find no signature file it reads.

    It would fail before changing anything (the manifest is loaded first), but on every run: the
    release could never be installed, so the host refuses it here and says why.
    """
    present = {f.name for f in classified.signatures}
    for applier in appliers:
        if applier.reads_signature(present) is not None:
            continue
        tried = applier.signature_names if applier.file_fallback else applier.signature_names[:1]
        raise SignatureError(
            f"Refusing snapshot: no {' or '.join(tried)} (what systemd-sysupdate"
            f" {applier.major}, which applies it, reads from a file:// source)",
            code="reject.signature",
        )


def _authenticate(
    dir_fd: int,
    classified: candidate.Classified,
    *,
    keyring: Path,
    policy: Policy,
    limits: Limits,
    verifier: SignatureVerifier,
    now: datetime.datetime,
) -> tuple[bytes, tuple[ValidSignature, ...], tuple[ValidSignature, ...]]:
    """Steps 2 and 3: the manifest bytes, read once, the counted signatures and the others.

    Only counted signatures (by trusted primary keys) are returned as such: a valid signature by
    another key in the keyring must not raise the replay floor the run records.
    """
    if classified.manifest is None:
        raise ManifestError("Refusing snapshot: no SHA256SUMS", code="reject.manifest")
    raw_manifest = _read_control(dir_fd, classified.manifest, limits.max_manifest_bytes, "manifest")
    _check_appliers_read_a_signature(classified, policy.appliers)
    signatures = _verify_signatures(
        dir_fd,
        classified.signatures,
        raw_manifest,
        keyring=keyring,
        limits=limits,
        verifier=verifier,
        now=now,
    )
    counted = _apply_signer_policy(signatures, policy)
    return raw_manifest, counted, tuple(s for s in signatures if s not in counted)


def _not_newer_but_incomplete(release: candidate.CandidateRelease, policy: Policy) -> list[Dropped]:
    """Step 5, a release missing files: acceptable only if it is not newer than the installed one.

    Only the installed version makes a release "nothing to install": a floor is a lower bound,
    not something installed, so a release at the floor but newer than the installed version must
    be complete (else the VM could hide a signed update by withholding a file).  Returns its files
    as dropped (nothing to install, nothing to hash).
    """
    installed = policy.installed
    if installed is None or version.compare(release.version, installed) > 0:
        raise InspectionError(
            f"Refusing snapshot: release {display(release.version)} lacks the file of"
            f" transfer(s) {', '.join(display(t) for t in release.missing)}",
            code="reject.missing",
        )
    return [
        Dropped(
            name=f.file.name,
            name_display=display(f.file.name),
            reason="release not newer than installed",
        )
        for f in release.files
    ]


def _hash_and_compare(
    dir_fd: int,
    release: candidate.CandidateRelease,
    transfers: Sequence[Transfer],
    limits: Limits,
) -> tuple[tuple[VerifiedFile, ...], int]:
    """Step 6: hash each release file from an fd opened in the snapshot; compare; check payloads."""
    hashed = hashing.hash_files(dir_fd, [f.file for f in release.files], limits=limits)
    files: list[VerifiedFile] = []
    by_name = {t.name: t for t in transfers}
    for cand, digest in zip(release.files, hashed.digests, strict=True):
        if digest.sha256 != cand.claimed_sha256:
            raise DigestError(
                f"Refusing {display(cand.file.name)}: SHA-256 differs from SHA256SUMS",
                code="reject.digest",
                subject=cand.file.name,
            )
        _check_payload(digest, by_name.get(cand.transfer))
        files.append(
            VerifiedFile(
                name=cand.file.name, size=digest.size, sha256=digest.sha256, transfer=cand.transfer
            )
        )
    return tuple(files), hashed.bytes_hashed


def judge(
    dir_fd: int,
    *,
    transfers: Sequence[Transfer],
    keyring: Path,
    policy: Policy,
    limits: Limits,
    verifier: SignatureVerifier,
    now: datetime.datetime,
) -> VerifiedRelease:
    """Judge the frozen snapshot open at ``dir_fd``.

    Args:
        dir_fd: the snapshot directory, opened with ``fsutil.DIR_FLAGS``.
        transfers: the host's transfer definitions (trusted).
        keyring: the pinned OpenPGP keyring.
        policy: signer and freshness rules.
        limits: caps on everything read.
        verifier: the OpenPGP verification backend.
        now: the host clock (timezone-aware), the one reference time of this run.

    Returns:
        The verified release.

    Raises:
        InspectionError: the tree breaks a structural rule (``reject.name``, ``reject.type``,
            ``reject.links``, ``reject.mode``, ``reject.size``, ``reject.count``,
            ``reject.unlisted``, ``reject.ambiguous``, ``reject.mixmatch``, ``reject.missing``).
        ManifestError: ``reject.manifest``.
        SignatureError: ``reject.signature``, ``reject.signer``, ``reject.threshold``.
        FreshnessError: ``reject.rollback``, ``reject.expired``, ``reject.replay``.
        DigestError: ``reject.digest``.
        InspectionError: ``reject.room`` for a payload larger than its target can take,
            ``reject.label`` for a partition label GPT cannot hold.
        InspectionError: ``reject.payload`` for a url-file payload that starts with compression
            magic or is shorter than 6 bytes (sysupdate would decompress it or fail on it).
        HostError: ``host.syncfs`` when the snapshot's filesystem cannot be synced, ``host.read``
            when reading it fails (an I/O error, not the VM's doing).
    """
    if now.tzinfo is None:
        raise RuntimeError("judge() needs a timezone-aware reference time")
    classified = candidate.classify(_list(dir_fd, limits), transfers)
    raw_manifest, counted, uncounted = _authenticate(
        dir_fd,
        classified,
        keyring=keyring,
        policy=policy,
        limits=limits,
        verifier=verifier,
        now=now,
    )
    parsed = manifest_format.parse(
        raw_manifest, max_bytes=limits.max_manifest_bytes, max_lines=limits.max_manifest_lines
    )
    _check_fresh(parsed, policy, now)
    release = candidate.assemble(classified, parsed, transfers)
    _check_rollback(release.version, policy)
    dropped = [
        Dropped(name=d.name, name_display=d.name_display, reason=d.reason) for d in release.dropped
    ]
    if release.missing:
        files: tuple[VerifiedFile, ...] = ()
        bytes_hashed = 0
        dropped += _not_newer_but_incomplete(release, policy)
        release_version, newer = None, False
    else:
        bounds.check_room(release, policy)  # before step 6: nothing hashed (ADR 0160)
        bounds.check_labels(release, transfers)
        files, bytes_hashed = _hash_and_compare(dir_fd, release, transfers, limits)
        release_version = release.version
        newer = policy.installed is None or version.compare(release.version, policy.installed) > 0
    return VerifiedRelease(
        version=release_version,
        newer=newer,
        files=files,
        dropped=tuple(dropped),
        signers=counted,
        uncounted=uncounted,
        best_before=parsed.best_before,
        bytes_hashed=bytes_hashed,
        manifest_sha256=hashlib.sha256(raw_manifest).hexdigest(),
    )
