# SPDX-License-Identifier: MIT
"""``Judge``: the gate bound once to this host's trusted inputs, used by every caller alike.

The pipeline's inspect step, ``airlock inspect`` and the benchmark build it with ``Judge.build``
from the same inputs: the host's transfer definitions (with its os-release for specifiers), the
pinned keyring, the signature verifier *with the limits*, the ``[policy]`` settings, the
``[limits]`` and, for the pipeline, the signature file names its systemd-sysupdate reads.  What
changes from run to run (the floor, the installed version, the newest signature time) is passed to
``judge()`` as a ``Baseline``.  The checks themselves are ``trusted.verify.judge``.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from airlock.backends import openpgp
from airlock.backends.openpgp import SignatureVerifier
from airlock.backends.openpgp.gpgv import GpgvVerifier
from airlock.errors import ConfigError, HostError
from airlock.formats import definitions, dialect
from airlock.formats.definitions import Transfer
from airlock.limits import Limits
from airlock.text import display
from airlock.trusted import verify
from airlock.trusted.policy import Baseline, Policy, PolicyConfig
from airlock.trusted.release import VerifiedRelease
from airlock.untrusted import candidate


def load_transfers(definitions_dir: Path, os_release: Path) -> tuple[Transfer, ...]:
    """The host's transfer definitions, with ``%A``-style specifiers from its os-release.

    Raises:
        ConfigError: ``config.os-release`` (unreadable), ``config.definition`` (malformed, or no
            enabled transfer at all).
    """
    try:
        text = os_release.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise ConfigError(
            f"Failed to read {display(os.fspath(os_release))}: {why}", code="config.os-release"
        ) from exc
    specifiers = definitions.Specifiers.from_os_release(text)
    transfers = definitions.load_dir(definitions_dir, specifiers=specifiers)
    if not any(t.enabled for t in transfers):
        raise ConfigError(
            f"No enabled transfer definition in {display(os.fspath(definitions_dir))}",
            code="config.definition",
        )
    return transfers


def weaknesses(
    policy: PolicyConfig,
    verifier: SignatureVerifier,
    appliers: tuple[dialect.Dialect, ...] = (),
) -> tuple[str, ...]:
    """What the host's settings leave weaker than they look (docs/adr/0161); shown, not refused.

    Each run reports them as notices of the inspect step, and ``airlock status`` lists them.
    """
    out = []
    if not policy.trusted_fingerprints:
        out.append(
            "every key in the keyring counts as a signer ([policy] trusted_fingerprints is empty)"
        )
    if policy.verifier == openpgp.VerifierName.AUTO and isinstance(verifier, GpgvVerifier):
        out.append(
            "signatures are checked with gpgv: sqv is missing or unsupported ([policy] verifier"
            " = auto falls back)"
        )
    for rules in appliers:
        if not rules.verified:
            out.append(
                f"systemd-sysupdate {rules.major} is newer than any version whose rules airlock"
                f" models ({dialect.NEWEST}); the judge applies {rules.since}'s"
            )
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Judge:
    """The gate with everything it trusts; ``judge()`` gives a ``VerifiedRelease`` or raises."""

    transfers: tuple[Transfer, ...]
    keyring: Path
    verifier: SignatureVerifier
    policy: PolicyConfig
    limits: Limits
    appliers: tuple[dialect.Dialect, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        definitions_dir: Path,
        os_release: Path,
        keyring: Path,
        policy: PolicyConfig,
        limits: Limits,
        appliers: tuple[dialect.Dialect, ...] = (),
        prepared: openpgp.Preparation | None = None,
    ) -> Judge:
        """Load the definitions, check the keyring, pick the verifier (with ``limits``).

        ``prepared`` (``airlock inspect``, which judges at once) chose the verifier and listed the
        keyring in threads, for the same keyring, verifier name and limits (ADR 0175).

        Raises:
            ConfigError: unusable definitions, os-release or keyring; unknown verifier.
            HostError: the chosen verification tool is missing.
        """
        try:
            if prepared is not None and (
                prepared.keyring != keyring.absolute()
                or prepared.name != policy.verifier
                or prepared.limits != limits
            ):
                raise RuntimeError("the verifier was prepared for another keyring or settings")
            transfers = load_transfers(definitions_dir, os_release)
            if not keyring.is_file():
                raise ConfigError(
                    f"Keyring {display(os.fspath(keyring))} is not a file", code="config.keyring"
                )
        except BaseException:
            if prepared is not None:
                prepared.wait()  # no child of its threads outlives the failed build
            raise
        if prepared is not None:
            verifier: openpgp.BaseVerifier = prepared.verifier()
        else:
            verifier = openpgp.verifier(policy.verifier, limits=limits)
        return cls(
            transfers=transfers,
            keyring=keyring.absolute(),
            verifier=verifier,
            policy=policy,
            limits=limits,
            appliers=appliers,
        )

    @property
    def warnings(self) -> tuple[str, ...]:
        """The host settings' weaknesses (``weaknesses``), reported on every run."""
        return weaknesses(self.policy, self.verifier, self.appliers)

    def list_keyring(self) -> None:
        """List the keyring now, for the next ``judge()``: the pipeline's freeze (ADR 0176).

        The verifier takes this listing as its own only if it was made from the very bytes the
        keyring holds when it verifies, and not longer ago than ``openpgp.REUSE_S``
        (``EarlyListing``, ADR 0175); a failed listing is dropped and the verifier lists the
        keyring itself and says why.  Never raises.
        """
        if isinstance(self.verifier, openpgp.BaseVerifier):
            early = openpgp.EarlyListing(self.keyring, limits=self.limits)
            early.result()  # its child has ended when this returns
            self.verifier.adopt(early)

    def droppable(self, dir_fd: int) -> tuple[str, ...]:
        """Dot-temporaries and stale versions the host may unlink from the writable snapshot.

        Raises:
            InspectionError: the walk refused the snapshot.
            HostError: ``host.snapshot`` when the directory cannot be read.
        """
        try:
            return candidate.droppable(dir_fd, transfers=self.transfers, limits=self.limits)
        except OSError as exc:
            raise HostError(
                f"Failed to read the snapshot: {exc.strerror}", code="host.snapshot"
            ) from exc

    def judge(self, dir_fd: int, *, baseline: Baseline, now: datetime.datetime) -> VerifiedRelease:
        """Judge the frozen snapshot open at ``dir_fd`` (see ``trusted.verify.judge``).

        Raises:
            RejectedError: a subclass with a ``reject.*`` code; nothing may be applied.
            HostError: the snapshot could not be synced or read.
        """
        policy = Policy.of(self.policy, baseline, appliers=self.appliers)
        return verify.judge(
            dir_fd,
            transfers=self.transfers,
            keyring=self.keyring,
            policy=policy,
            limits=self.limits,
            verifier=self.verifier,
            now=now,
        )
