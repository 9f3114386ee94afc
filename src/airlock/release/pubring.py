# SPDX-License-Identifier: MIT
"""Structural check of a binary OpenPGP public keyring before it is shipped in an image.

Trusts: nothing in the file.  Refuses: armoured input (gpg 2.2's ``--keyring``, which systemd 257
uses, cannot read it), secret-key packets (a private key must never end up in an image),
indeterminate or partial lengths, packets that do not belong in a transferable public key
(RFC 9580 §10.1), a first packet that is not a public key, and trailing garbage.

Fingerprints are computed here for v4 (SHA-1 over ``0x99 ‖ len16 ‖ body``) and v6 keys
(SHA-256 over ``0x9B ‖ len32 ‖ body``) so they can be cross-checked against the verifier's own
reading of the same file (``backends.openpgp.keyring_fingerprints``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from airlock.errors import ConfigError

TAG_SIGNATURE = 2
TAG_SECRET_KEY = 5
TAG_PUBLIC_KEY = 6
TAG_SECRET_SUBKEY = 7
TAG_TRUST = 12
TAG_USER_ID = 13
TAG_PUBLIC_SUBKEY = 14
TAG_USER_ATTRIBUTE = 17
ALLOWED_TAGS = frozenset(
    {TAG_SIGNATURE, TAG_PUBLIC_KEY, TAG_TRUST, TAG_USER_ID, TAG_PUBLIC_SUBKEY, TAG_USER_ATTRIBUTE}
)
MAX_KEYRING_BYTES = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Packet:
    """One OpenPGP packet: its tag and body."""

    tag: int
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicKeyring:
    """A structurally valid binary public keyring."""

    fingerprints: tuple[str, ...]
    raw: bytes


def _bad(why: str) -> ConfigError:
    return ConfigError(
        f"Refusing signing key: {why}",
        code="config.key",
        hint="give a binary public keyring, e.g. `gpg --export FPR > pubring.gpg`",
    )


def _length(data: bytes, pos: int, first: int) -> tuple[int, int]:
    """New-format body length at ``pos`` (``first`` is its first octet) → (length, header size)."""
    if first < 192:
        return first, 1
    if first < 224:
        if pos + 1 >= len(data):
            raise _bad("truncated packet length")
        return ((first - 192) << 8) + data[pos + 1] + 192, 2
    if first == 255:
        if pos + 4 >= len(data):
            raise _bad("truncated packet length")
        return int.from_bytes(data[pos + 1 : pos + 5], "big"), 5
    raise _bad("partial body lengths do not belong in a keyring")


def packets(data: bytes) -> tuple[Packet, ...]:
    """Split ``data`` into packets, refusing anything malformed."""
    out: list[Packet] = []
    pos = 0
    while pos < len(data):
        ctb = data[pos]
        if not ctb & 0x80:
            raise _bad(f"byte {pos} is not an OpenPGP packet header (armoured or not a key?)")
        if ctb & 0x40:  # new format
            tag = ctb & 0x3F
            if pos + 1 >= len(data):
                raise _bad("truncated packet header")
            length, size = _length(data, pos + 1, data[pos + 1])
            start = pos + 1 + size
        else:  # old format
            tag = (ctb >> 2) & 0x0F
            kind = ctb & 0x03
            if kind == 3:
                raise _bad("indeterminate packet length")
            size = (1, 2, 4)[kind]
            if pos + 1 + size > len(data):
                raise _bad("truncated packet header")
            length = int.from_bytes(data[pos + 1 : pos + 1 + size], "big")
            start = pos + 1 + size
        end = start + length
        if end > len(data):
            raise _bad(f"packet at byte {pos} runs past the end of the file")
        out.append(Packet(tag=tag, body=data[start:end]))
        pos = end
    return tuple(out)


def fingerprint(body: bytes) -> str:
    """Fingerprint of a public-key packet body (v4 or v6), uppercase hex."""
    if not body:
        raise _bad("empty public-key packet")
    if body[0] == 4:
        return (
            hashlib.sha1(  # noqa: S324 - the v4 fingerprint is defined as SHA-1
                b"\x99" + len(body).to_bytes(2, "big") + body
            )
            .hexdigest()
            .upper()
        )
    if body[0] == 6:
        return hashlib.sha256(b"\x9b" + len(body).to_bytes(4, "big") + body).hexdigest().upper()
    raise _bad(f"unsupported key version {body[0]}")


def parse(data: bytes) -> PublicKeyring:
    """Check ``data`` is a binary public keyring and return its primary fingerprints.

    Raises:
        ConfigError: ``config.key`` for anything else.
    """
    if not data:
        raise _bad("the file is empty")
    if len(data) > MAX_KEYRING_BYTES:
        raise _bad(f"larger than {MAX_KEYRING_BYTES} bytes")
    if data.lstrip().startswith(b"-----BEGIN"):
        raise _bad("armoured keyrings are not read by systemd 257's gpg --keyring")
    found = packets(data)
    if any(p.tag in (TAG_SECRET_KEY, TAG_SECRET_SUBKEY) for p in found):
        raise _bad("it contains SECRET key material; export only the public key")
    if found[0].tag != TAG_PUBLIC_KEY:
        raise _bad("the first packet is not a public key")
    fprs: list[str] = []
    for packet in found:
        if packet.tag not in ALLOWED_TAGS:
            raise _bad(f"packet type {packet.tag} does not belong in a public keyring")
        if packet.tag == TAG_PUBLIC_KEY:
            fprs.append(fingerprint(packet.body))
    if len(set(fprs)) != len(fprs):
        raise _bad("the same primary key appears twice")
    return PublicKeyring(fingerprints=tuple(fprs), raw=data)
