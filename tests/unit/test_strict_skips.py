# SPDX-License-Identifier: MIT
"""tests/support/strict_skips.py: under AIRLOCK_REQUIRE_ROOT=1 every kind of skip fails the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SUITES = {
    "skipif": "import pytest\n@pytest.mark.skipif(True, reason='r')\ndef test_a(): pass\n",
    "skip-mark": "import pytest\n@pytest.mark.skip(reason='r')\ndef test_a(): pass\n",
    "runtime": "import pytest\ndef test_a():\n    pytest.skip('missing oracle')\n",
    "collection": "import pytest\npytest.skip('no tool', allow_module_level=True)\n",
    "importorskip": "import pytest\npytest.importorskip('no_such_module_here')\n"
    "def test_a(): pass\n",
    "fixture": "import pytest\n@pytest.fixture\ndef f():\n    pytest.skip('x')\n"
    "def test_a(f): pass\n",
}


def _run(tmp_path: Path, body: str, require: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_ok.py").write_text("def test_runs():\n    assert True\n")
    if body:
        (tmp_path / "test_scratch.py").write_text(body)
    env = {k: v for k, v in os.environ.items() if k != "AIRLOCK_REQUIRE_ROOT"}
    if require:
        env["AIRLOCK_REQUIRE_ROOT"] = "1"
    env["PYTHONPATH"] = os.fspath(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p",
         "tests.support.strict_skips", "-q", "-c", "/dev/null", "--rootdir", os.fspath(tmp_path),
         os.fspath(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False, env=env, cwd=tmp_path,
    )  # fmt: skip


@pytest.mark.parametrize("kind", sorted(SUITES))
def test_a_skip_fails_the_run_when_root_is_required(tmp_path: Path, kind: str) -> None:
    done = _run(tmp_path, SUITES[kind], require=True)
    assert done.returncode == 1, done.stdout[-2000:]
    assert "skipped: 1" in done.stdout
    assert "the run fails" in done.stdout


@pytest.mark.parametrize("kind", sorted(SUITES))
def test_negative_control_the_same_skip_passes_without_the_requirement(
    tmp_path: Path, kind: str
) -> None:
    done = _run(tmp_path, SUITES[kind], require=False)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "skipped: 1" in done.stdout


def test_a_clean_run_reports_zero_skips(tmp_path: Path) -> None:
    done = _run(tmp_path, "", require=True)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "airlock: tests ran: 1, skipped: 0" in done.stdout
