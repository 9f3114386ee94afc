# SPDX-License-Identifier: MIT
"""keygen, the public-keyring check and signature armour."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airlock.backends import openpgp
from airlock.backends.openpgp import gpg
from airlock.errors import ConfigError, UsageError
from airlock.release import armor, keygen, pubring
from tests.support.releases import SigningKey


def test_keygen_makes_home_and_binary_pubring(key: SigningKey) -> None:
    assert len(key.fingerprint) == 40
    assert key.gnupghome.stat().st_mode & 0o777 == 0o700
    ring = pubring.parse(key.pubring.read_bytes())
    assert ring.fingerprints == (key.fingerprint,)
    assert openpgp.keyring_fingerprints(key.pubring) == (key.fingerprint,)


def test_keygen_refuses_non_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "precious").write_text("x")
    with pytest.raises(UsageError):
        keygen.generate(tmp_path / "k")
    assert [p.name for p in (tmp_path / "k").iterdir()] == ["precious"]


def test_pubring_fingerprints_agree_with_gpg(
    tmp_path: Path, key: SigningKey, key2: SigningKey
) -> None:
    both = key.pubring.read_bytes() + key2.pubring.read_bytes()
    assert pubring.parse(both).fingerprints == (key.fingerprint, key2.fingerprint)


def test_pubring_refuses_duplicates_and_trailing_garbage(key: SigningKey) -> None:
    raw = key.pubring.read_bytes()
    with pytest.raises(ConfigError, match="twice"):
        pubring.parse(raw + raw)
    with pytest.raises(ConfigError):
        pubring.parse(raw + b"\x00")
    with pytest.raises(ConfigError):
        pubring.parse(raw[:-3])


def test_pubring_refuses_signature_first(tmp_path: Path, key: SigningKey) -> None:
    # Through airlock.proc: gpg's agent ends with gpg instead of outliving the test.
    sig = gpg.sign(b"x", gnupghome=key.gnupghome, signer=None, armor=False)
    with pytest.raises(ConfigError, match="first packet"):
        pubring.parse(sig)


def test_crc24_vector() -> None:
    assert armor.crc24(b"") == 0xB704CE
    # RFC 4880's reference implementation, computed independently for "123456789".
    assert armor.crc24(b"123456789") == 0x21CF02


def test_armor_roundtrip_with_gpg(tmp_path: Path) -> None:
    data = bytes(range(256)) * 3
    home = tmp_path / "h"
    home.mkdir(mode=0o700)
    out = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--dearmor"],
        input=armor.armor_signature(data),
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert out == data


@given(st.binary(max_size=512))
def test_pubring_parse_never_crashes(data: bytes) -> None:
    code = None
    try:
        ring = pubring.parse(data)
    except ConfigError as exc:
        code = exc.code
    else:
        assert ring.fingerprints
    assert code in (None, "config.key")
