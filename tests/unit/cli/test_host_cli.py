# SPDX-License-Identifier: MIT
"""Host verbs' argument and config handling (no root: everything here fails before any action)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import schemas


def _airlock(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "airlock", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    schemas.check_output(args, done.stdout)
    return done


def test_update_needs_a_staging_dir() -> None:
    assert _airlock("update").returncode == 2


def test_spectrum_update_waits_for_the_lock_unless_its_config_says_otherwise(
    tmp_path: Path,
) -> None:
    out = _airlock("config", "show", "--spectrum")
    assert out.returncode == 0, out.stderr
    assert "wait = true  # spectrum-update" in out.stdout.splitlines()
    plain = _airlock("config", "show")
    assert "wait = false  # default" in plain.stdout.splitlines()
    cfg = tmp_path / "host.toml"
    cfg.write_text("[lock]\nwait = false\n[fetcher]\ntimeout_s = 60\n")
    out = _airlock("config", "show", "--spectrum", "--config", str(cfg))
    lines = out.stdout.splitlines()
    assert "wait = false  # file" in lines
    assert "timeout_s = 60.0  # file" in lines


def test_the_state_lives_in_the_staging_directory_by_default() -> None:
    out = _airlock("config", "show", "--spectrum")
    assert "# path is not set  # default" in out.stdout.splitlines()
    assert "state.json in the staging directory" in out.stdout


def test_bad_config_exits_3_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[fetcher]\ntimeout_s = -1\n")
    out = _airlock("update", "--config", str(cfg), "--json", str(tmp_path))
    assert out.returncode == 3
    assert out.stderr.startswith(f"error: Invalid host config {cfg}: [fetcher] timeout_s: must be")
    assert len(out.stderr.splitlines()) == 1
    assert '"code": "config.host"' in out.stdout


def test_a_bad_flag_value_exits_2(tmp_path: Path) -> None:
    out = _airlock("update", "--timeout", "soon", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.startswith("error: --timeout: must be a positive number of seconds")


def test_config_show_prints_each_value_with_its_origin(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[fetcher]\nbackend = "sandbox"\n[fetcher.qemu]\ncpus = 2\n')
    out = _airlock("config", "show", "--config", str(cfg), "--timeout", "9", "--wait")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert (
        lines[0] == f"# effective host config (file: {cfg}); after each value, where it came from"
    )
    assert 'backend = "sandbox"  # file' in lines
    assert "timeout_s = 9.0  # flag --timeout" in lines
    assert "wait = true  # flag --wait" in lines
    assert "cpus = 2  # file" in lines
    assert 'path = "/run/update-lock"  # default' in lines


def test_config_show_json(tmp_path: Path) -> None:
    out = _airlock("config", "show", "--json", "--fetcher", "qemu")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["v"] == 1
    assert doc["event"] == "config"
    assert doc["file"] is None
    assert doc["sections"]["fetcher"]["backend"] == {"value": "qemu", "origin": "flag"}
    assert doc["sections"]["fetcher.qemu"]["accel"] == {"value": "tcg", "origin": "default"}
    assert doc["sections"]["staging"]["qgroup_limit_bytes"] == {"value": None, "origin": "default"}


def test_config_needs_a_verb() -> None:
    out = _airlock("config")
    assert out.returncode == 2


def test_help_lists_the_exit_statuses() -> None:
    out = _airlock("update", "--help")
    assert out.returncode == 0
    assert "21 rejected" in out.stdout.replace("\n", " ")


def test_the_runtime_is_chosen_by_flag_or_file_and_shown(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[apply]\nruntime = "262"\n')
    shown = json.loads(_airlock("config", "show", "--config", str(cfg), "--json").stdout)
    assert shown["sections"]["apply"]["runtime"] == {"value": "262", "origin": "file"}
    flagged = _airlock("config", "show", "--config", str(cfg), "--runtime", "257", "--json")
    assert json.loads(flagged.stdout)["sections"]["apply"]["runtime"] == {
        "value": "257",
        "origin": "flag",
    }


def test_an_unknown_runtime_is_refused_in_one_line(tmp_path: Path) -> None:
    for verb in (["status"], ["config", "show"], ["update", str(tmp_path)]):
        out = _airlock(*verb, "--runtime", "258")
        assert out.returncode == 2, verb
        assert out.stderr == "error: --runtime: must be one of auto, host, 257, 262\n"
    cfg = tmp_path / "c.toml"
    cfg.write_text('[apply]\nruntime = "trixie"\n')
    out = _airlock("status", "--config", str(cfg))
    assert out.returncode == 3
    assert "[apply] runtime: must be one of auto, host, 257, 262" in out.stderr
