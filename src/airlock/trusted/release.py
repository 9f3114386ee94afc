# SPDX-License-Identifier: MIT
"""``VerifiedRelease`` and its parts: what the judge hands to the host after every check passed.

These values are constructed only in ``trusted/verify.py`` (``tests/unit/test_architecture.py``
checks it).  Holding one means: every signature file verified over the exact manifest bytes read,
the signer policy and freshness rules held, and each file below hashed, from an fd opened in the
snapshot, to the digest the manifest lists.  Names in ``files`` passed the safe-name rule;
``Dropped.name`` is raw (a safe name or a dot-temporary) and must only be used with ``dir_fd=``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from airlock.backends.openpgp import ValidSignature


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedFile:
    """A payload of the verified release: safe ``name``, ``size`` bytes, ``sha256`` as hashed."""

    name: str
    size: int
    sha256: str
    transfer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Dropped:
    """An entry not part of the release, never read.  Print only ``name_display``."""

    name: str
    name_display: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedRelease:
    """The judge's verdict on an acceptable snapshot.

    ``version`` is ``None`` when the signed manifest's release (not newer than the installed
    version) is not present in the snapshot; ``newer`` says whether ``version`` is newer than
    ``Policy.installed``.  ``signers`` are the counted signatures (trusted primary keys; their
    times are what the run records as the replay floor), ``uncounted`` the other valid ones (keys
    in the keyring that the policy does not count), shown but never recorded.
    """

    version: str | None
    newer: bool
    files: tuple[VerifiedFile, ...]
    dropped: tuple[Dropped, ...]
    signers: tuple[ValidSignature, ...]
    best_before: datetime.date | None
    bytes_hashed: int
    manifest_sha256: str
    uncounted: tuple[ValidSignature, ...] = ()
