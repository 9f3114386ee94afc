# SPDX-License-Identifier: MIT
"""The linters as tests (mkosi's tests/test_linters.py idea): ruff and strict mypy stay clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


RUFF = [str(BIN / "ruff"), "check", "--no-cache", "src", "tests", "bench", "scripts", "fuzz"]
FORMAT = [str(BIN / "ruff"), "format", "--check", "--no-cache",
          "src", "tests", "bench", "scripts", "fuzz"]  # fmt: skip
MYPY = [str(BIN / "mypy"), "--no-incremental", "--cache-dir=/dev/null"]


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(RUFF, id="ruff"),
        pytest.param(FORMAT, id="ruff-format"),
        pytest.param(MYPY, id="mypy"),
    ],
)
def test_linter_is_clean(argv: list[str]) -> None:
    result = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
