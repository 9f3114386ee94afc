# SPDX-License-Identifier: MIT
"""Policy.required_signature_files: the host refuses a snapshot its systemd-sysupdate cannot verify.

systemd-sysupdate 257 reads only ``SHA256SUMS.gpg``; a snapshot signed only as
``SHA256SUMS.sha256.asc`` would pass the judge, then make sysupdate vacuum a slot and fail — on
every run, destroying the fallback slot.  The host therefore requires the ``.gpg`` name with 257.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest

from airlock import fsutil
from airlock.backends import openpgp
from airlock.errors import SignatureError
from airlock.formats import definitions
from airlock.limits import Limits
from airlock.trusted import verify
from airlock.trusted.policy import Policy
from airlock.trusted.release import VerifiedRelease
from tests.support.corpus import Staging
from tests.support.keys import KeySet


@pytest.fixture
def armoured_only(tmp_path: Path, keys: KeySet) -> Staging:
    s = Staging(tmp_path, keys)
    raw = s.release(sign=False)
    s.sign(raw, name="SHA256SUMS.sha256.asc", armor=True)
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


def test_armoured_only_snapshot_is_refused_when_gpg_name_is_required(
    armoured_only: Staging, keys: KeySet, transfers: tuple[definitions.Transfer, ...]
) -> None:
    policy = Policy(required_signature_files=("SHA256SUMS.gpg",))
    with pytest.raises(SignatureError) as info:
        _judge(armoured_only, keys, transfers, policy)
    assert info.value.code == "reject.signature"
    assert "SHA256SUMS.gpg" in info.value.message


def test_the_same_snapshot_is_accepted_without_the_requirement(
    armoured_only: Staging, keys: KeySet, transfers: tuple[definitions.Transfer, ...]
) -> None:
    # Negative control: the refusal above comes from the requirement, not from the snapshot.
    release = _judge(armoured_only, keys, transfers, Policy())
    assert release.version is not None
