# SPDX-License-Identifier: MIT
"""The whole hostile corpus through the real ``airlock inspect`` CLI, as root.

Root adds what unprivileged tests cannot build (device nodes) and runs the CLI as the host would.
Each case asserts its exit status, its error code in the --json object, an unchanged tree and a
silent FIFO canary.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock.errors import ExitStatus
from tests.support import schemas
from tests.support.corpus import (
    Case,
    FifoCanary,
    Staging,
    all_cases,
    cli_args,
    tree_state,
    write_definitions,
)
from tests.support.keys import KeySet, kill_agent

# The room cases need the host's target disk, which `airlock inspect` does not know (ADR 0160).
CASES = [c for c in all_cases() if c.name != "ten_thousand_files" and "room" not in c.policy]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeySet]:
    keyset = KeySet.build(tmp_path_factory.mktemp("keys"))
    yield keyset
    kill_agent(keyset.home)


@pytest.fixture(scope="module")
def defdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_definitions(tmp_path_factory.mktemp("defs") / "sysupdate.d")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_case_via_cli(case: Case, tmp_path: Path, keys: KeySet, defdir: Path) -> None:
    s = Staging(tmp_path, keys)
    try:
        case.build(s)
    finally:
        s.close()
    before = tree_state(s.dir)
    with FifoCanary(s.canary) as canary:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "airlock",
                "inspect",
                os.fspath(s.dir),
                "--json",
                "--definitions",
                os.fspath(defdir),
                "--keyring",
                os.fspath(keys.keyring),
                *cli_args(case, keys),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        breached = canary.stop()
    assert not breached, "a file outside the staging directory was opened"
    (obj,) = schemas.check_output(("inspect", "--json"), proc.stdout)
    if case.expect is None:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert obj["accepted"] is True
        assert obj["version"] == case.version
    else:
        assert proc.returncode == ExitStatus.REJECTED, proc.stdout + proc.stderr
        assert obj["errors"][0]["code"] == case.expect
    assert proc.stdout.isascii()
    assert proc.stderr.isascii()
    assert tree_state(s.dir) == before
