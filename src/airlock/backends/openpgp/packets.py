# SPDX-License-Identifier: MIT
"""A strict, bounded reader of detached OpenPGP signature files (RFC 4880 framing, v4 signatures).

Trusts nothing: the input is the untrusted ``SHA256SUMS.gpg`` / ``.asc`` as bytes.  This module does
no cryptography; it only splits the file into signature packets and reads, for each, the fields the
verifiers need to report *which* key signed *when*: version, signature type, public-key and hash
algorithms, the creation time and issuer from the **hashed** subpacket area (which the signature
covers), and the issuer key id / fingerprint from either area (used only to look the key up; the
cryptographic check is sqv's or gpgv's, and the result is cross-checked against theirs).

Refuses (``SignatureError``, ``reject.signature``): empty input, armour other than one
``PGP SIGNATURE`` block, bad base64 or CRC-24, any packet that is not a signature packet, partial or
indeterminate lengths, truncated packets, signature versions other than 4, signatures without a
hashed creation time, and more than ``MAX_SIGNATURES`` packets.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from dataclasses import dataclass

from airlock.errors import SignatureError

MAX_SIGNATURES = 16
SIGNATURE_TAG = 2
_ARMOR = re.compile(
    rb"\A\s*-----BEGIN PGP (?P<kind>[A-Z ]+)-----\r?\n"
    rb"(?P<headers>(?:[!-9;-~]+: [^\r\n]*\r?\n)*)"
    rb"\r?\n"
    rb"(?P<body>[A-Za-z0-9+/=\r\n]*?)"
    rb"(?:\r?\n=(?P<crc>[A-Za-z0-9+/]{4}))?\r?\n"
    rb"-----END PGP (?P=kind)-----\s*\Z"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignaturePacket:
    """The metadata of one v4 signature packet (not yet cryptographically verified)."""

    sig_type: int
    pubkey_algo: int
    hash_algo: int
    created: dt.datetime
    issuer_fingerprint: str | None
    issuer_key_id: str | None


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def dearmor(raw: bytes, *, kind: bytes) -> bytes:
    """Return the binary form of ``raw``: unchanged if binary, decoded if one armoured block.

    Raises:
        SignatureError: malformed armour, a different block kind, or a CRC mismatch.
    """
    if not raw.lstrip().startswith(b"-----BEGIN PGP "):
        return raw
    m = _ARMOR.match(raw)
    if m is None or m.group("kind") != kind:
        raise SignatureError(f"Malformed ASCII armour (expected one PGP {kind.decode()} block)")
    try:
        data = base64.b64decode(re.sub(rb"\s+", b"", m.group("body")), validate=True)
    except binascii.Error:
        raise SignatureError("Malformed ASCII armour: bad base64") from None
    if m.group("crc") is not None:
        want = int.from_bytes(base64.b64decode(m.group("crc")), "big")
        if _crc24(data) != want:
            raise SignatureError("Malformed ASCII armour: CRC-24 mismatch")
    return data


def split_packets(data: bytes) -> list[tuple[int, bytes]]:
    """Split binary OpenPGP data into ``(tag, body)``; refuse partial/indeterminate lengths."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        head = data[pos]
        pos += 1
        if not head & 0x80:
            raise SignatureError("Not OpenPGP data (bad packet header)")
        if head & 0x40:  # new format
            tag = head & 0x3F
            if pos >= len(data):
                raise SignatureError("Truncated OpenPGP packet header")
            first = data[pos]
            if first < 192:
                length, pos = first, pos + 1
            elif first < 224:
                if pos + 2 > len(data):
                    raise SignatureError("Truncated OpenPGP packet header")
                length, pos = ((first - 192) << 8) + data[pos + 1] + 192, pos + 2
            elif first == 255:
                if pos + 5 > len(data):
                    raise SignatureError("Truncated OpenPGP packet header")
                length, pos = int.from_bytes(data[pos + 1 : pos + 5], "big"), pos + 5
            else:
                raise SignatureError("Partial-length OpenPGP packets are not accepted here")
        else:  # old format
            tag, ltype = (head >> 2) & 0x0F, head & 0x03
            if ltype == 3:
                raise SignatureError("Indeterminate-length OpenPGP packets are not accepted")
            n = 1 << ltype
            if pos + n > len(data):
                raise SignatureError("Truncated OpenPGP packet header")
            length, pos = int.from_bytes(data[pos : pos + n], "big"), pos + n
        if pos + length > len(data):
            raise SignatureError("Truncated OpenPGP packet")
        out.append((tag, data[pos : pos + length]))
        pos += length
    return out


