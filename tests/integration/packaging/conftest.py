# SPDX-License-Identifier: MIT
"""What the packaging tests share: ``make dist`` run once per session into a temporary directory."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from airlock import __version__
from airlock.layout import values

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True, slots=True, kw_only=True)
class Dist:
    """The files ``make dist`` made."""

    sdist: Path
    wheel: Path


def make(*targets: str, **variables: str | Path) -> subprocess.CompletedProcess[str]:
    """``make TARGET… VAR=value…`` in the source tree with this test run's virtualenv.

    The virtualenv's stamp is declared up to date (``-o``), so no test ever runs pip.
    """
    venv = Path(sys.prefix)
    argv = [
        "make",
        "--no-print-directory",
        "-C",
        str(ROOT),
        "-o",
        str(venv / values()["VENV_STAMP"]),
    ]
    argv += [*targets, f"VENV={venv}", *(f"{k}={v}" for k, v in variables.items())]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """``make dist`` into a fresh directory (offline: the pinned tools, no build isolation)."""
    out = tmp_path_factory.mktemp("dist")
    done = make("dist", DIST=out)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return Dist(
        sdist=out / f"airlock-{__version__}.tar.gz",
        wheel=out / f"airlock-{__version__}-py3-none-any.whl",
    )
