# SPDX-License-Identifier: MIT
"""The lab installs a wheel as a distribution lays it out: the package, its scripts, its data."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from airlock.errors import HostError
from airlock.lab import wheel

DIST = "airlock-0.1.0"


def _wheel(tmp_path: Path, extra: dict[str, str]) -> Path:
    path = tmp_path / f"{DIST}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{DIST}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n")
        z.writestr(f"{DIST}.dist-info/entry_points.txt", "[console_scripts]\nairlock = a.b:main\n")
        z.writestr("airlock/__init__.py", "")
        for name, text in extra.items():
            z.writestr(name, text)
    return path


def test_data_files_go_under_usr_and_the_package_into_dist_packages(tmp_path: Path) -> None:
    whl = _wheel(tmp_path, {f"{DIST}.data/data/share/man/man8/airlock.8": ".TH AIRLOCK 8\n"})
    root = tmp_path / "root"
    assert wheel.install(whl, root) == ("airlock",)
    assert (root / "usr/share/man/man8/airlock.8").read_text() == ".TH AIRLOCK 8\n"
    assert (root / "usr/lib/python3/dist-packages/airlock/__init__.py").is_file()
    assert (root / "usr/bin/airlock").read_text().startswith("#!/usr/bin/python3\n")
    assert not list(root.rglob("*.data"))


@pytest.mark.parametrize(
    "member",
    [f"{DIST}.data/scripts/airlock", f"{DIST}.data/data", "../escape.py", "/etc/passwd"],
)
def test_a_member_outside_the_layout_is_refused(tmp_path: Path, member: str) -> None:
    with pytest.raises(HostError) as info:
        wheel.install(_wheel(tmp_path, {member: "x"}), tmp_path / "root")
    assert info.value.code == "host.wheel"
    assert not (tmp_path / "etc/passwd").exists()
