# SPDX-License-Identifier: MIT
"""``airlock inspect`` as a black box: exit statuses, the --json object, escaping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airlock.errors import ExitStatus
from tests.support import schemas
from tests.support.corpus import Staging, payload_names, tree_state, write_definitions
from tests.support.keys import KeySet, kill_agent


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeySet]:
    keyset = KeySet.build(tmp_path_factory.mktemp("keys"))
    yield keyset
    kill_agent(keyset.home)


@pytest.fixture(scope="module")
def defdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_definitions(tmp_path_factory.mktemp("defs") / "sysupdate.d")


@pytest.fixture
def staging(tmp_path: Path, keys: KeySet) -> Iterator[Staging]:
    s = Staging(tmp_path, keys)
    yield s
    s.close()


def inspect(s: Staging, defdir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "airlock",
            "inspect",
            os.fspath(s.dir),
            "--definitions",
            os.fspath(defdir),
            "--keyring",
            os.fspath(s.keys.keyring),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    schemas.check_output(("inspect", *extra), done.stdout)
    return done


def as_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout + proc.stderr
    obj = json.loads(lines[0])
    assert isinstance(obj, dict)
    return obj


def test_good_release_json(staging: Staging, defdir: Path) -> None:
    staging.payloads("1")
    staging.release()
    staging.put(".sysupdate\x1b[31m", b"")
    before = tree_state(staging.dir)
    proc = inspect(
        staging, defdir, "--json", "--installed", "1", "--trusted-fingerprint", staging.keys.good
    )
    assert proc.returncode == 0, proc.stderr
    obj = as_json(proc)
    assert obj["accepted"] is True
    assert obj["version"] == "2"
    assert obj["newer"] is True
    assert {f["name"] for f in obj["files"]} == set(payload_names().values())
    assert obj["bytes_hashed"] == sum(f["size"] for f in obj["files"])
    assert [s["fingerprint"] for s in obj["signers"]] == [staging.keys.good]
    assert any(d["display"] == repr(".sysupdate\x1b[31m") for d in obj["dropped"])
    assert sum(d["reason"].startswith("stale version") for d in obj["dropped"]) == 3
    assert obj["errors"] == []
    assert proc.stdout.isascii()
    assert "\x1b" not in proc.stdout
    assert tree_state(staging.dir) == before


def test_not_newer_is_accepted_and_says_so(staging: Staging, defdir: Path) -> None:
    staging.release()
    proc = inspect(staging, defdir, "--installed", "2")
    assert proc.returncode == 0, proc.stderr
    assert "not newer than installed 2" in proc.stdout


def test_rejection_json_carries_code_and_escaped_name(staging: Staging, defdir: Path) -> None:
    staging.release()
    staging.put(b"Spectrum_3\x1b]0;owned\x07.efi", b"")
    proc = inspect(staging, defdir, "--json")
    assert proc.returncode == ExitStatus.REJECTED
    obj = as_json(proc)
    assert obj["accepted"] is False
    [err] = obj["errors"]
    assert err["code"] == "reject.name"
    assert err["display"] == repr("Spectrum_3\x1b]0;owned\x07.efi")
    assert "\x1b" not in proc.stdout + proc.stderr
    assert "\x07" not in proc.stdout + proc.stderr


def test_rejection_without_json_prints_one_error_line(staging: Staging, defdir: Path) -> None:
    staging.release(signers=("stranger",))
    proc = inspect(staging, defdir)
    assert proc.returncode == ExitStatus.REJECTED
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr


def test_missing_keyring_is_a_config_error(staging: Staging, defdir: Path) -> None:
    staging.release()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "airlock",
            "inspect",
            os.fspath(staging.dir),
            "--definitions",
            os.fspath(defdir),
            "--keyring",
            os.fspath(staging.root / "nope"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == ExitStatus.CONFIG


def test_bad_fingerprint_is_a_usage_error(staging: Staging, defdir: Path) -> None:
    proc = inspect(staging, defdir, "--trusted-fingerprint", "abc")
    assert proc.returncode == ExitStatus.USAGE


@pytest.mark.parametrize(
    "when", ["@-99999999999999999999", "@99999999999999999999", "@1e3", "2026-13-01", "now"]
)
def test_out_of_range_not_before_is_a_usage_error(
    staging: Staging, defdir: Path, when: str
) -> None:
    # Review finding: an epoch outside time_t escaped as "internal error: OverflowError" (exit 1).
    proc = inspect(staging, defdir, "--not-before", when)
    assert proc.returncode == ExitStatus.USAGE, proc.stderr
    assert "internal error" not in proc.stderr


def test_staging_symlink_is_not_followed(staging: Staging, defdir: Path) -> None:
    staging.release()
    link = staging.root / "link"
    link.symlink_to(staging.dir)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "airlock",
            "inspect",
            os.fspath(link),
            "--definitions",
            os.fspath(defdir),
            "--keyring",
            os.fspath(staging.keys.keyring),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == ExitStatus.HOST


def test_cap_override(staging: Staging, defdir: Path) -> None:
    staging.release()
    proc = inspect(staging, defdir, "--json", "--max-file-bytes", "10")
    assert proc.returncode == ExitStatus.REJECTED
    assert as_json(proc)["errors"][0]["code"] == "reject.size"


@pytest.mark.parametrize("backend", ["sqv", "gpgv"])
def test_both_verifier_backends_agree(staging: Staging, defdir: Path, backend: str) -> None:
    raw = staging.release()
    staging.put("SHA256SUMS.sha256.asc", staging.keys.sign(raw + b"x", staging.keys.good))
    proc = inspect(staging, defdir, "--json", "--verifier", backend)
    assert proc.returncode == ExitStatus.REJECTED
    assert as_json(proc)["errors"][0]["code"] == "reject.signature"
    os.unlink(staging.dir / "SHA256SUMS.sha256.asc")
    proc = inspect(staging, defdir, "--json", "--verifier", backend)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert as_json(proc)["version"] == "2"
