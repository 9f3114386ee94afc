# SPDX-License-Identifier: MIT
"""Target ``tree``: the judge over a staging tree built from the fuzz input.

Each input becomes a directory (on tmpfs when ``/dev/shm`` is writable) of up to nine entries:
regular files (empty, random, sparse past the size cap, set-user-ID, group- or world-writable),
directory chains, symbolic links, FIFOs, hard links and dot-temporaries, named from Spectrum's
payload and control names, the hostile corpus's bad names, or raw bytes.  ``SHA256SUMS`` is raw
bytes or a manifest generated over the tree (so inputs reach assembly and hashing).  Then the
host's checks run as a run does: ``walk.walk``, ``candidate.droppable`` and ``verify.judge`` with
Spectrum's three transfers and a random policy.

OpenPGP is the one component replaced (``FakeVerifier``: a signature file starting with ``GOOD``
is a valid signature by the trusted key): it is fuzzed on its own terms elsewhere, and a tool
process per input would cost a thousand times the walk.

Only ``RejectedError`` subclasses with ``reject.*`` codes may escape.  An accepted listing holds
only safe names of single-link regular files without set-ID bits, as ``lstat`` sees them again;
an accepted release's files hash to what it says.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from airlock.backends.openpgp import ValidSignature
from airlock.errors import InspectionError, RejectedError, SignatureError
from airlock.formats import definitions, names
from airlock.fsutil import DIR_FLAGS
from airlock.limits import Limits
from airlock.trusted import verify
from airlock.trusted.policy import Policy
from airlock.trusted.release import VerifiedRelease
from airlock.untrusted import candidate, walk
from fuzz.common import Reader, check, refusals
from tests.support import corpus, staging

FPR = "A" * 40
NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
LIMITS = replace(
    Limits(),
    max_entries=12,
    max_file_bytes=1 << 16,
    max_total_bytes=1 << 17,
    max_manifest_bytes=4096,
    max_manifest_lines=32,
)
_CONTROL = ("SHA256SUMS", "SHA256SUMS.gpg", "SHA256SUMS.sha256.asc")
_NAMES: tuple[bytes, ...] = (
    *(n.encode() for v in ("1", "2", "3", "2.0", "02") for n in staging.payload_names(v).values()),
    *(n.encode() for n in _CONTROL),
    b"SHA256SUMS.asc",
    b".sysupdate.partial.Spectrum_3.efi",
    b".tmp",
    b"Spectrum_2.efi.old",
    b"README",
    b"S" * 255,
    *(raw for _, raw in corpus._BAD_NAMES),
)
_LINK_TARGETS = (b"/etc/shadow", b"..", b"SHA256SUMS", b"Spectrum_2.efi", b"/proc/self/fd/0")
_SPARSE = 1 << 36


class FakeVerifier:
    """A signature starting with ``GOOD`` is one valid signature by ``FPR``; anything else fails."""

    def verify(
        self, signature: bytes, data: bytes, keyring: Path, *, now: dt.datetime | None = None
    ) -> tuple[ValidSignature, ...]:
        """Judge ``signature`` by its first bytes (see the class)."""
        if not signature.startswith(b"GOOD"):
            raise SignatureError("Refusing signature: not a good one", code="reject.signature")
        when = (now or NOW) - dt.timedelta(hours=1)
        return (ValidSignature(fingerprint=FPR, created=when, hash_algo=8),)


#: Largest input libFuzzer generates: nine entries with their names and contents.
MAX_LEN = 512


def _transfers() -> tuple[definitions.Transfer, ...]:
    with tempfile.TemporaryDirectory(prefix="airlock-fuzz-defs-") as tmp:
        defdir = staging.write_definitions(Path(tmp))
        spec = definitions.Specifiers.from_os_release("ID=spectrum\nIMAGE_VERSION=1\n")
        return definitions.load_dir(defdir, specifiers=spec)


TRANSFERS = _transfers()
_WORK: list[Path] = []


def _workdir() -> Path:
    """One directory per process; ``fuzz.run`` points ``AIRLOCK_FUZZ_TMP`` at one it removes."""
    if not _WORK:
        base = os.environ.get("AIRLOCK_FUZZ_TMP")
        if base is None:
            shm = "/dev/shm"  # noqa: S108  # tmpfs: trees cost no disk I/O
            base = tempfile.mkdtemp(
                prefix="airlock-fuzz-", dir=shm if os.access(shm, os.W_OK) else None
            )
            atexit.register(shutil.rmtree, base, ignore_errors=True)  # in-process use (tests)
        _WORK.append(Path(base))
    return _WORK[0]


def _name(r: Reader) -> bytes:
    pick = r.byte()
    if pick < 160:
        return _NAMES[pick % len(_NAMES)]
    return r.take(r.below(48)).replace(b"/", b"").replace(b"\x00", b"")


def _content(r: Reader, name: bytes) -> bytes | int:
    """Bytes to write, or a size to make sparse."""
    how = r.below(5)
    if name in (b"SHA256SUMS.gpg", b"SHA256SUMS.sha256.asc") and how < 3:
        return b"GOOD" + r.take(how)
    if how == 0:
        return b""
    if how == 1:
        return r.take(r.below(64))
    if how == 2:
        return b"payload " + name
    if how == 3:
        return _SPARSE if r.byte() & 1 else LIMITS.max_file_bytes + 1
    return b"\xfd7zXZ\x00" + bytes(16)  # compression magic (reject.payload)


def _regular(dfd: int, name: bytes, r: Reader) -> None:
    content = _content(r, name)
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644, dir_fd=dfd)
    try:
        if isinstance(content, int):
            os.ftruncate(fd, content)
        else:
            os.write(fd, content)
        bits = r.byte()
        if bits & 0x80:
            os.fchmod(fd, 0o600 | ((bits & 0o7) << 9) | ((bits >> 3) & 0o7) << 3)
    finally:
        os.close(fd)


def _dir_chain(dfd: int, name: bytes, r: Reader) -> None:
    os.mkdir(name, 0o700 | (r.byte() & 0o77), dir_fd=dfd)
    fd = os.open(name, DIR_FLAGS, dir_fd=dfd)
    try:
        for _ in range(r.below(6)):
            os.mkdir(b"d", 0o755, dir_fd=fd)
            inner = os.open(b"d", DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
        os.close(os.open(b"Spectrum_2.efi", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


def _manifest(dfd: int, r: Reader) -> None:
    """Write SHA256SUMS: raw bytes, or the true digests of the tree's files (plus extra bytes)."""
    how = r.below(4)
    raw = b""
    if how:
        for entry in sorted(os.listdir(dfd)):
            raw_name = os.fsencode(entry)
            if raw_name.startswith(b".") or entry in _CONTROL:
                continue
            with contextlib.suppress(OSError):
                fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
                try:
                    st = os.fstat(fd)
                    body = os.read(fd, 1 << 17) if st.st_size <= 1 << 17 else b""
                finally:
                    os.close(fd)
                if stat.S_ISREG(st.st_mode):
                    raw += hashlib.sha256(body).hexdigest().encode() + b" *" + raw_name + b"\n"
        if how == 2:
            raw = (b"%s *BEST-BEFORE-20%02d-01-01\n" % (staging.EMPTY_SHA256.encode(),
                   20 + r.below(20))) + raw  # fmt: skip
    if how != 1:
        raw += r.take(r.below(128))
    with contextlib.suppress(FileExistsError):
        fd = os.open("SHA256SUMS", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dfd)
        try:
            os.write(fd, raw)
        finally:
            os.close(fd)


