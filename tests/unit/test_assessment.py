# SPDX-License-Identifier: MIT
"""airlock.assessment: booted, blessed, pending and failed versions from ``$BOOT``'s names."""

from __future__ import annotations

from pathlib import Path

import pytest

from airlock import assessment
from airlock.formats import definitions, pattern
from airlock.formats.transfer import Transfer
from airlock.release import render

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
        # booted a version whose entry is not visible: no counter says its boot is on trial
        (["Spectrum_2.0.efi"], "3.0", True, (), ()),
        # os-release says nothing: nothing booted, nothing blessed, everything pending
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


def _kernel_transfer(tries: int | None) -> Transfer:
    root = render.default_templates()
    path = (
        root / "boot-counting/sysupdate.d/70-kernel.transfer.in"
        if tries
        else root / "sysupdate.d/70-kernel.transfer"
    )
    text = path.read_text().replace("@TRIES_LEFT@", str(tries))
    spec = definitions.Specifiers.from_os_release("IMAGE_VERSION=1\n")
    return definitions.parse(text, origin=path.name, specifiers=spec)


def test_observe_reads_boot_and_os_release(tmp_path: Path) -> None:
    boot = tmp_path / "boot"
    (boot / "EFI/Linux").mkdir(parents=True)
    for name in ("Spectrum_3.0.efi", "Spectrum_4.0+0-2.efi", "notes.txt"):
        (boot / "EFI/Linux" / name).write_bytes(b"x")
    (boot / "EFI/Linux/Spectrum_5.0.efi").mkdir()  # not a regular file: not an entry
    osr = tmp_path / "os-release"
    osr.write_text('NAME="x"\nIMAGE_VERSION="3.0"\n')
    a = assessment.observe([_kernel_transfer(2)], boot=boot, os_release=osr)
    assert (a.booted, a.blessed, a.pending, a.failed) == ("3.0", True, (), ("4.0",))
    # Spectrum's own templates have no counter in the pattern: "+0-2" is part of the version
    # there, as sysupdate would read it too.
    plain = assessment.observe([_kernel_transfer(None)], boot=boot, os_release=osr)
    assert plain.failed == ()
    assert [e.version for e in plain.entries] == ["3.0", "4.0+0-2"]
    # No os-release: nothing booted, nothing blessed.
    none = assessment.observe([_kernel_transfer(2)], boot=boot, os_release=tmp_path / "missing")
    assert (none.booted, none.blessed) == (None, False)
    # The host's definitions directory, read as the judge reads it.
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "70-kernel.transfer").write_text(
        (render.default_templates() / "boot-counting/sysupdate.d/70-kernel.transfer.in")
        .read_text()
        .replace("@TRIES_LEFT@", "2")
    )
    host = assessment.observe_host(defs, boot=boot, os_release=osr)
    assert (host.booted, host.failed) == ("3.0", ("4.0",))
