# SPDX-License-Identifier: MIT
"""``airlock demo`` on a machine that cannot run it: one clear line, a documented status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_as_non_root_says_so_in_one_line_and_exits_5(tmp_path: Path) -> None:
    # A user namespace where we are uid 65534: the lab must refuse before touching anything.
    result = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-user=65534",
            "--map-group=65534",
            "--",
            sys.executable,
            "-m",
            "airlock",
            "demo",
            "--workdir",
            f"{tmp_path}/w",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 5, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: The lab needs root")
    assert lines[1].startswith("hint: ")
    assert "make demo" in lines[1]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "w").exists()
