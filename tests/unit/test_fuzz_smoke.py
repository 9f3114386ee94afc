# SPDX-License-Identifier: MIT
"""The short fuzz run of CI: every target of ``fuzz/`` for a few thousand executions, no crash.

Each run is ``python -m fuzz.run TARGET`` in a child (libFuzzer ends its process with ``exit()``),
coverage-guided with atheris, seeded from the target's seeds (the hostile corpus's tricks).  The
long runs of docs/benchmarks.md use the same runner.  The canary target is the negative control:
the same runner must fail, and keep the crashing input, when a target crashes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz import TARGETS

ROOT = Path(__file__).resolve().parents[2]
# A few thousand executions each, about 20 s for all six on a loaded 2-core machine.
RUNS = {"tree": 1000, "version": 2000}
DEFAULT_RUNS = 3000
_SUMMARY = re.compile(r"fuzz (\w+): status=(-?\d+) execs=(\d+)")


def _fuzz(target: str, runs: int, artifacts: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    argv = [sys.executable, "-m", "fuzz.run", target, "--runs", str(runs),
            "--artifacts", os.fspath(artifacts)]  # fmt: skip
    result = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    found = _SUMMARY.search(result.stdout)
    assert found is not None, (result.stdout + result.stderr)[-3000:]
    assert found.group(1) == target
    return result, int(found.group(3))


@pytest.mark.parametrize("target", TARGETS)
def test_target_runs_without_a_crash(target: str, tmp_path: Path) -> None:
    runs = RUNS.get(target, DEFAULT_RUNS)
    result, execs = _fuzz(target, runs, tmp_path / "crashes")
    assert result.returncode == 0, result.stderr[-4000:]
    assert execs >= runs
    assert not (tmp_path / "crashes").exists()  # nothing written: the directory is removed


def test_a_crashing_target_fails_the_run_and_keeps_its_input(tmp_path: Path) -> None:
    """Negative control: the canary raises ``ValueError`` on input starting with ``!``."""
    result, _ = _fuzz("canary", 200000, tmp_path / "crashes")
    assert result.returncode != 0
    assert "ValueError: the canary fired" in result.stdout  # atheris prints the traceback there
    crashes = list((tmp_path / "crashes").iterdir())
    assert len(crashes) == 1
    assert crashes[0].read_bytes().startswith(b"!")


@pytest.mark.parametrize("target", TARGETS)
def test_seeds_pass_the_oracle(target: str) -> None:
    """The seeds run in-process (no atheris): the shared corpus stays valid input for each."""
    module = __import__(f"fuzz.{target}", fromlist=["test_one", "seeds"])
    seeds = list(module.seeds())
    assert seeds
    for seed in seeds:
        module.test_one(seed)
