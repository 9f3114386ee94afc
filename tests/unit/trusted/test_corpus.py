# SPDX-License-Identifier: MIT
"""The hostile corpus (tests/support/corpus.py) against the real judge, in process.

Each case asserts its specific error code (or acceptance), that the tree is unchanged and that
nothing outside the staging directory was opened (FIFO canary).  Cases needing root (device
nodes) run in tests/integration/test_inspect_corpus.py.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from airlock import fsutil
from airlock.backends import openpgp
from airlock.errors import RejectedError
from airlock.formats import definitions
from airlock.limits import Limits
from airlock.trusted import verify
from airlock.trusted.release import VerifiedRelease
from tests.support.corpus import (
    Case,
    FifoCanary,
    Staging,
    all_cases,
    payload_names,
    policy_for,
    tree_state,
)
from tests.support.keys import KeySet

CASES = [c for c in all_cases() if not c.root]


@pytest.fixture
def staging(tmp_path: Path, keys: KeySet) -> Iterator[Staging]:
    s = Staging(tmp_path, keys)
    yield s
    s.close()


def run_judge(
    case: Case, s: Staging, keys: KeySet, transfers: tuple[definitions.Transfer, ...]
) -> VerifiedRelease:
    fd = os.open(s.dir, fsutil.DIR_FLAGS)
    try:
        return verify.judge(
            fd,
            transfers=transfers,
            keyring=keys.keyring,
            policy=policy_for(case, keys),
            limits=replace(Limits(), **case.limits),
            verifier=openpgp.verifier(),
            now=datetime.datetime.now(datetime.UTC),
        )
    finally:
        os.close(fd)


def test_corpus_has_at_least_fifty_hostile_cases() -> None:
    assert len([c for c in all_cases() if c.expect is not None]) >= 50


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_case(
    case: Case, staging: Staging, keys: KeySet, transfers: tuple[definitions.Transfer, ...]
) -> None:
    case.build(staging)
    staging.close()
    before = tree_state(staging.dir)
    with FifoCanary(staging.canary) as canary:
        if case.expect is None:
            release = run_judge(case, staging, keys, transfers)
            assert release.version == case.version
            assert len(release.dropped) == case.dropped
            if release.version is not None:
                assert {f.transfer for f in release.files} == set(payload_names())
                assert release.bytes_hashed == sum(f.size for f in release.files) > 0
        else:
            with pytest.raises(RejectedError) as info:
                run_judge(case, staging, keys, transfers)
            assert info.value.code == case.expect, info.value.message
            assert info.value.message.isascii()
            assert info.value.message.isprintable()
        breached = canary.stop()
    assert not breached, "a file outside the staging directory was opened"
    assert tree_state(staging.dir) == before


def test_canary_fires_when_a_symlink_is_followed(staging: Staging) -> None:
    """Negative control: a naive reader that follows the hostile symlink trips the canary."""
    os.symlink(staging.canary, staging.dir / "SHA256SUMS")
    with FifoCanary(staging.canary) as canary:
        fd = os.open(staging.dir / "SHA256SUMS", os.O_RDONLY | os.O_NONBLOCK)  # follows
        os.close(fd)
        assert canary.breached.wait(5)
        assert canary.stop()


def test_canary_quiet_when_nothing_opens_it(staging: Staging) -> None:
    with FifoCanary(staging.canary) as canary:
        assert not canary.stop()
