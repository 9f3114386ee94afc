# SPDX-License-Identifier: MIT
"""The signature packet reader and the gpgv status parser, on real and hand-made input."""

from __future__ import annotations

import datetime as dt

import pytest

from airlock.backends.openpgp import gpgv, packets
from airlock.errors import SignatureError
from tests.support.keys import DATA, KeySet


def test_reads_issuer_time_and_hash(openpgp_keys: KeySet) -> None:
    sig = openpgp_keys.sign(
        DATA, openpgp_keys.good, faked_time="20250102T030405", digest_algo="SHA384"
    )
    [p] = packets.parse_signatures(sig)
    assert p.issuer_fingerprint == openpgp_keys.good
    assert p.issuer_key_id == openpgp_keys.good[-16:]
    assert p.created == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert (p.hash_algo, p.sig_type, p.pubkey_algo) == (9, 0, 22)


def test_armored_equals_binary(openpgp_keys: KeySet) -> None:
    sig = openpgp_keys.sign(DATA, openpgp_keys.good, armor=True)
    binary = packets.dearmor(sig, kind=b"SIGNATURE")
    assert packets.parse_signatures(sig) == packets.parse_signatures(binary)


def test_armor_crc_mismatch_refused(openpgp_keys: KeySet) -> None:
    sig = openpgp_keys.sign(DATA, openpgp_keys.good, armor=True)
    lines = sig.split(b"\n")
    crc_at = next(i for i, line in enumerate(lines) if line.startswith(b"="))
    lines[crc_at] = b"=AAAA"
    with pytest.raises(SignatureError, match="CRC"):
        packets.parse_signatures(b"\n".join(lines))


@pytest.mark.parametrize(
    "raw",
    [
        b"\x88",  # old-format header without a length
        b"\xc2\xff\x00\x00",  # new format five-octet length, truncated
        b"\xc2\xe1abc",  # partial length
        b"\x8b" + b"x" * 10,  # indeterminate length
        b"\xc2\x05\x03\x00\x08\x16\x00",  # version 3
        b"\xc2\x05\x04\x00\x16\x08\x00",  # v4, truncated hashed area
        b"\xc2\x08\x04\x00\x16\x08\x00\x00\x00\x00",  # v4 without a creation time
        b"\xc6\x01\x04",  # a public-key packet
    ],
)
def test_malformed_packets_refused(raw: bytes) -> None:
    with pytest.raises(SignatureError):
        packets.parse_signatures(raw)


def test_too_many_packets_refused(openpgp_keys: KeySet) -> None:
    sig = openpgp_keys.sign(DATA, openpgp_keys.good)
    assert len(packets.parse_signatures(sig * packets.MAX_SIGNATURES)) == packets.MAX_SIGNATURES
    with pytest.raises(SignatureError):
        packets.parse_signatures(sig * (packets.MAX_SIGNATURES + 1))


FPR = "8ACD" * 10
VALID = f"[GNUPG:] VALIDSIG {FPR} 2026-11-26 1795691016 0 4 0 22 8 00 {FPR}\n"
GOOD = f"[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG {FPR[-16:]} A <a@x>\n{VALID}"


def test_status_parser_accepts_good() -> None:
    [res] = gpgv.parse_status(GOOD.encode(), expected=1)
    assert res.fingerprint == FPR
    assert res.created == dt.datetime.fromtimestamp(1795691016, tz=dt.UTC)


@pytest.mark.parametrize(
    "extra", ["EXPKEYSIG", "REVKEYSIG", "EXPSIG", "BADSIG", "ERRSIG", "NO_PUBKEY"]
)
def test_status_parser_refuses(extra: str) -> None:
    with pytest.raises(SignatureError, match=extra):
        gpgv.parse_status((GOOD + f"[GNUPG:] {extra} {FPR[-16:]} x\n").encode(), expected=1)


def test_status_parser_refuses_sha1_and_count_mismatch() -> None:
    with pytest.raises(SignatureError, match="hash algorithm 2"):
        gpgv.parse_status(GOOD.replace(" 22 8 00 ", " 22 2 00 ").encode(), expected=1)
    with pytest.raises(SignatureError):
        gpgv.parse_status(GOOD.encode(), expected=2)
    with pytest.raises(SignatureError):
        gpgv.parse_status(b"", expected=1)
