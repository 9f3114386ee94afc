# SPDX-License-Identifier: MIT
"""trusted/policy.py: fingerprints are normalised, inconsistent policies are refused."""

from __future__ import annotations

import datetime

import pytest

from airlock.errors import UsageError
from airlock.trusted.policy import Policy, fingerprint

FPR = "0123456789ABCDEF0123456789ABCDEF01234567"


def test_fingerprint_is_normalised() -> None:
    assert fingerprint("0x" + FPR.lower()) == FPR
    assert fingerprint(" ".join(FPR[i : i + 4] for i in range(0, 40, 4))) == FPR


@pytest.mark.parametrize("bad", ["", "abc", FPR[:-1], FPR + "0", "G" * 40, FPR[:16]])
def test_short_or_garbage_fingerprints_are_refused(bad: str) -> None:
    with pytest.raises(UsageError):
        fingerprint(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0},
        {"threshold": 2, "trusted_fingerprints": frozenset({FPR})},
        {"trusted_fingerprints": frozenset({FPR.lower()})},
        {"floor": "1~rc"},
        {"installed": ""},
        {"not_before": datetime.datetime(2026, 1, 1)},  # naive: the point of the test
    ],
)
def test_inconsistent_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        Policy(**kwargs)  # type: ignore[arg-type]  # table of deliberately wrong values


def test_baseline_is_the_newer_of_floor_and_installed() -> None:
    assert Policy().baseline is None
    assert Policy(floor="2", installed="10").baseline == "10"
    assert Policy(floor="3").baseline == "3"
