# SPDX-License-Identifier: MIT
"""What each systemd-sysupdate version reads: the one table of version-dependent rules.

airlock judges a release before systemd-sysupdate applies it, so the judge must know exactly what
that sysupdate will read: which signature file names (and in what order), which keyrings, which
payloads it decompresses, which version strings and manifest lines it understands.  These differ
between versions; every such difference airlock relies on is a field of ``Dialect``, one row per
version where something changed.  ``for_version(major)`` returns the row that applies.

Each row was checked against the real binary where one runs here (257 and 262: the tests in
``tests/integration/test_dialect_*.py`` run every rule against each runtime) and against the
source otherwise (``evidence``); ``docs/sysupdate-versions.md`` is the same table for readers.
A version newer than the newest row gets that row, marked ``verified=False`` for that version
(``airlock status`` says so).

Pure data: no I/O, stdlib only.  Trusts nothing it is given.
"""

from __future__ import annotations

import string
from collections.abc import Collection
from dataclasses import dataclass, replace

MANIFEST = "SHA256SUMS"
SIG_GPG = "SHA256SUMS.gpg"  # binary, per directory: the only name 257 reads
SIG_SHA256_ASC = "SHA256SUMS.sha256.asc"  # per file (armoured): read first from 258 on
SIG_SHA256_GPG = "SHA256SUMS.sha256.gpg"
SIG_ASC = "SHA256SUMS.asc"

ETC_GPG = "/etc/systemd/import-pubring.gpg"
ETC_PGP = "/etc/systemd/import-pubring.pgp"
VENDOR_GPG = "/usr/lib/systemd/import-pubring.gpg"
VENDOR_PGP = "/usr/lib/systemd/import-pubring.pgp"
KEYRING_ENV = "SYSTEMD_OPENPGP_KEYRING"

XZ = (b"\xfd7zXZ\x00", "xz")
GZIP = (b"\x1f\x8b", "gzip")
BZIP2 = (b"BZh", "bzip2")
ZSTD = (b"\x28\xb5\x2f\xfd", "zstd")
LZ4 = (b"\x04\x22\x4d\x18", "lz4")

_ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialect:
    """The rules of one systemd-sysupdate version range (from ``since`` to the next row).

    Attributes:
        since: the first systemd major version with these rules.
        signature_names: the signature files systemd-pull requests next to ``SHA256SUMS``, in
            order; it reads the first one it finds.
        file_fallback: whether a name missing from a ``file://`` source moves on to the next one
            (258 moved on only after an HTTP 404, so over ``file://`` only the first name works).
        keyrings: the keyring paths it may read: the first existing of the ``/etc`` ones, else
            (or, with ``vendor_merged``, also) the vendor one under ``/usr/lib``.
        vendor_merged: the vendor keyring is trusted *in addition* to the ``/etc`` one.
        keyring_env: an environment variable that replaces every keyring path, if any.
        compressions: payload magic it decompresses (a url-file payload is installed as the
            decompressed bytes, which nobody hashed).
        min_url_file_bytes: a url-file payload shorter than this fails after the vacuum.
        version_chars: the characters ``version_is_valid()`` accepts in a version.
        best_before: ``BEST-BEFORE-YYYY-MM-DD`` lines are freshness markers (a date in the past,
            from 00:00 UTC of that day, refuses the whole manifest), not file names.
        manifest_subpaths: ``dir/file`` names in ``SHA256SUMS`` are accepted.
        manifest_refused_chars: characters that make it refuse the whole manifest when they
            appear in a name (beyond 257's control characters and leading backslash).
        prefix_match: a ``MatchPattern=`` that ends in a literal also matches names that go on
            after it (257: ``foo_@v.raw`` matches ``foo_2.raw.bak``); 262 matches whole names.
        strtoull_c23: numeric fields (``@t @s @d @l``) accept a second ``0b``/``0x`` after the
            one systemd strips (glibc's C23 ``strtoull``, as the 257 binary is built); 262 not.
        partition_attributes: ``ReadOnly=``, ``NoAuto=`` and ``GrowFileSystem=`` reach the GPT
            attributes of an installed partition; 262 sets them while the partition still has the
            temporary "pending" type, which knows none of them, so they are lost (observed).
        partial_instances: a failed acquire leaves a *partial* instance in the target
            (``.sysupdate.partial.NAME``, or a partition with the derived "partial" type) that
            ``list`` reports as the current version and that makes ``update`` of that version
            fail until ``vacuum`` removes it.
        evidence: where each rule of the row was seen (source commit, NEWS, or a test).
        major: the version these rules were looked up for (``for_version``); a row's own
            ``since`` otherwise.
        verified: False when this row is applied to a version newer than any row.
    """

    since: int
    signature_names: tuple[str, ...]
    file_fallback: bool
    keyrings: tuple[str, ...]
    vendor_merged: bool
    keyring_env: str | None
    compressions: tuple[tuple[bytes, str], ...]
    min_url_file_bytes: int
    version_chars: frozenset[str]
    best_before: bool
    manifest_subpaths: bool
    manifest_refused_chars: frozenset[str]
    prefix_match: bool
    strtoull_c23: bool
    partition_attributes: bool
    partial_instances: bool
    evidence: str
    major: int = 0
    verified: bool = True

    def __post_init__(self) -> None:
        """A row stands for its own first version unless ``for_version`` says otherwise."""
        if self.major == 0:
            object.__setattr__(self, "major", self.since)

    def reads_signature(self, present: Collection[str]) -> str | None:
        """The signature file this sysupdate reads from a ``file://`` source holding ``present``.

        ``None``: it finds none and fails ("Failed to retrieve signature file") — after it has
        already vacuumed, so the judge must refuse such a release.
        """
        for name in self.signature_names:
            if name in present:
                return name
            if not self.file_fallback:
                return None
        return None

    def version_is_valid(self, v: str) -> bool:
        """``version_is_valid()`` of this version: 1..255 bytes of ``version_chars``."""
        return all(c in self.version_chars for c in v) and 0 < len(v) <= 255  # ASCII only

    def decompresses(self, head: bytes) -> str | None:
        """The compression whose magic ``head`` starts with, if this version undoes it."""
        for magic, kind in self.compressions:
            if head.startswith(magic):
                return kind
        return None


