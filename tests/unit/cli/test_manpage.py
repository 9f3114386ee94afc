# SPDX-License-Identifier: MIT
"""The generated man pages (airlock.cli.manpage): complete, valid roff, rendered by man(1)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest

from airlock import config, settings
from airlock.cli import build_parser, manpage
from airlock.cli.parsetree import tree, walk
from airlock.errors import ExitStatus

ROOT = Path(__file__).resolve().parents[3]
MAN = ROOT / "packaging/man"
PAGES = ("airlock.8", "spectrum-update.8", "airlock.toml.5")


def _codes() -> set[str]:
    spec = importlib.util.spec_from_file_location("error_codes", ROOT / "scripts/error-codes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return set(module.collect())


def test_esc_neutralises_roff_controls_and_keeps_ascii() -> None:
    assert manpage.esc(".SH evil\n'xx\na\\b - c ≥") == (
        "\\&.SH evil\n\\&'xx\na\\eb \\- c \\[u2265]"
    )


def test_airlock_page_names_every_verb_option_status_and_code() -> None:
    page = (MAN / "airlock.8").read_text()
    for command in walk(tree(build_parser())):
        if command.path and not command.children:
            assert f'.SS "{manpage.esc(command.name)}"' in page
        for option in command.options:
            for flag in option.flags:
                assert manpage.bold(flag) in page, flag
    statuses = page.split(".SH EXIT STATUS")[1].split(".SH")[0]
    for status in ExitStatus:
        assert f".TP\n\\fB{int(status)}\\fR\n" in statuses
    codes = page.split(".SH ERROR CODES")[1].split(".SH")[0]
    missing = {c for c in _codes() if manpage.esc(c) not in codes}
    assert not missing


def test_config_page_names_every_setting() -> None:
    page = (MAN / "airlock.toml.5").read_text()
    for table, (_, cls) in config.sections().items():
        assert f'.SS "[{manpage.esc(table)}]"' in page
        for key, _ in settings.declarations(cls):
            assert f".TP\n{manpage.bold(key)} = " in page, f"{table}.{key}"


@pytest.mark.parametrize("name", PAGES)
def test_groff_reads_the_page_without_a_warning(name: str) -> None:
    done = subprocess.run(
        ["groff", "-t", "-man", "-Tutf8", "-ww", "-z", str(MAN / name)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0
    assert done.stderr == ""


def test_man_renders_the_sections_an_operator_looks_for() -> None:
    env = {**os.environ, "MANWIDTH": "80", "LANG": "C.UTF-8"}
    done = subprocess.run(
        ["man", "-l", str(MAN / "airlock.8")],
        capture_output=True, text=True, timeout=60, check=True, env=env,
    )  # fmt: skip
    text = re.sub(".\b", "", done.stdout)  # overstrike bold and underline
    for heading in ("SYNOPSIS", "COMMANDS", "EXIT STATUS", "ERROR CODES", "JSON OUTPUT", "FILES"):
        assert f"\n{heading}\n" in text
    assert "airlock update [--config CONFIG]" in text
    assert "reject.digest" in text
