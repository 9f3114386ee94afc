# SPDX-License-Identifier: MIT
"""``airlock publish``: turn one version's images into a signed, sysupdate-compatible release.

Trusts: the maintainer's artefacts, transfer definitions and GnuPG home.  Checks, before anything in
the release directory changes: every artefact name is a safe name matching exactly one source
pattern of exactly one enabled transfer, every transfer gets exactly one artefact, all carry the
same valid version, and that version is newer than every version present (unless ``force``);
url-file payloads are at least 6 bytes and do not start with compression magic (systemd 257 fails on
shorter ones and decompresses by magic, which Spectrum avoids on purpose, design.md#no-compression);
each signer's key exists.  Then it copies the artefacts to temporary names (hashing the bytes
written), regenerates ``SHA256SUMS`` over every payload the patterns match (sorted, ``hash *name``,
optional ``BEST-BEFORE-YYYY-MM-DD`` pseudo-entry), signs it once per signer, checks the signatures
with the verifier, and commits everything through ``commit.Transaction``: on any error the directory
is left exactly as it was.  The same detached signature packets are written as ``SHA256SUMS.gpg``
(binary, read by systemd 257) and ``SHA256SUMS.sha256.asc`` (armoured, read first by 258+).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from airlock import fsutil
from airlock.backends import openpgp
from airlock.backends.openpgp import gpg
from airlock.errors import AirlockError, BusyError, ConfigError, UsageError
from airlock.formats import blockindex, definitions, dialect, manifest, names, pattern, version
from airlock.release import armor, commit, indexes, render
from airlock.text import display

logger = logging.getLogger(__name__)

MANIFEST = "SHA256SUMS"
SIGNATURE_BINARY = "SHA256SUMS.gpg"
SIGNATURE_ARMORED = "SHA256SUMS.sha256.asc"
RESERVED = frozenset({MANIFEST, SIGNATURE_BINARY, SIGNATURE_ARMORED})
MIN_PAYLOAD_BYTES = max(d.min_url_file_bytes for d in dialect.TABLE)
# The magic of every compression any supported systemd-sysupdate undoes (formats.dialect).
COMPRESSION_MAGIC = dict(dialect.ALL_COMPRESSIONS)
_SPECIFIERS_OS_RELEASE = "ID=airlock-publish\nIMAGE_VERSION=0\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class Artifact:
    """One file to publish: its name in the release directory and where it is now."""

    name: str
    source: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class Published:
    """The result of a publish."""

    release_dir: Path
    version: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    versions: tuple[str, ...]  # present afterwards, newest first
    manifest: bytes
    manifest_sha256: str
    signers: tuple[str, ...]
    best_before: dt.date | None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Payload:
    name: str
    version: str
    transfer: str
    url_file: bool


def default_transfers() -> tuple[definitions.Transfer, ...]:
    """Spectrum's host transfers, from the package templates (the source patterns matter)."""
    return load_transfers(render.default_templates() / render.HOST_DIR)


# Spectrum's VM transfer templates carry ``Path=@UPDATE_URL@``, which the VM replaces with the
# update URL (design.md#vm-download).  A publisher needs only their patterns, so any syntactically
# valid URL stands in; it never reaches a file or a network.
UPDATE_URL_PLACEHOLDER = "@UPDATE_URL@"
_STAND_IN_URL = "https://update-url.invalid"


def load_transfers(directory: Path) -> tuple[definitions.Transfer, ...]:
    """The transfers in ``directory`` (``--definitions`` semantics), host or VM files alike."""
    specs = definitions.Specifiers.from_os_release(_SPECIFIERS_OS_RELEASE)
    loaded = definitions.load_dir(
        directory, specifiers=specs, substitute={UPDATE_URL_PLACEHOLDER: _STAND_IN_URL}
    )
    transfers = tuple(t for t in loaded if t.enabled)
    if not transfers:
        raise ConfigError(
            f"No enabled transfers in {display(os.fspath(directory))}", code="config.definition"
        )
    return transfers


def spectrum_artifacts(
    *, ver: str, roothash: str, root: Path, verity: Path, uki: Path
) -> tuple[Artifact, ...]:
    """Spectrum's names (design.md#artefact-names): the root hash halves become the partition
    UUIDs."""
    render.check_version(ver)
    if len(roothash) != 64 or any(c not in "0123456789abcdef" for c in roothash):
        raise UsageError(
            f"Refusing root hash {display(roothash)}: need 64 lowercase hex digits",
            code="usage.roothash",
        )
    return (
        Artifact(name=f"Spectrum_{ver}_{roothash[:32]}.root", source=root),
        Artifact(name=f"Spectrum_{ver}_{roothash[32:]}.verity", source=verity),
        Artifact(name=f"Spectrum_{ver}.efi", source=uki),
    )