_SIGNATURES_258 = (SIG_SHA256_ASC, SIG_SHA256_GPG, SIG_GPG, SIG_ASC)

V257 = Dialect(
    since=257,
    signature_names=(SIG_GPG,),
    file_fallback=False,
    keyrings=(ETC_GPG, VENDOR_GPG),
    vendor_merged=False,
    keyring_env=None,
    compressions=(XZ, GZIP, BZIP2),
    min_url_file_bytes=6,
    version_chars=frozenset(_ALNUM + ".,_+-"),
    best_before=False,
    manifest_subpaths=False,
    manifest_refused_chars=frozenset(),
    prefix_match=True,
    strtoull_c23=True,
    partition_attributes=True,
    partial_instances=False,
    evidence="v257 70bae7648f (src/import/pull-common.c, src/basic/string-util.c); tested 257.13",
)
V258 = replace(
    V257,
    major=0,  # the new row's own since
    since=258,
    signature_names=_SIGNATURES_258,  # ac9edf9911 (PR #36272)
    keyrings=(ETC_PGP, ETC_GPG, VENDOR_PGP),  # ff401d5df9
    compressions=(XZ, GZIP, BZIP2, ZSTD),
    evidence="ac9edf9911 (.sha256.asc first; file:// issue #39723), ff401d5df9 (.pgp), NEWS 258",
)
V259 = replace(
    V258,
    major=0,  # the new row's own since
    since=259,
    file_fallback=True,  # aa7574417b (PR #38710)
    evidence="aa7574417b (file:// fallback, PR #38710)",
)
V260 = replace(
    V259,
    major=0,  # the new row's own since
    since=260,
    version_chars=frozenset(_ALNUM + ".-~^_+"),  # UAPI.10 charset (#43025): "~^" in, "," out
    best_before=True,  # PR #40393, NEWS 260
    manifest_subpaths=True,
    manifest_refused_chars=frozenset("%"),
    partial_instances=True,  # NEWS 260, PR #40236
    evidence="NEWS 260 (BEST-BEFORE), #43025 (version charset); not run here",
)
V262 = replace(
    V260,
    major=0,  # the new row's own since
    since=262,
    vendor_merged=True,  # NEWS 262, PR #43485
    keyring_env=KEYRING_ENV,
    compressions=(XZ, GZIP, BZIP2, ZSTD, LZ4),
    min_url_file_bytes=0,  # a 3-byte url-file installs (tests/integration/test_dialect_*)
    prefix_match=False,  # whole-name pattern_match (differential pattern tests)
    strtoull_c23=False,
    partition_attributes=False,  # host pipeline test: the slot keeps no GUID:60
    evidence="262 source (src/import/pull-common.c, src/basic/compress.c), NEWS 262; tested 262-1",
)

#: Every row, oldest first.
TABLE: tuple[Dialect, ...] = (V257, V258, V259, V260, V262)
OLDEST = TABLE[0].since
NEWEST = TABLE[-1].since

#: Every compression any supported version undoes: the judge refuses all of them, so a release
#: installs the same bytes under every runtime a host may switch to.
ALL_COMPRESSIONS: tuple[tuple[bytes, str], ...] = tuple(
    dict.fromkeys(c for row in TABLE for c in row.compressions)
)
#: The signature names airlock's publisher writes, its agent fetches and its judge allows.
AIRLOCK_SIGNATURES = (SIG_GPG, SIG_SHA256_ASC)


def for_version(major: int) -> Dialect:
    """The rules of systemd-sysupdate ``major``.

    Raises:
        ValueError: ``major`` is older than the oldest row (airlock needs ≥ 257).
    """
    if major < OLDEST:
        raise ValueError(f"systemd-sysupdate {major} is older than {OLDEST}")
    row = [d for d in TABLE if d.since <= major][-1]
    return replace(row, major=major, verified=major <= NEWEST)
