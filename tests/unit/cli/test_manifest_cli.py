# SPDX-License-Identifier: MIT
"""``airlock manifest check FILE [--json]`` run as a real subprocess."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airlock.errors import ExitStatus
from airlock.formats import manifest
from tests.support import schemas

H = "ab" * 32


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    argv = ["manifest", "check", *[os.fspath(a) for a in args]]
    done = subprocess.run(
        [sys.executable, "-m", "airlock", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    schemas.check_output(argv, done.stdout)
    return done


def test_valid_manifest(tmp_path: Path) -> None:
    path = tmp_path / "SHA256SUMS"
    entries = [manifest.Entry(name=f"Spectrum_1.{i}.efi", sha256=H) for i in range(3)]
    path.write_bytes(manifest.format(entries))
    result = run(path)
    assert result.returncode == ExitStatus.OK
    assert result.stdout == f"{path}: valid, 3 entries, no best-before date\n"
    assert result.stderr == ""


def test_valid_manifest_json_with_best_before(tmp_path: Path) -> None:
    path = tmp_path / "SHA256SUMS"
    path.write_bytes(
        manifest.format([manifest.Entry(name="a", sha256=H)], best_before=datetime.date(2027, 3, 4))
    )
    result = run(path, "--json")
    assert result.returncode == ExitStatus.OK
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == {
        "v": 1,
        "event": "manifest-check",
        "valid": True,
        "file_display": os.fspath(path),
        "entries": 1,
        "best_before": "2027-03-04",
    }
    assert "best before 2027-03-04" in run(path).stdout


def test_empty_manifest_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "SHA256SUMS"
    path.write_bytes(b"")
    result = run(path)
    assert result.returncode == ExitStatus.OK
    assert "0 entries" in result.stdout


@pytest.mark.parametrize(
    ("raw", "line", "reason"),
    [
        (f"{H} *a\n{H} *sub/b\n", 2, "manifest line 2: file name contains '/'"),
        (f"{H} *a\r\n", 1, "manifest line 1: carriage return"),
        (f"{H} *a", 1, "manifest line 1: truncated (no final newline)"),
        (f"{H} *a\n{H} *a\n", 2, "manifest line 2: file name listed twice"),
    ],
)
def test_invalid_manifest_is_rejected_with_one_line(
    tmp_path: Path, raw: str, line: int, reason: str
) -> None:
    path = tmp_path / "SHA256SUMS"
    path.write_bytes(raw.encode())
    result = run(path)
    assert result.returncode == ExitStatus.REJECTED
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {path}: {reason}")
    result = run(path, "--json")
    assert result.returncode == ExitStatus.REJECTED
    (obj,) = [json.loads(x) for x in result.stdout.splitlines()]
    assert obj["valid"] is False
    assert obj["code"] == "reject.manifest"
    assert obj["line"] == line
    assert reason in obj["message"]


def test_hostile_content_is_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "SHA256SUMS"
    path.write_bytes(f"{H} *\x1b]0;owned\x07/x\n".encode())
    result = run(path)
    assert result.returncode == ExitStatus.REJECTED
    assert "owned" not in result.stderr
    assert "\x1b" not in result.stderr


def test_hostile_file_name_is_escaped(tmp_path: Path) -> None:
    path = tmp_path / "SUMS\x1b[31m"
    path.write_bytes(b"x")
    result = run(path)
    assert result.returncode == ExitStatus.REJECTED
    assert "\x1b" not in result.stderr
    assert "\\x1b" in result.stderr


def test_oversized_file_is_rejected_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "SHA256SUMS"
    with path.open("wb") as handle:
        handle.truncate(64 << 20)
    result = run(path, "--json")
    assert result.returncode == ExitStatus.REJECTED
    obj = json.loads(result.stdout)
    assert obj["code"] == "reject.size"
    assert obj["line"] is None


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_file_is_a_usage_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "nope" if kind == "missing" else tmp_path
    result = run(path)
    assert result.returncode == ExitStatus.USAGE
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: Failed to ")
    assert "Traceback" not in result.stderr
    result = run(path, "--json")
    assert result.returncode == ExitStatus.USAGE
    assert json.loads(result.stdout)["code"] == "usage.file"


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    result = run(path)
    assert result.returncode == ExitStatus.USAGE
    assert "not a regular file" in result.stderr


def test_missing_argument_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airlock", "manifest", "check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == ExitStatus.USAGE