def classify(name: str, transfers: Sequence[definitions.Transfer]) -> _Payload | None:
    """Which transfer's source pattern ``name`` matches, with its version; None if none.

    Raises:
        UsageError: it matches several patterns, or a pattern without a version.
    """
    hits: list[tuple[definitions.Transfer, pattern.Fields]] = []
    for transfer in transfers:
        for pat in transfer.source.match_patterns:
            fields = pat.match(name, pattern.Mode.EXACT)
            if fields is not None:
                hits.append((transfer, fields))
    if not hits:
        return None
    if len(hits) > 1:
        raise UsageError(
            f"Refusing {display(name)}: it matches the source patterns of "
            f"{', '.join(sorted(h[0].name for h in hits))}",
            code="usage.artifact",
        )
    transfer, fields = hits[0]
    if fields.version is None or not version.is_valid(fields.version):
        raise UsageError(
            f"Refusing {display(name)}: no valid version in it for transfer "
            f"{display(transfer.name)}",
            code="usage.artifact",
        )
    url_file = transfer.source.type == definitions.ResourceType.URL_FILE
    return _Payload(name=name, version=fields.version, transfer=transfer.name, url_file=url_file)


def _check_artifacts(
    artifacts: Sequence[Artifact], transfers: Sequence[definitions.Transfer]
) -> tuple[str, list[_Payload]]:
    if not artifacts:
        raise UsageError("Nothing to publish: no artefacts given", code="usage.artifact")
    payloads: list[_Payload] = []
    for art in artifacts:
        if (
            not names.is_safe(art.name)
            or art.name in RESERVED
            or art.name.startswith(manifest.BEST_BEFORE_PREFIX)
        ):
            raise UsageError(
                f"Refusing artefact name {display(art.name)}: not a safe file name",
                code="usage.artifact",
            )
        found = classify(art.name, transfers)
        if found is None:
            raise UsageError(
                f"Refusing {display(art.name)}: it matches no source pattern "
                "of the transfer definitions",
                code="usage.artifact",
            )
        payloads.append(found)
    versions = sorted({p.version for p in payloads})
    if len(versions) != 1:
        raise UsageError(
            f"Refusing to mix versions in one publish: {display(', '.join(versions))}",
            code="usage.artifact",
        )
    per_transfer = {t.name: [p.name for p in payloads if p.transfer == t.name] for t in transfers}
    for tname, got in per_transfer.items():
        if len(got) != 1:
            raise UsageError(
                f"Refusing an incomplete release: transfer {display(tname)} has {len(got)} "
                "artefacts, needs exactly 1 (sysupdate offers a version only when every "
                "transfer has it)",
                code="usage.artifact",
            )
    return versions[0], payloads


