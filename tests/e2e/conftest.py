# SPDX-License-Identifier: MIT
"""The wheel the project builds, for the lab's Spectrum-shaped host (built once per session)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import airlock

REPO = Path(__file__).resolve().parents[2]
SRC = Path(airlock.__file__).resolve().parents[1]  # the tree under test (a mutant's copy too)


@pytest.fixture(scope="session")
def airlock_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel`` of a copy of the tree (no build files left in the checkout)."""
    src = tmp_path_factory.mktemp("wheel-src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(SRC, src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for data in ("packaging/man", "packaging/completions"):  # the wheel's data files (pyproject)
        shutil.copytree(REPO / data, src / data)
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = out.glob("airlock-*.whl")
    return wheel
