# SPDX-License-Identifier: MIT
"""Target ``signature``: ``openpgp.packets.parse_signatures`` on arbitrary bytes (from the VM).

The judge parses both signature files itself before any verifier runs (ACCEPTED hash algorithms,
document signature types, no signature from the future), so the parser meets hostile bytes first.
Only ``SignatureError`` (``reject.signature``) may escape, with a one-line message.  An accepted
file holds 1 to ``MAX_SIGNATURES`` packets, each with a timezone-aware creation time and, where
present, an issuer fingerprint of 40 and a key id of 16 upper-case hex digits; the same bytes
armoured parse to the same packets, and an armoured file parses as its binary form does.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

from airlock.backends.openpgp import packets
from airlock.errors import SignatureError
from fuzz.common import FuzzFailure, check, check_error

_FPR = re.compile("[0-9A-F]{40}")
_KEYID = re.compile("[0-9A-F]{16}")


def armour(binary: bytes) -> bytes:
    """``binary`` as one ASCII-armoured signature block (with its CRC-24)."""
    body = base64.b64encode(binary)
    lines = b"\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    crc = base64.b64encode(packets._crc24(binary).to_bytes(3, "big"))
    return (
        b"-----BEGIN PGP SIGNATURE-----\n\n"
        + lines
        + b"\n="
        + crc
        + b"\n-----END PGP SIGNATURE-----\n"
    )


def test_one(data: bytes) -> None:
    """Parse ``data``; check an accepted file's packets and its armoured or binary twin."""
    try:
        parsed = packets.parse_signatures(data)
    except SignatureError as exc:
        check_error(exc, ("reject.signature",))  # refused, with a well-formed error
        return
    check(1 <= len(parsed) <= packets.MAX_SIGNATURES, f"{len(parsed)} packets accepted")
    for sig in parsed:
        check(sig.created.tzinfo is not None, "a naive creation time")
        fpr, keyid = sig.issuer_fingerprint, sig.issuer_key_id
        check(fpr is None or _FPR.fullmatch(fpr) is not None, f"fingerprint {fpr!r}")
        check(keyid is None or _KEYID.fullmatch(keyid) is not None, f"key id {keyid!r}")
    try:  # an accepted file's twins must be accepted too, as the same packets
        binary = packets.dearmor(data, kind=b"SIGNATURE")
        twins = (packets.parse_signatures(binary), packets.parse_signatures(armour(binary)))
    except SignatureError as exc:
        raise FuzzFailure(f"an accepted file's twin was refused: {exc.message}") from None
    check(twins[0] == parsed, "armoured and binary forms differ")
    check(twins[1] == parsed, "armour() does not read back")


def _subpacket(typ: int, value: bytes) -> bytes:
    return bytes([len(value) + 1, typ]) + value


def _packet(
    *,
    created: int = 1_796_000_000,
    hashed_extra: bytes = b"",
    unhashed: bytes | None = None,
    version: int = 4,
    sig_type: int = 0,
    old_format: bool = False,
) -> bytes:
    """One signature packet as gpg writes it (the signature's MPI is filler: never verified)."""
    fpr = bytes(range(20))
    hashed = _subpacket(33, b"\x04" + fpr) + _subpacket(2, created.to_bytes(4, "big"))
    hashed += hashed_extra
    if unhashed is None:
        unhashed = _subpacket(16, fpr[-8:])
    body = (
        bytes([version, sig_type, 22, 8])
        + len(hashed).to_bytes(2, "big")
        + hashed
        + len(unhashed).to_bytes(2, "big")
        + unhashed
        + b"\xab\xcd"  # the hash's first two bytes
        + b"\x00\xff"
        + b"\x5a" * 32
        + b"\x00\xff"
        + b"\xa5" * 32
    )
    if old_format:
        return bytes([0x80 | (2 << 2) | 1]) + len(body).to_bytes(2, "big") + body
    return b"\xc2" + bytes([len(body)]) + body  # new format, one-byte length (< 192)


def seeds() -> Iterator[bytes]:
    """Well-formed files in both encodings and the malformed shapes the parser refuses."""
    one = _packet()
    two = _packet() + _packet(created=1_796_000_001, old_format=True)
    yield from (one, two, armour(one), armour(two))
    yield b"-----BEGIN PGP SIGNATURE-----\nVersion: GnuPG\n\n" + armour(one).split(b"\n\n", 1)[1]
    yield armour(one).replace(b"\n=", b"\n=AAAA\n=", 1)  # a second CRC line
    yield armour(one)[:-20]  # no END line
    yield armour(one).replace(b"SIGNATURE", b"MESSAGE")
    yield armour(one).replace(b"=", b"=A", 1)  # a CRC that does not match
    yield _packet(version=3)
    yield _packet(sig_type=0x13)  # a certification: parsed, refused later by the judge
    yield _packet(created=0)
    yield _packet(created=2**32 - 1)
    yield _packet(unhashed=b"")  # no key id
    yield _packet(hashed_extra=_subpacket(2, b"\x00" * 3))  # a creation time of 3 bytes
    yield _packet(hashed_extra=b"\x00")  # a subpacket of length 0
    yield _packet(hashed_extra=b"\xff\x00\x00\x00\x05\x02")  # a five-byte length, truncated
    yield one[:-1]
    yield one[:3]
    yield b"\xc2\xff" + len(one).to_bytes(4, "big") + one[2:]  # a five-byte packet length
    yield b"\xc2\xe0" + one[2:]  # a partial length
    yield b"\x8b" + one[1:]  # old format, indeterminate length
    yield bytes([0xC0 | 6]) + one[1:]  # a public-key packet, not a signature
    yield one * (packets.MAX_SIGNATURES + 1)
    yield b"\x00" + one
    yield b""
    yield b" \n"
