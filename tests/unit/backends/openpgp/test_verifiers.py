# SPDX-License-Identifier: MIT
"""Both verifiers, real sqv and gpgv, against the signature tricks C1–C14 (design.md#catalogue)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from airlock.backends.openpgp import (
    CLOCK_SKEW,
    BaseVerifier,
    ValidSignature,
    Work,
    keyring_fingerprints,
    packets,
    verifier,
)
from airlock.backends.openpgp import keyring as keyring_mod
from airlock.errors import SignatureError
from airlock.limits import Limits
from tests.support.keys import DATA, KeySet

NAMES = ("sqv", "gpgv")
Case = Callable[[KeySet], tuple[bytes, bytes]]  # keys -> (signature, data)


@pytest.fixture(params=NAMES)
def v(request: pytest.FixtureRequest) -> BaseVerifier:
    return verifier(str(request.param))


# ---------------------------------------------------------------- accepted


def test_good_signature_names_primary_and_time(v: BaseVerifier, openpgp_keys: KeySet) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    sig = openpgp_keys.sign(DATA, openpgp_keys.good)
    [res] = v.verify(sig, DATA, openpgp_keys.keyring)
    assert res.fingerprint == openpgp_keys.good
    assert res.hash_algo == 8
    assert before - dt.timedelta(seconds=2) <= res.created <= dt.datetime.now(dt.UTC)
    assert res.created.tzinfo is dt.UTC


def test_subkey_signature_reports_the_primary(v: BaseVerifier, openpgp_keys: KeySet) -> None:
    sig = openpgp_keys.sign(DATA, openpgp_keys.subkey + "!")
    [res] = v.verify(sig, DATA, openpgp_keys.keyring)
    assert res.fingerprint == openpgp_keys.subkeyed != openpgp_keys.subkey


def test_two_good_signatures(v: BaseVerifier, openpgp_keys: KeySet) -> None:
    sig = openpgp_keys.sign(DATA, openpgp_keys.good) + openpgp_keys.sign(
        DATA, openpgp_keys.second, digest_algo="SHA512"
    )
    res = v.verify(sig, DATA, openpgp_keys.keyring)
    assert {(r.fingerprint, r.hash_algo) for r in res} == {
        (openpgp_keys.good, 8),
        (openpgp_keys.second, 10),
    }


def test_armored_signature_and_armored_keyring(v: BaseVerifier, openpgp_keys: KeySet) -> None:
    sig = openpgp_keys.sign(DATA, openpgp_keys.good, armor=True)
    assert sig.startswith(b"-----BEGIN PGP SIGNATURE-----")
    [res] = v.verify(sig, DATA, openpgp_keys.keyring_armored)  # gpgv alone could not read it
    assert res.fingerprint == openpgp_keys.good


def test_created_is_the_signature_time(v: BaseVerifier, openpgp_keys: KeySet) -> None:
    sig = openpgp_keys.sign(DATA, openpgp_keys.good, faked_time="20250102T030405")
    [res] = v.verify(sig, DATA, openpgp_keys.keyring)
    assert res.created == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_both_verifiers_agree(openpgp_keys: KeySet) -> None:
    sig = (
        openpgp_keys.sign(DATA, openpgp_keys.good, faked_time="20250102T030405")
        + openpgp_keys.sign(DATA, openpgp_keys.subkey + "!", digest_algo="SHA384")
        + openpgp_keys.sign(DATA, openpgp_keys.second)
    )
    results = [verifier(n).verify(sig, DATA, openpgp_keys.keyring) for n in NAMES]
    assert results[0] == results[1]
    assert len(results[0]) == 3


# ---------------------------------------------------------------- refused

REFUSED: dict[str, Case] = {
    "tampered-data": lambda k: (k.sign(DATA, k.good), DATA + b"x"),
    "corrupted-signature": lambda k: (_flip_last(k.sign(DATA, k.good)), DATA),
    "wrong-key": lambda k: (k.sign(DATA, k.stranger), DATA),
    "expired-key": lambda k: (k.sign(DATA, k.expired, faked_time="20200101T130000"), DATA),
    "revoked-key": lambda k: (k.revoked_signature, DATA),
    "sha1": lambda k: (k.sign(DATA, k.good, digest_algo="SHA1"), DATA),
    "good-plus-unknown": lambda k: (k.sign(DATA, k.good) + k.sign(DATA, k.stranger), DATA),
    "good-plus-bad": lambda k: (k.sign(DATA, k.good) + k.sign(DATA + b"x", k.second), DATA),
    "same-key-twice": lambda k: (k.sign(DATA, k.good) + k.sign(DATA, k.good), DATA),
    "empty": lambda k: (b"", DATA),
    "whitespace": lambda k: (b"\n \n", DATA),
    "html": lambda k: (b"<html><body>404 Not Found</body></html>\n", DATA),
    "garbage": lambda k: (bytes(range(256)) * 4, DATA),
    "truncated": lambda k: (k.sign(DATA, k.good)[:-10], DATA),
    "public-key-as-signature": lambda k: (k.keyring.read_bytes(), DATA),
    "armored-wrong-kind": lambda k: (k.keyring_armored.read_bytes(), DATA),
    "oversized": lambda k: (k.sign(DATA, k.good) + b"\0" * (Limits().max_signature_bytes), DATA),
}


def _flip_last(sig: bytes) -> bytes:
    return sig[:-1] + bytes([sig[-1] ^ 0x01])


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused(v: BaseVerifier, openpgp_keys: KeySet, case: str) -> None:
    sig, data = REFUSED[case](openpgp_keys)
    with pytest.raises(SignatureError) as info:
        v.verify(sig, data, openpgp_keys.keyring)
    assert info.value.code == "reject.signature"
    assert "\n" not in info.value.message


@pytest.mark.parametrize("ring", ["missing", "empty", "garbage", "oversized", "directory"])
def test_bad_keyring_is_a_signature_error(
    v: BaseVerifier, openpgp_keys: KeySet, tmp_path: Path, ring: str
) -> None:
    path = tmp_path / "ring.gpg"
    if ring == "empty":
        path.write_bytes(b"")
    elif ring == "garbage":
        path.write_bytes(b"<html>not a key</html>")
    elif ring == "oversized":
        path.write_bytes(openpgp_keys.keyring.read_bytes() * 20000)
    elif ring == "directory":
        path.mkdir()
    sig = openpgp_keys.sign(DATA, openpgp_keys.good)
    with pytest.raises(SignatureError):
        v.verify(sig, DATA, path)


def test_keyring_without_the_signer(v: BaseVerifier, openpgp_keys: KeySet, tmp_path: Path) -> None:
    """C7: the key exists, but not in *this* keyring."""
    from airlock.backends.openpgp import gpg

    ring = tmp_path / "second-only.gpg"
    ring.write_bytes(gpg.export_public(openpgp_keys.home, [openpgp_keys.second]))
    sig = openpgp_keys.sign(DATA, openpgp_keys.good)
    with pytest.raises(SignatureError):
        v.verify(sig, DATA, ring)


# ------------------------------------------- each layer's detector fires on its own


def _work(
    keys: KeySet, sig: bytes, data: bytes, tmp_path: Path, not_after: dt.datetime | None = None
) -> Work:
    (tmp_path / "s").write_bytes(sig)
    (tmp_path / "d").write_bytes(data)
    ring = keyring_mod.load(keys.keyring, max_bytes=1 << 20, timeout=30)
    return Work(
        signature_file=tmp_path / "s",
        data_file=tmp_path / "d",
        keyring_file=keys.keyring.absolute(),
        keyring=ring,
        sigs=packets.parse_signatures(sig),
        timeout_s=30,
        not_after=not_after or dt.datetime.now(dt.UTC) + CLOCK_SKEW,
    )


@pytest.mark.parametrize(
    ("case", "tool_refuses"),
    [
        # (case, {verifier: does the tool alone refuse it?}) — the template's own checks cover
        # what a tool accepts: sqv accepts expired keys; gpgv exits 0 for expired/revoked/SHA-1
        # and only its status lines (which we parse) say otherwise.
        ("tampered-data", {"sqv": True, "gpgv": True}),
        ("wrong-key", {"sqv": True, "gpgv": True}),
        ("good-plus-unknown", {"sqv": True, "gpgv": True}),
        ("expired-key", {"sqv": False, "gpgv": True}),
        ("revoked-key", {"sqv": True, "gpgv": True}),
        ("sha1", {"sqv": True, "gpgv": True}),
    ],
)
def test_tool_layer_alone(
    v: BaseVerifier,
    openpgp_keys: KeySet,
    tmp_path: Path,
    case: str,
    tool_refuses: dict[str, bool],
) -> None:
    """Negative control for the layering: run ``_verify`` without the template's pre-checks."""
    sig, data = REFUSED[case](openpgp_keys)
    work = _work(openpgp_keys, sig, data, tmp_path)
    name = "sqv" if type(v).__name__.startswith("Sqv") else "gpgv"
    if tool_refuses[name]:
        with pytest.raises(SignatureError):
            v._verify(work)
    else:
        assert v._verify(work)
        with pytest.raises(SignatureError):
            v.verify(sig, data, openpgp_keys.keyring)


