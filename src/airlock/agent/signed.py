# SPDX-License-Identifier: MIT
"""The signed manifest: fetch ``SHA256SUMS`` and both signature names, check, publish (in the VM).

Trusts: the keyring in the share's ``etc/`` (the host's).  Refuses: a manifest without any
signature (a 404 for one of the two names is fine, both missing is not), a signature that does
not verify (checked before any payload is fetched), a manifest ``formats.manifest`` refuses.  The
check here only saves a pointless download; the host checks the same bytes again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from airlock.agent.fetch import Downloader, remove, write_atomic
from airlock.agent.options import Options
from airlock.backends import openpgp
from airlock.errors import FetchError, ManifestError, SignatureError
from airlock.events import Reporter, Step, StepFinished, StepStarted
from airlock.formats import manifest
from airlock.text import display

logger = logging.getLogger(__name__)

MANIFEST = "SHA256SUMS"
SIGNATURES = ("SHA256SUMS.sha256.asc", "SHA256SUMS.gpg")


@dataclass(frozen=True, slots=True, kw_only=True)
class Release:
    """The manifest and the signatures fetched from the server, signatures verified."""

    raw_manifest: bytes
    signatures: tuple[tuple[str, bytes], ...]
    manifest: manifest.Manifest


def _fetch_set(downloader: Downloader) -> tuple[bytes, list[tuple[str, bytes]]]:
    budget = downloader.budget
    raw = downloader.get_small(MANIFEST, limit=budget.max_manifest_bytes)
    if raw is None:
        raise FetchError(
            f"Failed to fetch {MANIFEST}: not found on the server", code="fetch.missing"
        )
    found: list[tuple[str, bytes]] = []
    for name in SIGNATURES:
        sig = downloader.get_small(name, limit=budget.max_signature_bytes)
        if sig is None:
            logger.info("%s not found on the server", name)
            continue
        found.append((name, sig))
    if not found:
        raise FetchError(
            f"Failed to fetch a signature of {MANIFEST}: neither {' nor '.join(SIGNATURES)} exists",
            code="fetch.signature",
        )
    return raw, found


def _check(
    verifier: openpgp.SignatureVerifier, raw: bytes, found: list[tuple[str, bytes]], keyring: Path
) -> None:
    for name, sig in found:
        try:
            verifier.verify(sig, raw, keyring)
        except SignatureError as exc:
            raise FetchError(
                f"Refusing {name}: {exc.message} (no payload fetched)", code="fetch.signature"
            ) from exc


def fetch_release(
    downloader: Downloader, *, keyring: Path, options: Options, reporter: Reporter
) -> Release:
    """Fetch ``SHA256SUMS`` and both signature names, verify, parse; raise ``FetchError``.

    If a signature does not verify and ``SHA256SUMS`` has changed meanwhile (a release was
    published between the requests), the set is fetched and checked once more.
    """
    started = time.monotonic()
    reporter.emit(StepStarted(step=Step.MANIFEST, detail=display(downloader.source.url)))
    verifier = openpgp.verifier(options.verifier)
    raw, found = _fetch_set(downloader)
    try:
        _check(verifier, raw, found, keyring)
    except FetchError:
        again = downloader.get_small(MANIFEST, limit=downloader.budget.max_manifest_bytes)
        if again is None or again == raw:
            raise
        logger.info("%s changed while it was fetched; fetching it again", MANIFEST)
        raw, found = _fetch_set(downloader)
        _check(verifier, raw, found, keyring)
    try:
        parsed = manifest.parse(
            raw,
            max_bytes=options.limits.max_manifest_bytes,
            max_lines=options.limits.max_manifest_lines,
        )
    except ManifestError as exc:
        raise FetchError(f"Refusing {MANIFEST}: {exc.message}", code="fetch.manifest") from exc
    reporter.emit(
        StepFinished(
            step=Step.MANIFEST,
            duration_s=time.monotonic() - started,
            detail=", ".join(n for n, _ in found) + " valid",
        )
    )
    return Release(raw_manifest=raw, signatures=tuple(found), manifest=parsed)


@contextlib.contextmanager
def updates_dir(path: Path) -> Iterator[int]:
    """A directory fd of the share's ``updates/`` (no symlink followed at the last step)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise FetchError(
            f"Failed to open the share's updates/: {exc.strerror}", code="fetch.share"
        ) from exc
    try:
        yield fd
    finally:
        os.close(fd)


def publish_release(dir_fd: int, release: Release) -> None:
    """Write the manifest and the signatures (atomically); drop a signature name not served."""
    fetched = dict(release.signatures)
    for name in SIGNATURES:
        if name not in fetched:
            remove(dir_fd, name)
    write_atomic(dir_fd, MANIFEST, release.raw_manifest)
    for name, data in release.signatures:
        write_atomic(dir_fd, name, data)
    os.fsync(dir_fd)
