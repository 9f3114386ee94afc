# SPDX-License-Identifier: MIT
"""Policy.appliers: the host refuses what the systemd-sysupdate that applies would read otherwise.

systemd-sysupdate 257 reads only ``SHA256SUMS.gpg``; 258 only ``SHA256SUMS.sha256.asc`` from a
``file://`` source (it probes it first and does not fall back there); 259+ read the first present
of ``.sha256.asc``, ``.sha256.gpg``, ``.gpg``, ``.asc``.  A release the applier cannot verify could
never be installed, so the judge refuses it (``reject.signature``) with the reason, and accepts the
same snapshot where the applier does read a name it carries.  The outcomes of the real 257 and 262
binaries for the same cases are in ``tests/integration/test_dialect_vs_sysupdate.py``.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest

from airlock import fsutil
from airlock.backends import openpgp
from airlock.errors import SignatureError
from airlock.formats import definitions, dialect
from airlock.limits import Limits
from airlock.trusted import verify
from airlock.trusted.policy import Policy
from airlock.trusted.release import VerifiedRelease
from tests.support.corpus import Staging
from tests.support.keys import KeySet

GPG, ASC = dialect.SIG_GPG, dialect.SIG_SHA256_ASC


def _staging(tmp_path: Path, keys: KeySet, names: tuple[str, ...], version: str = "2") -> Staging:
    tmp_path.mkdir(parents=True, exist_ok=True)
    s = Staging(tmp_path, keys)
    raw = s.release(version, sign=False)
    for name in names:
        s.sign(raw, name=name, armor=name.endswith(".asc"))
    s.close()
    return s


def _judge(
    s: Staging, keys: KeySet, transfers: tuple[definitions.Transfer, ...], policy: Policy
) -> VerifiedRelease:
    fd = os.open(s.dir, fsutil.DIR_FLAGS)
    try:
        return verify.judge(
            fd,
            transfers=transfers,
            keyring=keys.keyring,
            policy=policy,
            limits=Limits(),
            verifier=openpgp.verifier(),
            now=datetime.datetime.now(datetime.UTC),
        )
    finally:
        os.close(fd)


# (applier version, signature names present) → accepted?
CASES = [
    (257, (GPG,), True),
    (257, (ASC,), False),
    (257, (GPG, ASC), True),
    (258, (GPG,), False),  # 258 probes .sha256.asc and, over file://, stops there
    (258, (ASC,), True),
    (258, (GPG, ASC), True),
    (259, (GPG,), True),
    (259, (ASC,), True),
    (262, (GPG,), True),
    (262, (ASC,), True),
    (262, (GPG, ASC), True),
]


@pytest.mark.parametrize(("major", "names", "accepted"), CASES)
def test_the_judge_requires_the_signature_name_the_applier_reads(
    tmp_path: Path,
    keys: KeySet,
    transfers: tuple[definitions.Transfer, ...],
    major: int,
    names: tuple[str, ...],
    accepted: bool,
) -> None:
    s = _staging(tmp_path, keys, names)
    policy = Policy(appliers=(dialect.for_version(major),))
    if accepted:
        assert _judge(s, keys, transfers, policy).version == "2"
        return
    with pytest.raises(SignatureError) as info:
        _judge(s, keys, transfers, policy)
    assert info.value.code == "reject.signature"
    assert f"systemd-sysupdate {major}" in info.value.message
    assert "file://" in info.value.message


def test_without_a_known_applier_either_name_is_enough(
    tmp_path: Path, keys: KeySet, transfers: tuple[definitions.Transfer, ...]
) -> None:
    # Negative control: the refusals above come from the applier's rule, not from the snapshot.
    for names in ((GPG,), (ASC,)):
        s = _staging(tmp_path / names[0].replace(".", "-"), keys, names)
        assert _judge(s, keys, transfers, Policy()).version == "2"


def test_when_the_applier_is_unknown_every_rule_applies(
    tmp_path: Path, keys: KeySet, transfers: tuple[definitions.Transfer, ...]
) -> None:
    # What the host pipeline uses when it cannot locate its sysupdate: both names are needed.
    every = Policy(appliers=dialect.TABLE)
    for names, ok in (((GPG,), False), ((ASC,), False), ((GPG, ASC), True)):
        s = _staging(tmp_path / "-".join(names).replace(".", "-"), keys, names)
        if ok:
            assert _judge(s, keys, transfers, every).version == "2"
        else:
            with pytest.raises(SignatureError):
                _judge(s, keys, transfers, every)


def test_a_bad_signature_under_any_name_refuses_even_where_the_applier_would_not_read_it(
    tmp_path: Path, keys: KeySet, transfers: tuple[definitions.Transfer, ...]
) -> None:
    # 257 ignores .sha256.asc and 262 ignores .gpg when .sha256.asc is present, so each would
    # install this release; airlock refuses any signature that does not verify (stricter).
    s = Staging(tmp_path, keys)
    raw = s.release(sign=False)
    s.sign(raw, name=GPG)
    s.sign(raw + b"x", name=ASC, armor=True)
    s.close()
    for major in (257, 262):
        with pytest.raises(SignatureError) as info:
            _judge(s, keys, transfers, Policy(appliers=(dialect.for_version(major),)))
        assert info.value.code == "reject.signature"
