# SPDX-License-Identifier: MIT
"""airlock.cli.main: help, exit-code table, one-line errors."""

from __future__ import annotations

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


def test_exit_code_table_lists_every_status() -> None:
    table = exit_code_table()
    for status in ExitStatus:
        assert f"| {status.value} |" in table
