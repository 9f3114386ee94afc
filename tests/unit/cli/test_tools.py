# SPDX-License-Identifier: MIT
"""airlock version-compare / pattern match: exit codes and output, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import schemas
from tests.support.oracles import VersionOracle


def airlock(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "airlock", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    schemas.check_output(args, done.stdout)
    return done


CASES = (
    ("1", "1", 0, "1 == 1"),
    ("1.0", "1.00", 0, "1.0 == 1.00"),
    ("", "_", 0, "'' == _"),
    ("", "", 0, "'' == ''"),
    ("2", "1", 11, "2 > 1"),
    ("1.0", "1.0~rc1", 11, "1.0 > 1.0~rc1"),
    ("1", "2", 12, "1 < 2"),
    ("10xyz", "10.1xyz", 11, "10xyz > 10.1xyz"),
    ("~", "", 12, "~ < ''"),
)


@pytest.mark.parametrize(("a", "b", "status", "line"), CASES)
def test_version_compare_exit_status(a: str, b: str, status: int, line: str) -> None:
    done = airlock("version-compare", "--", a, b)
    assert done.returncode == status
    assert done.stdout == line + "\n"
    assert done.stderr == ""


@pytest.mark.sysupdate
def test_version_compare_matches_systemd_analyze(version_oracle: VersionOracle) -> None:
    # The runtime's systemd-analyze (the systemd airlock update applies with), not the host's.
    answers = version_oracle.cli([(a, b) for a, b, _, _ in CASES])
    for (_, _, status, line), ref in zip(CASES, answers, strict=True):
        assert {0: 0, 1: 11, -1: 12}[ref.order] == status
        assert ref.line == line


def test_version_compare_leading_dash_works_without_double_dash() -> None:
    assert airlock("version-compare", "-1", "1").returncode == 12


def test_version_compare_escapes_control_characters() -> None:
    done = airlock("version-compare", "\x1b[1", "1")
    assert done.returncode == 0  # ESC and '[' are separators: equal
    assert "\x1b" not in done.stdout
    assert done.stdout == "'\\x1b[1' == 1\n"


def test_version_compare_strict_refuses_invalid_versions() -> None:
    done = airlock("version-compare", "--strict", "1~rc1", "1")
    assert done.returncode == 3
    assert done.stderr.startswith("error: Refusing version '1~rc1'")
    assert "Traceback" not in done.stderr
    assert airlock("version-compare", "--strict", "1.1", "1").returncode == 11


@pytest.mark.parametrize("args", [(), ("1",), ("1", "2", "3")])
def test_version_compare_wrong_argument_count_is_usage_error(args: tuple[str, ...]) -> None:
    done = airlock("version-compare", *args)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ")


def test_pattern_match_exact_and_sysupdate() -> None:
    exact = airlock("pattern", "match", "foo_@v.raw", "foo_2.raw.bak")
    assert exact.returncode == 21
    loose = airlock(
        "pattern", "match", "--mode", "sysupdate", "--json", "foo_@v.raw", "foo_2.raw.bak"
    )
    assert loose.returncode == 0
    doc = json.loads(loose.stdout)
    assert doc["result"] == "yes"
    assert doc["fields"] == {"version": "2"}


def test_pattern_match_prints_fields() -> None:
    done = airlock("pattern", "match", "uki_@v+@l-@d.efi", "uki_1.2+3-0.efi")
    assert done.returncode == 0
    assert "version=1.2" in done.stdout
    assert "tries_left=3" in done.stdout
    assert "tries_done=0" in done.stdout


def test_pattern_match_invalid_pattern_is_config_error() -> None:
    done = airlock("pattern", "match", "foo_@v/bar.efi", "foo_1/bar.efi")
    assert done.returncode == 3
    assert "directly followed by '/'" in done.stderr
    assert "Traceback" not in done.stderr


def test_pattern_match_escapes_hostile_name() -> None:
    done = airlock("pattern", "match", "--json", "foo_@v", "foo_\x1b]0;pwn\x07")
    assert done.returncode == 21
    assert "\x1b" not in done.stdout
    assert json.loads(done.stdout)["result"] == "no"
