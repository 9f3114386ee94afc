# SPDX-License-Identifier: MIT
"""The promised JSON shapes and ``airlock status`` on a real host: check, status, update, status,
inspect, each output checked against the shipped schema (strictly: no undocumented field).

Real btrfs, bubblewrap and systemd-sysupdate 257 writing the world's A/B image (world.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import schemas

from .world import World

pytestmark = [pytest.mark.btrfs, pytest.mark.sandbox, pytest.mark.sysupdate]


def _status(w: World) -> dict[str, object]:
    done = w.airlock("status", "--json")
    assert done.returncode == 0, done.stderr
    (body,) = schemas.check_output(("status", "--json"), done.stdout)
    return body


def test_check_status_update_status_tell_the_operator_what_next(world: World) -> None:
    w = world
    before = _status(w)
    assert before["booted"] == "1"
    assert before["installed"] == ["1"]
    assert before["pending"] == []
    assert before["problems"] == []
    assert before["last_check"] is None
    assert before["next"] == {
        "action": "check",
        "command": "airlock check STAGING_DIR",
        "reason": "no successful check yet: nothing says whether a newer release exists",
    }
    runtime = before["runtime"]
    assert isinstance(runtime, dict)
    assert runtime["version"] >= 257

    check = w.airlock("check", str(w.staging), "--json")
    assert check.returncode == 100, check.stderr
    assert json.loads(check.stdout.splitlines()[-1])["outcome"] == "available"
    checked = _status(w)
    assert checked["available"] == "2"
    assert checked["next"]["action"] == "update"  # type: ignore[index]  # parsed JSON
    last = checked["last_check"]
    assert isinstance(last, dict)
    assert last["stale"] is False

    assert w.update().returncode == 0
    updated = _status(w)
    assert updated["installed"] == ["2", "1"]  # newest first, as systemd-sysupdate lists them
    assert updated["pending"] == ["2"]
    assert updated["available"] is None
    assert updated["floor"] == "1"  # rises to 2 once 2 has booted and been blessed
    assert updated["next"]["action"] == "reboot"  # type: ignore[index]  # parsed JSON


def test_status_survives_a_corrupt_state_file_and_says_so(world: World) -> None:
    world.state_file.parent.mkdir(parents=True, exist_ok=True)
    world.state_file.write_bytes(b"\x00garbage")
    body = _status(world)
    assert body["installed"] == ["1"]  # everything else is still read
    problems = body["problems"]
    assert isinstance(problems, list)
    assert [p["code"] for p in problems] == ["config.state"]
    assert body["next"]["action"] == "fix"  # type: ignore[index]  # parsed JSON


def test_inspect_json_of_an_accepted_and_a_refused_release(world: World, tmp_path: Path) -> None:
    w = world

    def inspect(directory: Path) -> subprocess.CompletedProcess[str]:
        defs, keyring = str(w.root / "etc/sysupdate.d"), str(w.key.pubring)
        argv = ["inspect", str(directory), "--json", "--installed", "1",
                "--definitions", defs, "--keyring", keyring]  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "airlock", *argv],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        schemas.check_output(argv, done.stdout)
        return done

    accepted = inspect(w.release)
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["version"] == "2"
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for name, data in w.files.items():
        (tampered / name).write_bytes(data)
    for name in ("SHA256SUMS", "SHA256SUMS.gpg"):
        (tampered / name).write_bytes((w.release / name).read_bytes())
    root = next(n for n in w.files if n.endswith(".root"))
    raw = bytearray(w.files[root])
    raw[0] ^= 1
    (tampered / root).write_bytes(bytes(raw))
    refused = inspect(tampered)
    assert refused.returncode == 21
    assert json.loads(refused.stdout)["errors"][0]["code"] == "reject.digest"
