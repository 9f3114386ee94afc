# SPDX-License-Identifier: MIT
"""``airlock updates-dir-check``: Spectrum's ``updates-dir-check`` interface, rules and statuses
(design.md#spectrum-step-5, design.md#spectrum-step-16), through the real CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airlock", "updates-dir-check", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _tree(tmp_path: Path, *names: str) -> Path:
    d = tmp_path / "shared"
    d.mkdir()
    for name in names:
        (d / name).write_bytes(b"x")
    return d


def test_cleanup_unlinks_temporaries_and_old_signatures_and_keeps_the_rest(tmp_path: Path) -> None:
    d = _tree(
        tmp_path,
        "SHA256SUMS",
        "SHA256SUMS.gpg",
        "SHA256SUMS.sha256.asc",
        ".#sysupdate-partial",
        "Spectrum_2_0123.root",
        "Spectrum_2.efi",
    )
    out = _check("cleanup", str(d))
    assert (out.returncode, out.stderr) == (0, "")
    assert sorted(os.listdir(d)) == ["SHA256SUMS", "Spectrum_2.efi", "Spectrum_2_0123.root"]


def test_check_keeps_signatures_and_unlinks_temporaries(tmp_path: Path) -> None:
    d = _tree(tmp_path, "SHA256SUMS", "SHA256SUMS.sha256.asc", ".tmp", "Spectrum_2.efi")
    out = _check("check", str(d))
    assert (out.returncode, out.stderr) == (0, "")
    assert sorted(os.listdir(d)) == ["SHA256SUMS", "SHA256SUMS.sha256.asc", "Spectrum_2.efi"]


@pytest.mark.parametrize("names", [(), ("SHA256SUMS",), ("SHA256SUMS", "Spectrum_2.efi")])
def test_check_without_a_signature_fails_and_points_at_the_vm_log(
    tmp_path: Path, names: tuple[str, ...]
) -> None:
    out = _check("check", str(_tree(tmp_path, *names)))
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        "updates-dir-check: sys.appvm-systemd-sysupdate didn't send a signature file.",
        "updates-dir-check: There was probably a problem downloading the update.",
        "updates-dir-check: Check its logs for more information.",
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("1abc", "Forbidden initial character in filename: '1'"),
        ("_abc", "Forbidden initial character in filename: '_'"),
        ("\u00e9t\u00e9", "Forbidden initial character in filename: byte 0xc3"),
        ("ab c", "Forbidden subsequent character in filename: ' '"),
        ("a\x1b[31m", "Forbidden subsequent character in filename: byte 0x1b"),
        ("a\nb", "Forbidden subsequent character in filename: byte 0xa"),
        ("a:b", "Forbidden subsequent character in filename: ':'"),
        ("abc.", "Filename abc. ends with a '.'"),
    ],
)
@pytest.mark.parametrize("mode", ["cleanup", "check"])
def test_unsafe_names_fail_with_the_character_described(
    tmp_path: Path, mode: str, name: str, message: str
) -> None:
    d = _tree(tmp_path, "SHA256SUMS.gpg", name)
    out = _check(mode, str(d))
    assert out.returncode == 1
    assert out.stderr == f"updates-dir-check: {message}\n"
    assert out.stderr.isascii()
    assert name in os.listdir(d)  # refused entries stay (the host judges, never follows)


def _special(d: Path, kind: str) -> None:
    match kind:
        case "symlink":
            (d / "Spectrum_2.efi").symlink_to("/etc/shadow")
        case "directory":
            (d / "Spectrum_2.efi").mkdir()
        case "fifo":
            os.mkfifo(d / "Spectrum_2.efi")
        case "socket":
            s = socket.socket(socket.AF_UNIX)
            s.bind(os.fspath(d / "Spectrum_2.efi"))
            s.close()


@pytest.mark.parametrize("kind", ["symlink", "directory", "fifo", "socket"])
def test_anything_but_a_regular_file_fails(tmp_path: Path, kind: str) -> None:
    d = _tree(tmp_path, "SHA256SUMS.gpg")
    _special(d, kind)
    out = _check("check", str(d))
    assert out.returncode == 1
    assert out.stderr == "updates-dir-check: Entry contains non-regular file Spectrum_2.efi\n"


@pytest.mark.parametrize("kind", ["symlink", "fifo", "socket"])
def test_dot_entries_of_any_type_but_a_directory_are_unlinked_not_followed(
    tmp_path: Path, kind: str
) -> None:
    d = _tree(tmp_path, "SHA256SUMS.gpg")
    _special(d, kind)
    os.rename(d / "Spectrum_2.efi", d / ".Spectrum_2.efi")
    assert _check("check", str(d)).returncode == 0
    assert os.listdir(d) == ["SHA256SUMS.gpg"]


def test_a_dot_directory_fails_as_unlinkat_does(tmp_path: Path) -> None:
    d = _tree(tmp_path, "SHA256SUMS.gpg")
    (d / ".cache").mkdir()
    out = _check("cleanup", str(d))
    assert out.returncode == 1
    assert out.stderr.startswith("updates-dir-check: Failed to unlink temporary file: ")


def test_a_symlinked_directory_is_refused(tmp_path: Path) -> None:
    # Stricter than the C tool, which follows it: the host never follows what it did not make.
    d = _tree(tmp_path, "SHA256SUMS.gpg")
    (tmp_path / "link").symlink_to(d)
    out = _check("check", str(tmp_path / "link"))
    assert out.returncode == 1
    assert out.stderr.startswith("updates-dir-check: open(")


@pytest.mark.parametrize(
    "args",
    [(), ("check",), ("scrub", "."), ("check", ".", "."), ("--help-me", ".")],
)
def test_bad_usage_prints_the_usage_and_exits_1(args: tuple[str, ...]) -> None:
    out = _check(*args)
    assert out.returncode == 1
    assert out.stderr == "updates-dir-check: Usage: updates-dir-check [cleanup|check] DIRECTORY\n"
