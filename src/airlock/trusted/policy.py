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
from typing import ClassVar

from airlock import settings
from airlock.backends.openpgp import VerifierName
from airlock.errors import UsageError
from airlock.formats import dialect, version
from airlock.settings import BOOL, choice, integer, list_of, setting

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


def _fingerprint(value: object) -> str:
    if not isinstance(value, str):
        raise settings.Invalid("must be 40 or 64 hex digits (a primary key fingerprint)")
    try:
        return fingerprint(value)
    except UsageError:
        raise settings.Invalid("must be 40 or 64 hex digits (a primary key fingerprint)") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyConfig:
    """``[policy]``: which signatures count and how fresh a release must be (host settings)."""

    SECTION: ClassVar[str] = "policy"

    trusted_fingerprints: tuple[str, ...] = setting(
        (),
        kind=list_of(
            settings.Kind(parse=_fingerprint, dump=lambda v: v, metavar="FPR", doc="fingerprint")
        ),
        flag="--trusted-fingerprint",
        help="primary keys whose signatures count (empty: every key of the keyring)",
    )
    threshold: int = setting(
        1, kind=integer(1), flag="--threshold", help="distinct trusted keys that must have signed"
    )
    require_fresh: bool = setting(
        False,
        kind=BOOL,
        flag="--require-fresh",
        help="refuse a manifest without a BEST-BEFORE marker (update and check also refuse one"
        " once they accepted a manifest with a marker: the freshness ratchet)",
    )
    verifier: VerifierName = setting(
        VerifierName.AUTO,
        kind=choice(VerifierName),
        flag="--verifier",
        help="OpenPGP verification tool: auto (sqv, else gpgv), sqv or gpgv",
    )

    def __post_init__(self) -> None:
        """Refuse a threshold no set of trusted keys could reach."""
        if self.trusted_fingerprints and self.threshold > len(self.trusted_fingerprints):
            raise settings.Invalid(
                f"{self.threshold} exceeds the {len(self.trusted_fingerprints)} trusted"
                " fingerprint(s)",
                key="threshold",
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Room:
    """The most bytes a payload of ``transfer`` can have and still be installed (docs/adr/0160).

    Measured on the host before judging (``backends.apply.room``): the size of the largest
    partition the transfer may write, or the free space of its target directory plus what
    sysupdate may vacuum there.  ``where`` says which, for the refusal message.
    """

    transfer: str
    bytes: int
    where: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Baseline:
    """What the host knows before judging: its persisted state and what sysupdate reports.

    Attributes:
        floor: no version below this is ever accepted (the state's rollback floor).
        installed: the newest version sysupdate sees installed (or the state's, as a fallback).
        not_before: the creation time of the newest signature accepted so far.
        room: the room of each target that could be measured (a transfer without one is bounded
            only by ``[limits]``).
        fresh_required: the freshness ratchet: an earlier accepted manifest carried
            ``BEST-BEFORE``, so this one must too (the state's ``fresh_required``).
    """

    floor: str | None = None
    installed: str | None = None
    not_before: datetime.datetime | None = None
    room: tuple[Room, ...] = ()
    fresh_required: bool = False


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
        fresh_ratchet: likewise, because an earlier accepted manifest carried one (the state's
            freshness ratchet; docs/adr/0155): a publisher, or a VM replaying an old unmarked
            release, cannot step back to manifests that never expire.
        appliers: the rules (``formats.dialect``) of every systemd-sysupdate that may apply the
            release — the one the host runs: the judge requires a signature file each of them
            reads from a ``file://`` source (without it sysupdate would fail on every run).
            Empty (``airlock inspect``, which does not know the applier): either name is enough.
        room: per transfer, the largest payload its target can take (``Room``); a payload larger
            than that is refused before any byte of it is hashed.
    """

    trusted_fingerprints: frozenset[str] = field(default_factory=frozenset)
    threshold: int = 1
    floor: str | None = None
    installed: str | None = None
    not_before: datetime.datetime | None = None
    require_fresh: bool = False
    fresh_ratchet: bool = False
    appliers: tuple[dialect.Dialect, ...] = ()
    room: tuple[Room, ...] = ()

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

    @classmethod
    def of(
        cls,
        config: PolicyConfig,
        baseline: Baseline,
        *,
        appliers: tuple[dialect.Dialect, ...] = (),
    ) -> Policy:
        """The rules for one judgement: the host's settings plus what it knows now."""
        return cls(
            trusted_fingerprints=frozenset(config.trusted_fingerprints),
            threshold=config.threshold,
            floor=baseline.floor,
            installed=baseline.installed,
            not_before=baseline.not_before,
            require_fresh=config.require_fresh,
            fresh_ratchet=baseline.fresh_required,
            appliers=appliers,
            room=baseline.room,
        )
