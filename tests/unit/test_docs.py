# SPDX-License-Identifier: MIT
"""Generated documentation stays in step with the code (CONTRIBUTING.md, "Decisions and
documentation")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from airlock.cli import exit_code_table

ROOT = Path(__file__).resolve().parents[2]


def test_error_code_table_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/error-codes.py"), "--check"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, "run: python3 scripts/error-codes.py"


def test_config_reference_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/config-reference.py"), "--check"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, "run: python3 scripts/config-reference.py"


def test_readme_carries_the_generated_exit_status_table() -> None:
    assert exit_code_table() in (ROOT / "README.md").read_text()


def test_man_pages_and_completions_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/packaging-files.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"run: python3 scripts/packaging-files.py\n{result.stderr}"
