# SPDX-License-Identifier: MIT
"""airlock.cli.main: help, exit-code table, one-line errors."""

from __future__ import annotations

import logging

import pytest

from airlock.cli import exit_code_table, main
from airlock.errors import ExitStatus


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "airlock" in capsys.readouterr().out


def test_unknown_verb_is_a_one_line_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-verb"]) == ExitStatus.USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_each_run_logs_to_its_own_stderr_and_leaves_no_handler(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An in-process caller (the lab, a test) runs main() many times, each with its own stderr: a
    handler left on a run's stderr would write to a closed stream in a later run."""
    log = logging.getLogger("airlock")
    before = (list(log.handlers), log.level, log.propagate)
    with pytest.raises(SystemExit):  # argparse exits from inside the run
        main(["--help"])
    assert (list(log.handlers), log.level, log.propagate) == before

    def run_warning(_args: object) -> int:
        logging.getLogger("airlock.test").warning("seen by this run")
        return 0

    monkeypatch.setattr("airlock.cli._run", lambda *_a, **_k: run_warning(None))
    for _ in range(3):
        assert main(["--exit-codes"]) == 0
        assert capsys.readouterr().err.count("seen by this run") == 1  # one handler, this stderr
    assert (list(log.handlers), log.level, log.propagate) == before


def test_exit_code_table_lists_every_status() -> None:
    table = exit_code_table()
    for status in ExitStatus:
        assert f"| {status.value} |" in table


_LOADED = """
import sys
from airlock.cli import build_parser
build_parser(sys.argv[1:])
print(" ".join(sorted(m for m in sys.modules if m.startswith("airlock."))))
"""
HOST_ONLY = (
    "airlock.pipeline",
    "airlock.trusted",
    "airlock.untrusted",
    "airlock.backends.staging",
    "airlock.backends.fetcher",
    "airlock.backends.apply",
    "airlock.release",
    "airlock.lab",
)


def _loaded(*argv: str) -> set[str]:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _LOADED, *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return set(out.split())


def test_the_agent_verb_loads_no_host_code() -> None:
    loaded = _loaded("agent", "--share", "/host")
    assert "airlock.agent.main" in loaded
    assert not [m for m in loaded if m.startswith(HOST_ONLY)]


def test_help_loads_every_verb_module() -> None:
    # Negative control for the test above: the detector does see host modules when loaded.
    loaded = _loaded()
    assert "airlock.pipeline.update" in loaded
    assert "airlock.agent.main" in loaded