def test_future_signature_tool_layer_alone(
    v: BaseVerifier, openpgp_keys: KeySet, tmp_path: Path
) -> None:
    """sqv gets the bound as ``--not-after``; gpgv cannot, and takes it: the template refuses."""
    now = dt.datetime.now(dt.UTC)
    ahead = (now + dt.timedelta(minutes=2)).strftime("%Y%m%dT%H%M%S")
    sig = openpgp_keys.sign(DATA, openpgp_keys.good, faked_time=ahead)
    work = _work(openpgp_keys, sig, DATA, tmp_path, not_after=now + dt.timedelta(minutes=1))
    if type(v).__name__.startswith("Sqv"):
        with pytest.raises(SignatureError):
            v._verify(work)
        later = _work(openpgp_keys, sig, DATA, tmp_path, not_after=now + dt.timedelta(minutes=5))
        assert v._verify(later)  # control: the bound, not the signature, made sqv refuse
    else:
        assert v._verify(work)
    with pytest.raises(SignatureError, match="from the future"):
        v.verify(sig, DATA, openpgp_keys.keyring, now=now - CLOCK_SKEW)
    assert v.verify(sig, DATA, openpgp_keys.keyring, now=now)


def test_keyring_fingerprints(openpgp_keys: KeySet) -> None:
    fprs = keyring_fingerprints(openpgp_keys.keyring)
    assert fprs == (
        openpgp_keys.good,
        openpgp_keys.second,
        openpgp_keys.subkeyed,
        openpgp_keys.expired,
        openpgp_keys.revoked,
    )
    assert keyring_fingerprints(openpgp_keys.keyring_armored) == fprs
    assert openpgp_keys.subkey not in fprs


