# SPDX-License-Identifier: MIT
"""``Limits``: every cap on what is read from untrusted sources, in one section (``[limits]``).

The role of python-tuf's ``UpdaterConfig``.  The defaults admit Spectrum's real release sizes (a
root image of about 20 GB) and refuse absurd ones.  Used by the host's judge (walk, manifest,
signatures, hashing) and by the agent in the VM, so this module imports nothing of the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from airlock.settings import SECONDS, integer, setting

GIB = 1 << 30
MIB = 1 << 20
KIB = 1 << 10

_COUNT = integer(1)
_BYTES = integer(1, unit="byte count")


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Caps on everything read from untrusted sources."""

    SECTION: ClassVar[str] = "limits"

    max_entries: int = setting(
        4096, kind=_COUNT, flag="--max-entries", help="entries a snapshot may hold"
    )
    max_file_bytes: int = setting(
        64 * GIB, kind=_BYTES, flag="--max-file-bytes", help="size of one file"
    )
    max_total_bytes: int = setting(
        128 * GIB, kind=_BYTES, flag="--max-total-bytes", help="size of all files together"
    )
    max_manifest_bytes: int = setting(
        1 * MIB, kind=_BYTES, flag="--max-manifest-bytes", help="size of SHA256SUMS"
    )
    max_manifest_lines: int = setting(
        4096, kind=_COUNT, flag="--max-manifest-lines", help="lines of SHA256SUMS"
    )
    max_signature_bytes: int = setting(
        64 * KIB, kind=_BYTES, flag="--max-signature-bytes", help="size of one signature file"
    )
    max_keyring_bytes: int = setting(
        1 * MIB, kind=_BYTES, flag="--max-keyring-bytes", help="size of the pinned keyring"
    )
    max_name_bytes: int = setting(
        255, kind=integer(1, 255), flag="--max-name-bytes", help="length of a file name"
    )
    hash_threads: int = setting(
        2, kind=integer(1, 64), flag="--hash-threads", help="threads hashing payloads at once"
    )
    hash_buffer_bytes: int = setting(
        4 * MIB, kind=_BYTES, flag="--hash-buffer-bytes", help="read size while hashing"
    )
    signature_timeout_s: float = setting(
        30.0,
        kind=SECONDS,
        flag="--signature-timeout-s",
        help="time allowed to one signature or keyring check (sqv, gpgv, gpg)",
    )
