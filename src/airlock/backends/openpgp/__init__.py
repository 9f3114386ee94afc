# SPDX-License-Identifier: MIT
"""OpenPGP signature verification: which trusted primary keys signed these exact bytes, and when.

Trusts the keyring file passed in (the host's, from its read-only image) and the sqv/gpgv/gpg
binaries.  Refuses, with ``SignatureError`` (``reject.signature``) and never another type: garbage,
empty or HTML "signatures", non-signature packets, unknown keys, bad or tampered signatures,
signatures by expired or revoked (sub)keys, hashes other than SHA-256/384/512 (SHA-1 above all),
signature types other than binary/text documents, two signatures by the same primary key, and any
file in which *not every* signature packet is valid (C10: a file with one good and one unknown-key
signature is refused as a whole).

``SignatureVerifier.verify()`` is a template method (python-tuf's ``FetcherInterface.fetch()``):
it bounds and parses the input, runs the implementation's ``_verify()``, wraps every failure into
``SignatureError``, and then checks that the tool's answer agrees with the packets — so
``SqvVerifier`` and ``GpgvVerifier`` return identical ``ValidSignature`` tuples for identical input.
"""

from __future__ import annotations

import abc
import datetime as dt
import enum
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from airlock.backends.openpgp import keyring as keyring_mod
from airlock.backends.openpgp import packets
from airlock.errors import AirlockError, ConfigError, HostError, SignatureError
from airlock.limits import Limits

logger = logging.getLogger(__name__)

#: OpenPGP hash algorithm ids accepted (RFC 4880 §9.4): SHA-256, SHA-384, SHA-512.
ACCEPTED_HASHES = frozenset({8, 9, 10})
#: Signature types accepted: 0x00 binary document, 0x01 canonical text document.
ACCEPTED_SIG_TYPES = frozenset({0x00, 0x01})
#: How far past the reference time a signature's creation time may lie (the publisher's clock may
#: run a little ahead of the host's).  A signature created later is refused by both verifiers,
#: whatever the tool would say: otherwise one future-dated signature would raise the host's replay
#: floor (``state.newest_signature``) past every genuine release still to come.
CLOCK_SKEW = dt.timedelta(minutes=5)
#: How long (seconds) a verifier reuses a keyring listing (gpg's reading of expiry and revocation
#: at that moment) and its answers for identical input: long enough for one judgement, short
#: enough that a key expiring meanwhile is seen by the next one.
REUSE_S = 60.0
_clock = time.monotonic


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class ValidSignature:
    """One valid signature: the signer's primary fingerprint, its creation time, its hash."""

    fingerprint: str
    created: dt.datetime
    hash_algo: int | None


class SignatureVerifier(Protocol):
    """Verifies detached signatures; only ``verify()`` is public."""

    def verify(
        self, signature: bytes, data: bytes, keyring: Path, *, now: dt.datetime | None = None
    ) -> tuple[ValidSignature, ...]:
        """Every signature packet in ``signature`` must be a valid signature over ``data``.

        ``now`` is the reference time (timezone-aware; ``None``: the clock, read once); no
        signature may be created after ``now + CLOCK_SKEW``.
        """
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Work:
    """What ``verify()`` hands to ``_verify()``: files in a private directory plus parsed input."""

    signature_file: Path
    data_file: Path
    keyring_file: Path  # binary (dearmoured), absolute path
    keyring: keyring_mod.Keyring
    sigs: tuple[packets.SignaturePacket, ...]
    timeout_s: float
    not_after: dt.datetime  # the reference time plus CLOCK_SKEW: no signature may be newer


