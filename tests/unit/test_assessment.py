# SPDX-License-Identifier: MIT
"""airlock.assessment: booted, blessed, pending and failed versions from ``$BOOT``'s names."""

from __future__ import annotations

import pytest

from airlock import assessment
from airlock.formats import pattern

COUNTED = [pattern.compile(t) for t in
           ("Spectrum_@v+@l-@d.efi", "Spectrum_@v+@l.efi", "Spectrum_@v.efi")]  # fmt: skip
PLAIN = [pattern.compile("Spectrum_@v.efi")]


def _assess(names: list[str], booted: str | None) -> assessment.Assessment:
    return assessment.assess(names, COUNTED, booted=booted)


def test_without_boot_counting_the_booted_version_is_blessed_and_newer_ones_pending() -> None:
    a = assessment.assess(["Spectrum_1.0.efi", "Spectrum_2.0.efi"], PLAIN, booted="1.0")
    assert (a.booted, a.blessed, a.pending, a.failed) == ("1.0", True, ("2.0",), ())


@pytest.mark.parametrize(
    ("names", "booted", "blessed", "pending", "failed"),
    [
        # installed with tries, not booted yet
        (["Spectrum_1.0.efi", "Spectrum_2.0+3-0.efi"], "1.0", True, ("2.0",), ()),
        # booted once, counter still there: running but not blessed
        (["Spectrum_1.0.efi", "Spectrum_2.0+2-1.efi"], "2.0", False, (), ()),
        # blessed
        (["Spectrum_1.0.efi", "Spectrum_2.0.efi"], "2.0", True, (), ()),
        # tried until no try was left, systemd-boot fell back to 3.0: failed and rolled back
        (["Spectrum_3.0.efi", "Spectrum_4.0+0-2.efi"], "3.0", True, (), ("4.0",)),
        # a try is left: still pending, not failed
        (["Spectrum_3.0.efi", "Spectrum_4.0+1-1.efi"], "3.0", True, ("4.0",), ()),
        # an older entry is neither pending nor failed
        (["Spectrum_2.0.efi", "Spectrum_3.0.efi"], "3.0", True, (), ()),
        # booted a version that has no entry (or os-release says nothing): never blessed
        (["Spectrum_2.0.efi"], "3.0", False, (), ()),
        (["Spectrum_2.0.efi"], None, False, ("2.0",), ()),
    ],
)
def test_counted_entries(
    names: list[str],
    booted: str | None,
    blessed: bool,
    pending: tuple[str, ...],
    failed: tuple[str, ...],
) -> None:
    a = _assess(names, booted)
    assert (a.blessed, a.pending, a.failed) == (blessed, pending, failed)


def test_other_names_are_ignored_and_entries_are_ordered_by_version() -> None:
    a = _assess(
        ["Spectrum_10.0.efi", "Spectrum_9.0+1-0.efi", "other.efi", ".#tmp", "Spectrum_x y.efi"],
        "9.0",
    )
    assert [(e.version, e.tries_left, e.tries_done) for e in a.entries] == [
        ("9.0", 1, 0),
        ("10.0", None, None),
    ]
    assert a.as_json()["pending"] == ["10.0"]
