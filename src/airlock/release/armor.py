# SPDX-License-Identifier: MIT
"""ASCII armour for detached signatures (RFC 9580 §6), so ``SHA256SUMS.sha256.asc`` carries
exactly the signature packets of ``SHA256SUMS.gpg``.

Trusts: its input is signature packets the publisher just made.  Pure and deterministic.
"""

from __future__ import annotations

import base64

CRC24_INIT = 0xB704CE
CRC24_POLY = 0x1864CFB
LINE_CHARS = 64


def crc24(data: bytes) -> int:
    """The OpenPGP CRC-24 of ``data``."""
    crc = CRC24_INIT
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= CRC24_POLY
    return crc & 0xFFFFFF


def armor_signature(packets: bytes) -> bytes:
    """``-----BEGIN PGP SIGNATURE-----`` armour around binary signature packets."""
    body = base64.b64encode(packets).decode("ascii")
    lines = [body[i : i + LINE_CHARS] for i in range(0, len(body), LINE_CHARS)]
    checksum = base64.b64encode(crc24(packets).to_bytes(3, "big")).decode("ascii")
    text = "\n".join(
        [
            "-----BEGIN PGP SIGNATURE-----",
            "",
            *lines,
            f"={checksum}",
            "-----END PGP SIGNATURE-----",
            "",
        ]
    )
    return text.encode("ascii")