class BaseVerifier(abc.ABC):
    """The template: bounds, parsing, error wrapping and the cross-check of the tool's answer."""

    def __init__(self, *, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        # One judgement checks up to two signature files, usually the same packets in two
        # encodings (ADR 0131): the keyring listing and the answer for identical input are kept
        # for REUSE_S (ADR 0151), so the second file costs neither gpg nor the tool.
        self._rings: dict[bytes, tuple[float, keyring_mod.Keyring]] = {}
        self._answers: dict[tuple[bytes, bytes, bytes, dt.datetime], list[ValidSignature]] = {}
        self._early: EarlyListing | None = None

    def adopt(self, early: EarlyListing) -> None:
        """Take ``early`` as the next keyring listing, if it fits (see ``EarlyListing``).

        The next ``verify()`` takes it if it was listed from the bytes the keyring holds then
        and is newer than the listing the verifier already holds for those bytes.
        """
        self._early = early

    def verify(
        self, signature: bytes, data: bytes, keyring: Path, *, now: dt.datetime | None = None
    ) -> tuple[ValidSignature, ...]:
        """Verify; return the valid signatures sorted by (fingerprint, created).

        Args:
            signature: the detached signature file (binary or armoured), untrusted.
            data: the signed bytes.
            keyring: the pinned keyring.
            now: the reference time (timezone-aware); ``None`` reads the clock once.  A signature
                created after ``now + CLOCK_SKEW`` is refused, before and after the tool runs
                (sqv also gets it as ``--not-after``; gpgv has no such option).

        Raises:
            SignatureError: for every failure (never another type).
        """
        if now is None:
            now = dt.datetime.now(dt.UTC)
        elif now.tzinfo is None:
            raise RuntimeError("verify() needs a timezone-aware reference time")
        try:
            return self._checked(signature, data, keyring, not_after=now + CLOCK_SKEW)
        except SignatureError:
            raise
        except AirlockError as exc:
            raise SignatureError(f"Signature verification failed: {exc.message}") from None
        except Exception as exc:  # noqa: BLE001 - the template's job is to normalise failures
            logger.debug("verifier failure", exc_info=True)
            raise SignatureError(f"Signature verification failed: {type(exc).__name__}") from None

    def _checked(
        self, signature: bytes, data: bytes, keyring: Path, *, not_after: dt.datetime
    ) -> tuple[ValidSignature, ...]:
        if len(signature) > self.limits.max_signature_bytes:
            raise SignatureError(
                f"Signature file is larger than {self.limits.max_signature_bytes} bytes"
            )
        sigs = packets.parse_signatures(signature)
        for sig in sigs:
            if sig.hash_algo not in ACCEPTED_HASHES:
                raise SignatureError(
                    f"Signature uses hash algorithm {sig.hash_algo}; only SHA-256/384/512 accepted"
                )
            if sig.sig_type not in ACCEPTED_SIG_TYPES:
                raise SignatureError(f"Signature type 0x{sig.sig_type:02x} is not a document one")
            _check_not_after(sig.created, not_after)
        ring = self._ring(keyring)
        expected = self._expected(sigs, ring)
        key = (packets.dearmor(signature, kind=b"SIGNATURE"), data, ring.binary, not_after)
        if key in self._answers:  # the same packets over the same bytes, checked moments ago
            return tuple(self._answers[key])
        work_dir = Path(tempfile.mkdtemp(prefix="airlock-verify-"))
        try:
            work = Work(
                signature_file=work_dir / "signature",
                data_file=work_dir / "data",
                keyring_file=work_dir / "keyring.gpg",
                keyring=ring,
                sigs=sigs,
                timeout_s=self.limits.signature_timeout_s,
                not_after=not_after,
            )
            work.signature_file.write_bytes(signature)
            work.data_file.write_bytes(data)
            work.keyring_file.write_bytes(ring.binary)
            found = self._verify(work)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        if sorted(found) != expected:
            raise SignatureError(
                "The verifier's answer does not match the signature packets "
                f"({len(found)} valid of {len(sigs)})"
            )
        for valid in found:  # the tool's own reading of the time, too
            _check_not_after(valid.created, not_after)
        self._answers[key] = expected
        return tuple(expected)

    def _ring(self, keyring: Path) -> keyring_mod.Keyring:
        """The keyring's listing; gpg runs again when the file's bytes differ or after REUSE_S."""
        path = keyring.absolute()
        raw = keyring_mod.read_bytes(path, max_bytes=self.limits.max_keyring_bytes)
        now = _clock()
        early, self._early = self._early, None
        if early is not None and early.path == path:
            done = early.result()
            if done is not None and done[0] == raw:  # listed from these very bytes
                held = self._rings.get(raw)
                if held is None or held[0] < done[1]:  # the newer listing of the two
                    self._rings = {raw: (done[1], done[2])}
        cached = self._rings.get(raw)
        if cached is not None and now - cached[0] < REUSE_S:
            return cached[1]
        ring = keyring_mod.listing(raw, timeout=self.limits.signature_timeout_s)
        self._rings = {raw: (now, ring)}
        self._answers = {}
        return ring

    @staticmethod
    def _expected(
        sigs: tuple[packets.SignaturePacket, ...], ring: keyring_mod.Keyring
    ) -> list[ValidSignature]:
        """What a fully valid file must yield; refuses unknown, expired, revoked, repeated keys."""
        out: list[ValidSignature] = []
        for sig in sigs:
            key = ring.lookup(fingerprint=sig.issuer_fingerprint, key_id=sig.issuer_key_id)
            if key is None:
                issuer = sig.issuer_fingerprint or sig.issuer_key_id or "unknown"
                raise SignatureError(f"Signed by a key not in the keyring ({issuer})")
            primary = ring.primary(key.primary)
            for k in (key, primary):
                if k is None or not k.usable:
                    letter = k.validity if k else ""
                    state = {"e": "expired", "r": "revoked"}.get(letter, "unusable")
                    raise SignatureError(f"Signed by a key that is {state} ({key.fingerprint})")
            out.append(
                ValidSignature(
                    fingerprint=key.primary, created=sig.created, hash_algo=sig.hash_algo
                )
            )
        if len({v.fingerprint for v in out}) != len(out):
            raise SignatureError("More than one signature by the same primary key")
        return sorted(out)

    @abc.abstractmethod
    def _verify(self, work: Work) -> list[ValidSignature]:
        """Run the tool; return one ValidSignature per valid signature packet, or raise."""


def _check_not_after(created: dt.datetime, not_after: dt.datetime) -> None:
    if created > not_after:
        raise SignatureError(
            f"Signature created {created.isoformat()}, after the reference time plus the allowed"
            f" clock skew ({not_after.isoformat()}): the signer's clock, or the signature, is"
            " from the future"
        )


class EarlyListing:
    """The keyring listed by gpg in a thread while the verifier is still being chosen (ADR 0175).

    ``Preparation`` (``airlock inspect``) starts it beside ``verifier()``, which runs
    ``sqv --version``, so the two children run side by side, and hands it to the verifier
    (``BaseVerifier.adopt``).  The first ``verify()`` takes it as its own listing only
    if it was made from the very bytes the keyring file holds then; its age counts from when it
    started (``REUSE_S``).  Anything else — a failure, other bytes, another path — is dropped and
    the verifier lists the keyring itself, so its errors and checks are those of a verifier
    without it.
    """

    def __init__(self, keyring: Path, *, limits: Limits) -> None:
        self.path = keyring.absolute()
        self._limits = limits
        self._done: tuple[bytes, float, keyring_mod.Keyring] | None = None
        self._thread = threading.Thread(target=self._list, name="airlock-keyring", daemon=True)
        self._thread.start()

    def _list(self) -> None:
        started = _clock()
        try:
            raw = keyring_mod.read_bytes(self.path, max_bytes=self._limits.max_keyring_bytes)
            ring = keyring_mod.listing(raw, timeout=self._limits.signature_timeout_s)
        except Exception:  # noqa: BLE001 - dropped: the verifier lists again and says why
            logger.debug("early keyring listing failed", exc_info=True)
            return
        self._done = (raw, started, ring)

    def result(self) -> tuple[bytes, float, keyring_mod.Keyring] | None:
        """Wait for the listing: ``(the bytes listed, start time, listing)``, or None (failed)."""
        self._thread.join()
        return self._done


class Preparation:
    """``verifier()`` and an ``EarlyListing`` of the keyring, started in threads (ADR 0175).

    ``airlock inspect`` starts it as soon as it knows its settings and imports the judge's modules
    meanwhile, so ``sqv --version`` and ``gpg --show-keys`` run beside those imports and each
    other; ``Judge.build(prepared=...)`` then takes the verifier (``verifier()``), which raises
    what ``openpgp.verifier()`` raised, at the point where the build would have chosen it.
    """

    def __init__(self, name: str, keyring: Path, *, limits: Limits) -> None:
        self.name, self.keyring, self.limits = name, keyring.absolute(), limits
        self._chosen: BaseVerifier | BaseException | None = None
        self._thread = threading.Thread(target=self._choose, name="airlock-verifier", daemon=True)
        self._listing = EarlyListing(keyring, limits=limits)
        self._thread.start()

    def _choose(self) -> None:
        try:
            self._chosen = verifier(self.name, limits=self.limits)
        except BaseException as exc:  # noqa: BLE001 - raised again by verifier(), in the caller
            self._chosen = exc

    def wait(self) -> None:
        """Wait for both threads (no child of theirs is left running)."""
        self._thread.join()
        self._listing.result()

    def verifier(self) -> BaseVerifier:
        """The verifier ``verifier(name, limits=limits)`` gives, with the early listing adopted.

        Raises:
            ConfigError, HostError: as ``verifier()``.
        """
        self.wait()
        chosen = self._chosen
        if isinstance(chosen, BaseVerifier):
            chosen.adopt(self._listing)
            return chosen
        if chosen is None:
            raise RuntimeError("the verifier thread ended without an answer")
        raise chosen


class VerifierName(enum.StrEnum):
    """Names accepted by ``verifier()``."""

    AUTO = "auto"
    SQV = "sqv"
    GPGV = "gpgv"


def verifier(name: str = "auto", *, limits: Limits | None = None) -> BaseVerifier:
    """The verifier called ``name``; ``auto`` prefers sqv (legacy CLI) and falls back to gpgv.

    Raises:
        ConfigError: unknown name.
        HostError: the requested tool is missing or unsupported.
    """
    from airlock.backends.openpgp.gpgv import GpgvVerifier
    from airlock.backends.openpgp.sqv import SqvVerifier

    try:
        chosen = VerifierName(name)
    except ValueError:
        raise ConfigError(f"Unknown signature verifier {name!r}", code="config.verifier") from None
    if chosen is VerifierName.SQV:
        SqvVerifier.check_available()
        return SqvVerifier(limits=limits)
    if chosen is VerifierName.GPGV:
        GpgvVerifier.check_available()
        return GpgvVerifier(limits=limits)
    try:
        SqvVerifier.check_available()
        return SqvVerifier(limits=limits)
    except HostError as exc:
        logger.info("sqv unusable (%s); falling back to gpgv", exc.message)
    GpgvVerifier.check_available()
    return GpgvVerifier(limits=limits)


def keyring_fingerprints(keyring: Path, *, limits: Limits | None = None) -> tuple[str, ...]:
    """Primary fingerprints (40 uppercase hex) in ``keyring``, in file order.

    Raises:
        SignatureError: missing, oversized or unreadable keyring.
    """
    lim = limits or Limits()
    ring = keyring_mod.load(
        keyring.absolute(), max_bytes=lim.max_keyring_bytes, timeout=lim.signature_timeout_s
    )
    return ring.primaries
