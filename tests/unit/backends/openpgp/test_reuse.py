# SPDX-License-Identifier: MIT
"""A verifier reuses its keyring listing and its answer for identical input (ADR 0151).

``SHA256SUMS.gpg`` and ``SHA256SUMS.sha256.asc`` usually hold the same packets; the second costs
neither gpg nor the tool.  Anything that differs — the packets, the data, the keyring's bytes, the
reference time — or a listing older than ``REUSE_S`` runs them again.
"""

from __future__ import annotations

import base64
import datetime as dt
import shutil
from pathlib import Path

import pytest

from airlock import proc
from airlock.backends import openpgp
from airlock.backends.openpgp import BaseVerifier, gpg, verifier
from airlock.errors import SignatureError
from airlock.trusted.judge import Judge
from airlock.trusted.policy import PolicyConfig
from tests.support.keys import DATA, KeySet


@pytest.fixture(params=["sqv", "gpgv"])
def counted(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> tuple[BaseVerifier, list[str]]:
    v = verifier(str(request.param))
    spawned: list[str] = []
    real = proc.run

    def run(argv: list[object], **kw: object) -> proc.Completed:
        words = [str(a) for a in argv]
        if "--show-keys" in words:
            spawned.append("listing")
        elif Path(words[0]).name in ("sqv", "gpgv"):
            spawned.append("tool")  # (signing with gpg is neither)
        return real(argv, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(proc, "run", run)
    return v, spawned


def test_same_packets_in_two_encodings_run_gpg_and_the_tool_once(
    counted: tuple[BaseVerifier, list[str]], openpgp_keys: KeySet
) -> None:
    v, spawned = counted
    binary = openpgp_keys.sign(DATA, openpgp_keys.good)
    now = dt.datetime.now(dt.UTC)
    first = v.verify(binary, DATA, openpgp_keys.keyring, now=now)
    second = v.verify(_armor(binary), DATA, openpgp_keys.keyring, now=now)  # same packet
    assert first == second
    assert spawned == ["listing", "tool"]


def test_different_packets_run_the_tool_again_but_not_gpg(
    counted: tuple[BaseVerifier, list[str]], openpgp_keys: KeySet
) -> None:
    v, spawned = counted
    now = dt.datetime.now(dt.UTC)
    v.verify(openpgp_keys.sign(DATA, openpgp_keys.good), DATA, openpgp_keys.keyring, now=now)
    v.verify(openpgp_keys.sign(DATA, openpgp_keys.second), DATA, openpgp_keys.keyring, now=now)
    assert spawned == ["listing", "tool", "tool"]


def test_reuse_never_carries_an_answer_to_other_data(
    counted: tuple[BaseVerifier, list[str]], openpgp_keys: KeySet
) -> None:
    v, _ = counted
    sig = openpgp_keys.sign(DATA, openpgp_keys.good)
    now = dt.datetime.now(dt.UTC)
    v.verify(sig, DATA, openpgp_keys.keyring, now=now)
    with pytest.raises(SignatureError):
        v.verify(sig, DATA + b"tampered\n", openpgp_keys.keyring, now=now)


def test_changed_keyring_bytes_are_listed_again(
    counted: tuple[BaseVerifier, list[str]], openpgp_keys: KeySet, tmp_path: Path
) -> None:
    v, spawned = counted
    ring = tmp_path / "ring.gpg"
    shutil.copyfile(openpgp_keys.keyring, ring)
    sig = openpgp_keys.sign(DATA, openpgp_keys.good)
    now = dt.datetime.now(dt.UTC)
    v.verify(sig, DATA, ring, now=now)
    ring.write_bytes(openpgp_keys.keyring_armored.read_bytes())  # same keys, other bytes
    v.verify(sig, DATA, ring, now=now)
    assert spawned == ["listing", "tool", "listing", "tool"]


def test_listing_older_than_reuse_time_is_read_again(
    counted: tuple[BaseVerifier, list[str]],
    openpgp_keys: KeySet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    v, spawned = counted
    sig = openpgp_keys.sign(DATA, openpgp_keys.good)
    now = dt.datetime.now(dt.UTC)
    clock = [1000.0]
    monkeypatch.setattr("airlock.backends.openpgp._clock", lambda: clock[0])
    v.verify(sig, DATA, openpgp_keys.keyring, now=now)
    clock[0] += openpgp.REUSE_S + 1
    v.verify(sig, DATA, openpgp_keys.keyring, now=now)
    assert spawned == ["listing", "tool", "listing", "tool"]  # listed and verified again


def _armor(binary: bytes) -> bytes:
    body = base64.encodebytes(binary)
    crc = openpgp.packets._crc24(binary).to_bytes(3, "big")
    return (
        b"-----BEGIN PGP SIGNATURE-----\n\n"
        + body
        + b"="
        + base64.b64encode(crc)
        + b"\n-----END PGP SIGNATURE-----\n"
    )


def test_an_early_listing_is_the_only_listing(
    counted: tuple[BaseVerifier, list[str]], openpgp_keys: KeySet
) -> None:
    # airlock inspect lists the keyring while sqv --version runs (ADR 0175): verify() takes it.
    v, spawned = counted
    v.adopt(openpgp.EarlyListing(openpgp_keys.keyring, limits=v.limits))
    sig = openpgp_keys.sign(DATA, openpgp_keys.good)
    found = v.verify(sig, DATA, openpgp_keys.keyring, now=dt.datetime.now(dt.UTC))
    assert [s.fingerprint for s in found] == [openpgp_keys.good]
    assert spawned == ["listing", "tool"]


def test_an_early_listing_of_other_bytes_is_dropped(
    counted: tuple[BaseVerifier, list[str]], openpgp_keys: KeySet, tmp_path: Path
) -> None:
    v, spawned = counted
    ring = tmp_path / "ring.gpg"
    ring.write_bytes(gpg.export_public(openpgp_keys.home, [openpgp_keys.second]))
    early = openpgp.EarlyListing(ring, limits=v.limits)
    assert early.result() is not None
    v.adopt(early)
    shutil.copyfile(openpgp_keys.keyring, ring)  # replaced after the early listing
    sig = openpgp_keys.sign(DATA, openpgp_keys.good)
    v.verify(sig, DATA, ring, now=dt.datetime.now(dt.UTC))  # the signer is in the new bytes
    assert spawned == ["listing", "listing", "tool"]


def test_a_failed_early_listing_leaves_the_verifier_to_say_why(
    counted: tuple[BaseVerifier, list[str]], openpgp_keys: KeySet, tmp_path: Path
) -> None:
    v, spawned = counted
    ring = tmp_path / "ring.gpg"
    early = openpgp.EarlyListing(ring, limits=v.limits)  # no file yet: it fails
    assert early.result() is None
    v.adopt(early)
    sig = openpgp_keys.sign(DATA, openpgp_keys.good)
    with pytest.raises(SignatureError, match="Cannot open keyring"):
        v.verify(sig, DATA, ring, now=dt.datetime.now(dt.UTC))
    shutil.copyfile(openpgp_keys.keyring, ring)
    v.verify(sig, DATA, ring, now=dt.datetime.now(dt.UTC))
    assert spawned == ["listing", "tool"]


def test_an_early_listing_older_than_reuse_time_is_listed_again(
    counted: tuple[BaseVerifier, list[str]],
    openpgp_keys: KeySet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    v, spawned = counted
    clock = [1000.0]
    monkeypatch.setattr("airlock.backends.openpgp._clock", lambda: clock[0])
    early = openpgp.EarlyListing(openpgp_keys.keyring, limits=v.limits)
    assert early.result() is not None
    v.adopt(early)
    clock[0] += openpgp.REUSE_S + 1
    v.verify(openpgp_keys.sign(DATA, openpgp_keys.good), DATA, openpgp_keys.keyring)
    assert spawned == ["listing", "listing", "tool"]


def test_a_newer_early_listing_replaces_the_one_held(
    counted: tuple[BaseVerifier, list[str]],
    openpgp_keys: KeySet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The pipeline lists the keyring again beside the freeze (ADR 0176) with a verifier that may
    # hold a listing already: the newer one counts, so no third listing is made.
    v, spawned = counted
    clock = [1000.0]
    monkeypatch.setattr("airlock.backends.openpgp._clock", lambda: clock[0])
    sig = openpgp_keys.sign(DATA, openpgp_keys.good)
    v.verify(sig, DATA, openpgp_keys.keyring)
    clock[0] += openpgp.REUSE_S - 1
    early = openpgp.EarlyListing(openpgp_keys.keyring, limits=v.limits)
    assert early.result() is not None
    v.adopt(early)
    clock[0] += 2  # the first listing is too old now; the early one is not
    v.verify(sig, DATA, openpgp_keys.keyring)
    assert spawned == ["listing", "tool", "listing", "tool"]


def test_the_judge_lists_its_keyring_ahead_for_its_verifier(
    counted: tuple[BaseVerifier, list[str]], openpgp_keys: KeySet
) -> None:
    v, spawned = counted
    judge = Judge(
        transfers=(), keyring=openpgp_keys.keyring, verifier=v, policy=PolicyConfig(),
        limits=v.limits,
    )  # fmt: skip
    judge.list_keyring()
    assert spawned == ["listing"]  # done when it returns: no child outlives it
    sig = openpgp_keys.sign(DATA, openpgp_keys.good)
    v.verify(sig, DATA, openpgp_keys.keyring, now=dt.datetime.now(dt.UTC))
    assert spawned == ["listing", "tool"]


def test_a_judge_whose_keyring_cannot_be_listed_says_nothing_until_it_verifies(
    counted: tuple[BaseVerifier, list[str]], openpgp_keys: KeySet, tmp_path: Path
) -> None:
    v, spawned = counted
    ring = tmp_path / "missing.gpg"
    judge = Judge(transfers=(), keyring=ring, verifier=v, policy=PolicyConfig(), limits=v.limits)
    judge.list_keyring()  # never raises
    with pytest.raises(SignatureError, match="Cannot open keyring"):
        v.verify(openpgp_keys.sign(DATA, openpgp_keys.good), DATA, ring)