def _subpackets(area: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(area):
        first = area[pos]
        if first < 192:
            length, pos = first, pos + 1
        elif first < 255:
            if pos + 2 > len(area):
                raise SignatureError("Truncated signature subpacket")
            length, pos = ((first - 192) << 8) + area[pos + 1] + 192, pos + 2
        else:
            if pos + 5 > len(area):
                raise SignatureError("Truncated signature subpacket")
            length, pos = int.from_bytes(area[pos + 1 : pos + 5], "big"), pos + 5
        if length < 1 or pos + length > len(area):
            raise SignatureError("Truncated signature subpacket")
        out.append((area[pos] & 0x7F, area[pos + 1 : pos + length]))
        pos += length
    return out


def _parse_v4(body: bytes) -> SignaturePacket:
    if len(body) < 6 or body[0] != 4:
        version = body[0] if body else None
        raise SignatureError(f"Unsupported OpenPGP signature version {version}")
    sig_type, pubkey_algo, hash_algo = body[1], body[2], body[3]
    hlen = int.from_bytes(body[4:6], "big")
    hashed = body[6 : 6 + hlen]
    rest = body[6 + hlen :]
    if len(hashed) != hlen or len(rest) < 2:
        raise SignatureError("Truncated OpenPGP signature packet")
    ulen = int.from_bytes(rest[:2], "big")
    unhashed = rest[2 : 2 + ulen]
    if len(unhashed) != ulen:
        raise SignatureError("Truncated OpenPGP signature packet")
    created: dt.datetime | None = None
    fpr: str | None = None
    keyid: str | None = None
    for typ, value in _subpackets(hashed):
        if typ == 2 and len(value) == 4:
            created = dt.datetime.fromtimestamp(int.from_bytes(value, "big"), tz=dt.UTC)
    for typ, value in _subpackets(hashed) + _subpackets(unhashed):
        if typ == 33 and len(value) == 21 and value[0] == 4 and fpr is None:
            fpr = value[1:].hex().upper()
        elif typ == 16 and len(value) == 8 and keyid is None:
            keyid = value.hex().upper()
    if created is None:
        raise SignatureError("OpenPGP signature has no hashed creation time")
    return SignaturePacket(
        sig_type=sig_type,
        pubkey_algo=pubkey_algo,
        hash_algo=hash_algo,
        created=created,
        issuer_fingerprint=fpr,
        issuer_key_id=keyid,
    )


def parse_signatures(raw: bytes) -> tuple[SignaturePacket, ...]:
    """Parse a detached signature file (binary or armoured) into its signature packets.

    Raises:
        SignatureError: anything but 1..MAX_SIGNATURES well-formed v4 signature packets.
    """
    if not raw.strip():
        raise SignatureError("Signature file is empty")
    packets = split_packets(dearmor(raw, kind=b"SIGNATURE"))
    if not packets:
        raise SignatureError("Signature file holds no OpenPGP packet")
    if len(packets) > MAX_SIGNATURES:
        raise SignatureError(f"Signature file holds more than {MAX_SIGNATURES} packets")
    for tag, _ in packets:
        if tag != SIGNATURE_TAG:
            raise SignatureError(f"Signature file holds a non-signature OpenPGP packet (tag {tag})")
    return tuple(_parse_v4(body) for _, body in packets)
