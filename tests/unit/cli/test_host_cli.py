# SPDX-License-Identifier: MIT
"""Host verbs' argument and config handling (no root: everything here fails before any action)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _airlock(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airlock", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_update_needs_a_staging_dir() -> None:
    assert _airlock("update").returncode == 2


def test_spectrum_and_config_are_exclusive(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    out = _airlock("update", "--spectrum", "--config", str(cfg), str(tmp_path))
    assert out.returncode == 2
    assert "mutually exclusive" in out.stderr


def test_bad_config_exits_3_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("vm_timeout_s = -1\n")
    out = _airlock("update", "--config", str(cfg), "--json", str(tmp_path))
    assert out.returncode == 3
    assert out.stderr.startswith("error: Invalid host config: vm_timeout_s")
    assert '"code": "config.host"' in out.stdout


def test_help_lists_the_exit_statuses() -> None:
    out = _airlock("update", "--help")
    assert out.returncode == 0
    assert "21 rejected" in out.stdout.replace("\n", " ")