def _open_source(art: Artifact, payload: _Payload) -> int:
    try:
        fd = os.open(art.source, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(
            f"Failed to read artefact {display(os.fspath(art.source))}: " f"{exc.strerror}",
            code="usage.artifact",
        ) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(
                f"Artefact {display(os.fspath(art.source))} is not a regular file",
                code="usage.artifact",
            )
        head = os.pread(fd, 8, 0)
        if payload.url_file and st.st_size < MIN_PAYLOAD_BYTES:
            raise UsageError(
                f"Refusing {display(art.name)}: url-file payloads need at least "
                f"{MIN_PAYLOAD_BYTES} bytes (systemd 257 fails on shorter ones)",
                code="usage.artifact",
            )
        for magic, kind in COMPRESSION_MAGIC.items():
            if payload.url_file and head.startswith(magic):
                raise UsageError(
                    f"Refusing {display(art.name)}: it starts with {kind} magic, and sysupdate "
                    "would decompress it (publish images uncompressed)",
                    code="usage.artifact",
                )
    except OSError as exc:
        os.close(fd)
        raise UsageError(
            f"Failed to read artefact {display(os.fspath(art.source))}: " f"{exc.strerror}",
            code="usage.artifact",
        ) from exc
    except BaseException:
        os.close(fd)
        raise
    return fd


def _existing(dir_fd: int, transfers: Sequence[definitions.Transfer]) -> dict[str, _Payload]:
    found: dict[str, _Payload] = {}
    for name in sorted(os.listdir(dir_fd)):
        if name.startswith(".") or name in RESERVED:
            continue
        base = name.removesuffix(blockindex.SUFFIX)
        if base != name and classify(base, transfers) is not None:
            continue  # a payload's block index
        payload = classify(name, transfers)
        if payload is None:
            logger.debug("not a payload, left alone: %s", display(name))
            continue
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(
                f"Refusing release directory: {display(name)} is not a regular " "file",
                code="config.release-dir",
            )
        found[name] = payload
    return found


def resolve_signers(gnupghome: Path, signers: Sequence[str]) -> tuple[str, ...]:
    """Primary fingerprints of the requested secret keys (the only key when none is named)."""
    if not gnupghome.is_dir():
        raise ConfigError(
            f"GnuPG home {display(os.fspath(gnupghome))} does not exist", code="config.signer"
        )
    if not signers:
        every = gpg.fingerprints(gnupghome)
        if len(every) != 1:
            raise ConfigError(
                f"{len(every)} secret keys in the GnuPG home; name one with " "--signer",
                code="config.signer",
            )
        return every
    out: list[str] = []
    for wanted in signers:
        try:
            got = gpg.fingerprints(gnupghome, wanted)
        except AirlockError:
            got = ()
        if len(got) != 1:
            raise ConfigError(
                f"Signer {display(wanted)}: {len(got)} matching secret keys in "
                f"{display(os.fspath(gnupghome))}",
                code="config.signer",
            )
        if got[0] not in out:
            out.append(got[0])
    return tuple(out)


def sign_manifest(data: bytes, *, gnupghome: Path, signers: Sequence[str]) -> tuple[bytes, bytes]:
    """(binary, armoured) detached signatures by every signer, checked by the verifier."""
    binary = b"".join(gpg.sign(data, gnupghome=gnupghome, signer=f, armor=False) for f in signers)
    with tempfile.TemporaryDirectory(prefix="airlock-publish-") as tmp:
        keyring = Path(tmp, "signers.gpg")
        keyring.write_bytes(gpg.export_public(gnupghome, list(signers)))
        valid = openpgp.verifier().verify(binary, data, keyring)
    if sorted({v.fingerprint for v in valid}) != sorted(signers):
        raise ConfigError(
            "The fresh signatures do not verify as the requested signers", code="config.signer"
        )
    return binary, armor.armor_signature(binary)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    keep_names: tuple[str, ...]
    drop_names: tuple[str, ...]
    versions: tuple[str, ...]


def _plan(
    existing: dict[str, _Payload], new: list[_Payload], ver: str, *, force: bool, keep: int | None
) -> _Plan:
    old_versions = sorted({p.version for p in existing.values()}, key=version.key, reverse=True)
    if old_versions and version.compare(ver, old_versions[0]) <= 0 and not force:
        raise UsageError(
            f"Refusing to publish {display(ver)}: the release directory already "
            f"has {display(old_versions[0])}",
            code="usage.version",
            hint="use --force to publish an older or equal version",
        )
    new_names = {p.name for p in new}
    survivors = {
        n: p
        for n, p in existing.items()
        if version.compare(p.version, ver) != 0 and n not in new_names
    }
    replaced = [n for n, p in existing.items() if n not in survivors and n not in new_names]
    all_versions = sorted(
        {ver, *(p.version for p in survivors.values())}, key=version.key, reverse=True
    )
    kept_versions = all_versions if keep is None else all_versions[:keep]
    if ver not in kept_versions:
        raise UsageError(
            f"Refusing to publish {display(ver)}: --keep {keep} would drop it", code="usage.keep"
        )
    kept = {v for v in kept_versions}
    dropped = sorted([*replaced, *(n for n, p in survivors.items() if p.version not in kept)])
    keep_names = sorted(n for n, p in survivors.items() if p.version in kept)
    return _Plan(
        keep_names=tuple(keep_names), drop_names=tuple(dropped), versions=tuple(kept_versions)
    )


def publish(
    release_dir: Path,
    artifacts: Sequence[Artifact],
    *,
    gnupghome: Path,
    signers: Sequence[str] = (),
    transfers: Sequence[definitions.Transfer] | None = None,
    valid_for_days: int | None = None,
    keep: int | None = None,
    force: bool = False,
    today: dt.date | None = None,
) -> Published:
    """Publish one version into ``release_dir`` (see the module docstring).

    Raises:
        UsageError: bad artefacts, versions or options.
        ConfigError: bad definitions, release directory or signer.
        BusyError: another publish holds the directory.
    """
    if keep is not None and keep < 1:
        raise UsageError("--keep needs a number ≥ 1", code="usage.keep")
    if valid_for_days is not None and valid_for_days < 1:
        raise UsageError("--valid-for needs a number of days ≥ 1", code="usage.valid-for")
    transfers = tuple(transfers) if transfers is not None else default_transfers()
    ver, payloads = _check_artifacts(artifacts, transfers)
    fprs = resolve_signers(gnupghome, signers)
    best_before = None
    if valid_for_days is not None:
        best_before = (today or dt.datetime.now(dt.UTC).date()) + dt.timedelta(valid_for_days)
    created = False
    try:
        if not os.path.lexists(release_dir):
            release_dir.mkdir(mode=0o755)  # one level only; removed again if publishing fails
            created = True
        dir_fd = os.open(release_dir, fsutil.DIR_FLAGS)
    except OSError as exc:
        raise ConfigError(
            f"Failed to open release directory {display(os.fspath(release_dir))}:"
            f" {exc.strerror}",
            code="config.release-dir",
        ) from exc
    sources: list[int] = []
    ok = False
    try:
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise BusyError(
                "Another publish holds the release directory", code="busy.publish"
            ) from exc
        for art, payload in zip(artifacts, payloads, strict=True):
            sources.append(_open_source(art, payload))  # appended one by one: closed on error
        existing = _existing(dir_fd, transfers)
        plan = _plan(existing, payloads, ver, force=force, keep=keep)
        result = _write(
            release_dir,
            dir_fd,
            transfers,
            artifacts,
            sources,
            plan,
            ver=ver,
            fprs=fprs,
            gnupghome=gnupghome,
            best_before=best_before,
        )
        ok = True
        return result
    except OSError as exc:
        raise ConfigError(
            f"Failed to publish into {display(os.fspath(release_dir))}: " f"{exc.strerror}",
            code="config.release-dir",
        ) from exc
    finally:
        for fd in sources:
            os.close(fd)
        os.close(dir_fd)
        if created and not ok:
            with contextlib.suppress(OSError):
                release_dir.rmdir()


def _write(
    release_dir: Path,
    dir_fd: int,
    transfers: Sequence[definitions.Transfer],
    artifacts: Sequence[Artifact],
    sources: list[int],
    plan: _Plan,
    *,
    ver: str,
    fprs: tuple[str, ...],
    gnupghome: Path,
    best_before: dt.date | None,
) -> Published:
    txn = commit.Transaction(dir_fd=dir_fd)
    try:
        digests = {}
        for a, fd in zip(artifacts, sources, strict=True):
            builder = blockindex.Builder()
            digests[a.name] = txn.stage_copy(a.name, fd, observe=builder.update)[0]
            txn.stage_bytes(blockindex.index_name(a.name), builder.finish())
        for n in plan.keep_names:  # hashed again: the manifest covers what is there now
            digests[n], index = indexes.hash_existing(dir_fd, n)
            if indexes.read_index(dir_fd, n, len(index)) != index:
                txn.stage_bytes(blockindex.index_name(n), index)
        entries = [manifest.Entry(name=n, sha256=d, binary=True) for n, d in digests.items()]
        raw = manifest.format(entries, best_before=best_before)
        manifest.parse(raw)  # what we publish must pass our own reader
        sig_binary, sig_armored = sign_manifest(raw, gnupghome=gnupghome, signers=fprs)
        txn.stage_bytes(MANIFEST, raw)
        txn.stage_bytes(SIGNATURE_BINARY, sig_binary)
        txn.stage_bytes(SIGNATURE_ARMORED, sig_armored)
        orphans = indexes.orphans(
            dir_fd, set(digests), lambda n: classify(n, transfers) is not None
        )
        for name in [*plan.drop_names, *orphans]:
            txn.remove(name)
        txn.commit()
    except BaseException:
        txn.abort()
        raise
    for stale in commit.stale_entries(dir_fd):
        logger.debug("removing a leftover of an interrupted publish: %s", display(stale))
        os.unlink(stale, dir_fd=dir_fd)
    return Published(
        release_dir=release_dir,
        version=ver,
        added=tuple(sorted(a.name for a in artifacts)),
        removed=plan.drop_names,
        versions=plan.versions,
        manifest=raw,
        manifest_sha256=hashlib.sha256(raw).hexdigest(),
        signers=fprs,
        best_before=best_before,
    )
