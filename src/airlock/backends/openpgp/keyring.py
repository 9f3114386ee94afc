# SPDX-License-Identifier: MIT
"""Read the host's trusted keyring: primary keys, their subkeys and whether each is usable now.

Trusts the keyring file (it comes from the host's read-only image, never from the VM) but still
bounds its size and runs gpg with an empty temporary home, ``--no-options`` and a timeout.
``gpg --show-keys --with-colons`` is used rather than our own parser because it evaluates
self-signatures, expiry and revocation exactly as gpgv will.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from airlock import proc
from airlock.backends.openpgp import packets
from airlock.errors import AirlockError, SignatureError
from airlock.text import display

GPG = "gpg"


@dataclass(frozen=True, slots=True, kw_only=True)
class Key:
    """One (sub)key: its fingerprint, its primary's fingerprint and gpg's validity letter."""

    fingerprint: str
    primary: str
    validity: str  # gpg colon field 2: "e" expired, "r" revoked, "-" / "u" / ... otherwise

    @property
    def usable(self) -> bool:
        """Neither expired nor revoked (nor disabled/invalid) at the time of reading."""
        return self.validity not in ("e", "r", "d", "i", "n")


@dataclass(frozen=True, slots=True, kw_only=True)
class Keyring:
    """The keys of one keyring file, read once."""

    binary: bytes
    keys: tuple[Key, ...]

    @property
    def primaries(self) -> tuple[str, ...]:
        """Primary fingerprints in file order, without duplicates."""
        return tuple(dict.fromkeys(k.primary for k in self.keys))

    def lookup(self, *, fingerprint: str | None, key_id: str | None) -> Key | None:
        """The key with this fingerprint (preferred) or 64-bit key id, if exactly one matches."""
        if fingerprint is not None:
            hits = [k for k in self.keys if k.fingerprint == fingerprint]
        elif key_id is not None:
            hits = [k for k in self.keys if k.fingerprint.endswith(key_id)]
        else:
            return None
        return hits[0] if len(hits) == 1 else None

    def primary(self, fingerprint: str) -> Key | None:
        """The primary key with this fingerprint."""
        for k in self.keys:
            if k.fingerprint == fingerprint == k.primary:
                return k
        return None


def read_bytes(keyring: Path, *, max_bytes: int) -> bytes:
    """Read the keyring file, refusing a missing, non-regular or oversized one."""
    try:
        fd = os.open(keyring, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise SignatureError(
            f"Cannot open keyring {display(os.fspath(keyring))}: {exc.strerror}"
        ) from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SignatureError(f"Keyring {display(os.fspath(keyring))} is not a regular file")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise SignatureError(f"Keyring is larger than {max_bytes} bytes")
    if not data.strip():
        raise SignatureError("Keyring is empty")
    return data


def _parse_colons(out: bytes) -> tuple[Key, ...]:
    keys: list[Key] = []
    primary: str | None = None
    pending: tuple[str, bool] | None = None  # (validity, is_primary) awaiting its fpr line
    for line in out.decode("ascii", errors="replace").splitlines():
        fields = line.split(":")
        if fields[0] in ("pub", "sub") and len(fields) > 1:
            pending = (fields[1], fields[0] == "pub")
        elif fields[0] == "fpr" and pending is not None and len(fields) > 9:
            fpr = fields[9].upper()
            validity, is_primary = pending
            pending = None
            if is_primary:
                primary = fpr
            if primary is None or len(fpr) != 40:
                raise SignatureError("Unexpected gpg --show-keys output for the keyring")
            keys.append(Key(fingerprint=fpr, primary=primary, validity=validity))
    return tuple(keys)


def load(keyring: Path, *, max_bytes: int, timeout: float) -> Keyring:
    """Read and list ``keyring`` (binary or armoured).

    Raises:
        SignatureError: missing, oversized, malformed or keyless keyring, or gpg failed.
    """
    return listing(read_bytes(keyring, max_bytes=max_bytes), timeout=timeout)


def listing(raw: bytes, *, timeout: float) -> Keyring:
    """List the keyring file content ``raw`` (as ``read_bytes`` returned it) with gpg.

    Raises:
        SignatureError: malformed or keyless keyring, or gpg failed.
    """
    binary = packets.dearmor(raw, kind=b"PUBLIC KEY BLOCK")
    home = Path(tempfile.mkdtemp(prefix="airlock-gpg-"))
    try:
        (home / "keyring.gpg").write_bytes(binary)
        try:
            res = proc.run(
                [
                    GPG,
                    "--homedir",
                    home,
                    "--no-options",
                    "--batch",
                    "--no-tty",
                    "--quiet",
                    "--no-auto-check-trustdb",
                    "--with-colons",
                    "--fixed-list-mode",
                    "--with-subkey-fingerprint",
                    "--show-keys",
                    home / "keyring.gpg",
                ],
                timeout=timeout,
            )
        except AirlockError as exc:
            raise SignatureError(f"Cannot read the keyring: {exc.message}") from None
    finally:
        shutil.rmtree(home, ignore_errors=True)
    keys = _parse_colons(res.stdout)
    if not keys:
        raise SignatureError("Keyring holds no public key")
    return Keyring(binary=binary, keys=keys)