def test_unknown_verifier_name() -> None:
    from airlock.errors import ConfigError

    with pytest.raises(ConfigError):
        verifier("pgpainless")


def test_auto_prefers_sqv() -> None:
    assert type(verifier()).__name__ == "SqvVerifier"


# ------------------------------------------------------------- the template itself


class _Crashing(BaseVerifier):
    def _verify(self, work: Work) -> list[ValidSignature]:
        raise RuntimeError("boom")


class _Liar(BaseVerifier):
    """Claims the signature was made a second later than the packet says."""

    def _verify(self, work: Work) -> list[ValidSignature]:
        return [
            ValidSignature(
                fingerprint=work.keyring.keys[0].primary,
                created=s.created + dt.timedelta(seconds=1),
                hash_algo=s.hash_algo,
            )
            for s in work.sigs
        ]


class _Echo(BaseVerifier):
    """Returns exactly the expected answer: the positive control for the cross-check."""

    def _verify(self, work: Work) -> list[ValidSignature]:
        return [
            ValidSignature(
                fingerprint=work.keyring.keys[0].primary, created=s.created, hash_algo=s.hash_algo
            )
            for s in work.sigs
        ]


def test_template_wraps_any_exception(openpgp_keys: KeySet) -> None:
    sig = openpgp_keys.sign(DATA, openpgp_keys.good)
    with pytest.raises(SignatureError, match="RuntimeError"):
        _Crashing().verify(sig, DATA, openpgp_keys.keyring)


def test_template_cross_check_fires(openpgp_keys: KeySet) -> None:
    sig = openpgp_keys.sign(DATA, openpgp_keys.good)
    assert _Echo().verify(sig, DATA, openpgp_keys.keyring)[0].fingerprint == openpgp_keys.good
    with pytest.raises(SignatureError, match="does not match"):
        _Liar().verify(sig, DATA, openpgp_keys.keyring)


def test_limits_are_honoured(openpgp_keys: KeySet) -> None:
    sig = openpgp_keys.sign(DATA, openpgp_keys.good)
    tight = Limits(max_signature_bytes=len(sig) - 1)
    with pytest.raises(SignatureError, match="larger"):
        verifier("sqv", limits=tight).verify(sig, DATA, openpgp_keys.keyring)
    ring_size = openpgp_keys.keyring.stat().st_size
    with pytest.raises(SignatureError, match="larger"):
        verifier("gpgv", limits=Limits(max_keyring_bytes=ring_size - 1)).verify(
            sig, DATA, openpgp_keys.keyring
        )