def build(r: Reader, dfd: int) -> None:
    """Create the entries the input describes in the directory ``dfd``."""
    regulars: list[bytes] = []
    for _ in range(r.below(10)):
        kind = r.below(8)
        name = _name(r)
        if not name or name == b"SHA256SUMS":
            continue
        with contextlib.suppress(FileExistsError, OSError):
            if kind <= 2:
                _regular(dfd, name, r)
                regulars.append(name)
            elif kind == 3:
                _dir_chain(dfd, name, r)
            elif kind == 4:
                os.symlink(_LINK_TARGETS[r.below(len(_LINK_TARGETS))], name, dir_fd=dfd)
            elif kind == 5:
                os.mkfifo(name, dir_fd=dfd)
            elif kind == 6 and regulars:
                old = regulars[r.below(len(regulars))]
                os.link(old, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
            else:
                _regular(dfd, b"." + name[:254], r)
    if r.byte() & 1:
        _manifest(dfd, r)


def _policy(r: Reader) -> Policy:
    bits = r.byte()
    return Policy(
        trusted_fingerprints=frozenset({FPR}),
        installed=(None, "1", "2", "3")[bits & 3],
        floor=(None, "2")[(bits >> 2) & 1],
        require_fresh=bool(bits & 8),
    )


def _check_listing(dfd: int, listing: walk.Listing) -> None:
    for f in listing.files:
        st = os.stat(f.name, dir_fd=dfd, follow_symlinks=False)
        check(names.is_safe(f.name), f"unsafe name listed: {f.name!r}")
        check(stat.S_ISREG(st.st_mode) and st.st_nlink == 1, f"{f.name!r} listed")
        check(not st.st_mode & (stat.S_ISUID | stat.S_ISGID), f"set-ID {f.name!r} listed")


def _check_release(dfd: int, release: VerifiedRelease) -> None:
    for f in release.files:
        fd = os.open(f.name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
        try:
            digest = hashlib.sha256(os.read(fd, 1 << 18)).hexdigest()
        finally:
            os.close(fd)
        check(digest == f.sha256, f"accepted {f.name!r} with a wrong digest")


def judge(dfd: int, r: Reader) -> None:
    """The host's checks over the tree, with the oracle of the module docstring."""
    with refusals((InspectionError,), "reject."):
        _check_listing(dfd, walk.walk(dfd, limits=LIMITS))
    with refusals((InspectionError,), "reject."):
        for name in candidate.droppable(dfd, transfers=TRANSFERS, limits=LIMITS):
            os.stat(name, dir_fd=dfd, follow_symlinks=False)  # it exists
    with refusals((RejectedError,), "reject."):
        release = verify.judge(
            dfd,
            transfers=TRANSFERS,
            keyring=Path("/nonexistent/keyring.gpg"),
            policy=_policy(r),
            limits=LIMITS,
            verifier=FakeVerifier(),
            now=NOW,
        )
        _check_release(dfd, release)


def test_one(data: bytes) -> None:
    """Build the tree of ``data``, judge it, remove it."""
    root = _workdir() / "snapshot"
    os.mkdir(root, 0o755)
    try:
        dfd = os.open(root, DIR_FLAGS)
        try:
            r = Reader(data)
            build(r, dfd)
            judge(dfd, r)
        finally:
            os.close(dfd)
    finally:
        shutil.rmtree(root)


def seeds() -> Iterator[bytes]:
    """A complete, signed release, and one of each kind of hostile entry beside it."""
    kernel, root, verity = (_NAMES.index(n.encode()) for n in staging.payload_names("2").values())
    gpg = _NAMES.index(b"SHA256SUMS.gpg")
    # four regular files: payload bytes (content 2), no mode bits; the signature "GOOD"
    release = bytes([0, kernel, 2, 0, 0, root, 2, 0, 0, verity, 2, 0, 0, gpg, 0, 0])
    tail = bytes([1, 1, 0])  # SHA256SUMS of the tree's true digests; the default policy
    yield bytes([4]) + release + tail
    for kind in range(8):
        for name in (
            bytes([_NAMES.index(b"README")]),
            bytes([len(_NAMES) - 1]),
            b"\xc8\x04a\nb\x1b",
        ):
            yield bytes([5]) + release + bytes([kind]) + name + bytes([1, 4]) + b"abcd\xff" + tail
