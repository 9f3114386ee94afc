# SPDX-License-Identifier: MIT
"""Throwaway OpenPGP keys and signatures for tests (made on the fly; nothing is committed).

``make_key(tmp)`` is the simple entry point.  ``KeySet`` (built once per session by the
``openpgp_keys`` fixture below, or directly by ``KeySet.build``) holds the awkward cases: a
certify-only primary with a signing subkey, an expired key, a revoked key, and a key that is not
in the keyring.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from airlock.backends.openpgp import gpg

#: The bytes that ``KeySet.revoked_signature`` signs (a stand-in SHA256SUMS).
DATA = b"0" * 64 + b" *foo_1.img\n"


def kill_agent(gnupghome: Path) -> None:
    """Stop the agent of a throwaway home (safe to call when none runs)."""
    gpg.kill_agent(gnupghome)


def make_key(tmp: Path, uid: str = "Test <test@example.invalid>") -> tuple[Path, str, Path]:
    """A fresh key in ``tmp/gnupg``: returns (gnupghome, primary fingerprint, binary pubring)."""
    home = tmp / "gnupg"
    fpr = gpg.generate_key(home, uid)
    pubring = tmp / "pubring.gpg"
    pubring.write_bytes(gpg.export_public(home, [fpr]))
    return home, fpr, pubring


def _revoke(home: Path, fpr: str) -> None:
    cert = (home / "openpgp-revocs.d" / f"{fpr}.rev").read_text()
    cert = cert.replace(":-----BEGIN", "-----BEGIN")
    subprocess.run(
        ["gpg", "--homedir", os.fspath(home), "--batch", "--quiet", "--import"],
        input=cert.encode(),
        check=True,
        capture_output=True,
        timeout=60,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySet:
    """Keys for signature tests, all in one throwaway home."""

    home: Path
    good: str  # ed25519 signing primary, created 2024-01-01 (so it can sign "in the past")
    second: str  # another trusted key (for two-signature files)
    subkeyed: str  # certify-only primary whose signing subkey is ``subkey``
    subkey: str
    expired: str  # made in 2020 with a one-day lifetime
    revoked: str  # revocation in the keyring
    stranger: str  # not in ``keyring``
    keyring: Path  # binary: good, second, subkeyed, expired, revoked
    keyring_armored: Path
    revoked_signature: bytes  # over DATA, made before the revocation

    @classmethod
    def build(cls, tmp: Path) -> KeySet:
        """Generate every key (about a quarter of a second) and write the keyrings."""
        home = tmp / "gnupg"
        good = gpg.generate_key(home, "Good <good@example.invalid>", faked_time="20240101T000000")
        second = gpg.generate_key(home, "Second <second@example.invalid>")
        subkeyed = gpg.generate_key(home, "Sub <sub@example.invalid>", usage="cert")
        gpg.add_subkey(home, subkeyed)
        expired = gpg.generate_key(
            home, "Old <old@example.invalid>", expire="1d", faked_time="20200101T120000"
        )
        revoked = gpg.generate_key(home, "Rev <rev@example.invalid>")
        revoked_signature = gpg.sign(DATA, gnupghome=home, signer=revoked, armor=False)
        _revoke(home, revoked)
        stranger = gpg.generate_key(home, "Stranger <stranger@example.invalid>")
        listing = subprocess.run(
            [
                "gpg",
                "--homedir",
                os.fspath(home),
                "--batch",
                "--with-colons",
                "--with-subkey-fingerprint",
                "--list-keys",
                subkeyed,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.splitlines()
        subfprs = [
            line.split(":")[9]
            for i, line in enumerate(listing)
            if line.startswith("fpr:") and i > 0 and listing[i - 1].startswith("sub:")
        ]
        ring = gpg.export_public(home, [good, second, subkeyed, expired, revoked])
        keyring = tmp / "keyring.gpg"
        keyring.write_bytes(ring)
        armored = tmp / "keyring.asc"
        armored.write_bytes(
            subprocess.run(
                [
                    "gpg",
                    "--homedir",
                    os.fspath(home),
                    "--batch",
                    "--armor",
                    "--export",
                    good,
                    second,
                    subkeyed,
                    expired,
                    revoked,
                ],
                check=True,
                capture_output=True,
                timeout=60,
            ).stdout
        )
        return cls(
            home=home,
            good=good,
            second=second,
            subkeyed=subkeyed,
            subkey=subfprs[0],
            expired=expired,
            revoked=revoked,
            stranger=stranger,
            keyring=keyring,
            keyring_armored=armored,
            revoked_signature=revoked_signature,
        )

    def sign(
        self,
        data: bytes,
        signer: str,
        *,
        armor: bool = False,
        digest_algo: str | None = None,
        faked_time: str | None = None,
    ) -> bytes:
        """A detached signature by ``signer`` (a fingerprint; append ``!`` to force a subkey)."""
        return gpg.sign(
            data,
            gnupghome=self.home,
            signer=signer,
            armor=armor,
            digest_algo=digest_algo,
            faked_time=faked_time,
        )


@pytest.fixture(scope="session")
def openpgp_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeySet]:
    """Every key the signature tests need, generated once per session.

    Use from another package's conftest.py with ``from tests.support.keys import openpgp_keys``.
    """
    keys = KeySet.build(tmp_path_factory.mktemp("openpgp"))
    yield keys
    kill_agent(keys.home)
