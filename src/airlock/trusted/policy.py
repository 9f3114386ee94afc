# SPDX-License-Identifier: MIT
"""The host's acceptance policy: which signers count, how many, and the freshness rules.

Every value here is trusted host configuration (command line, host config, persisted state); none
comes from the staging tree.  ``Policy`` only holds the rules and checks its own consistency;
``trusted.verify`` applies them.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field

from airlock.errors import UsageError
from airlock.formats import dialect, version

_FPR = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")


def fingerprint(text: str) -> str:
    """Normalise an OpenPGP primary-key fingerprint: spaces removed, upper case, v4 or v6 length.

    Raises:
        UsageError: ``usage.fingerprint`` when it is not 40 or 64 hex digits.
    """
    fpr = text.replace(" ", "").upper()
    if fpr.startswith("0X"):
        fpr = fpr[2:]
    if not _FPR.fullmatch(fpr):
        raise UsageError(
            "Refusing fingerprint: expected 40 or 64 hex digits (a primary key)",
            code="usage.fingerprint",
        )
    return fpr


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """Rules the judge applies on top of "every signature verifies".

    Attributes:
        trusted_fingerprints: primary-key fingerprints whose signatures count; empty means every
            key of the keyring counts.
        threshold: how many distinct counted primary keys must have signed (≥ 1).
        floor: no version below this is ever accepted (rollback).
        installed: the installed version; a manifest whose release is older is a rollback, and the
            result says whether the release is newer.
        not_before: a counted signature created before this instant is a replay.
        require_fresh: a manifest without ``BEST-BEFORE`` is refused.
        appliers: the rules (``formats.dialect``) of every systemd-sysupdate that may apply the
            release — the one the host runs, or every known one when it cannot tell: the judge
            requires a signature file each of them reads and refuses what any would fail on or
            read otherwise (a version string it does not accept, a manifest name it refuses).
            Empty (``airlock inspect`` without ``--sysupdate-version``): either signature name is
            enough.
    """

    trusted_fingerprints: frozenset[str] = field(default_factory=frozenset)
    threshold: int = 1
    floor: str | None = None
    installed: str | None = None
    not_before: datetime.datetime | None = None
    require_fresh: bool = False
    appliers: tuple[dialect.Dialect, ...] = ()

    def __post_init__(self) -> None:
        """Refuse inconsistent policies (programmer or usage errors, never untrusted input)."""
        if self.threshold < 1:
            raise UsageError("threshold must be at least 1", code="usage.threshold")
        if self.trusted_fingerprints and self.threshold > len(self.trusted_fingerprints):
            raise UsageError(
                f"threshold {self.threshold} exceeds the {len(self.trusted_fingerprints)}"
                " trusted fingerprints",
                code="usage.threshold",
            )
        for fpr in self.trusted_fingerprints:
            if fingerprint(fpr) != fpr:
                raise UsageError(
                    "trusted fingerprints must be normalised", code="usage.fingerprint"
                )
        for v in (self.floor, self.installed):
            if v is not None and not version.is_valid(v):
                raise UsageError("floor and installed must be valid versions", code="usage.version")
        if self.not_before is not None and self.not_before.tzinfo is None:
            raise UsageError("not_before must carry a time zone", code="usage.time")

    @property
    def baseline(self) -> str | None:
        """The newest of ``floor`` and ``installed``: a release must not be older than this."""
        known = [v for v in (self.floor, self.installed) if v is not None]
        if not known:
            return None
        return max(known, key=version.key)
