# SPDX-License-Identifier: MIT
"""The generated completions, run in real bash and real zsh (airlock.cli.completion).

bash: the completion function is called as bash calls it (COMP_WORDS, COMP_CWORD) and COMPREPLY
is read back.  zsh: an interactive zsh with the generated ``_airlock`` on its fpath is driven
through zsh/zpty, a real TAB is typed and the candidates each ``compadd`` call offered are read
back (tests/support/zsh_complete.zsh).  Both use the committed files under packaging/, which
another test keeps equal to what the parser generates.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from airlock.cli import build_parser, completion
from airlock.cli.parsetree import tree

ROOT = Path(__file__).resolve().parents[3]
BASH = ROOT / "packaging/completions/airlock"
ZSH_DIR = ROOT / "packaging/completions"
ZSH_DRIVER = ROOT / "tests/support/zsh_complete.zsh"

BASH_HARNESS = r"""
source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
if [[ $1 == spectrum-update ]]; then _spectrum_update; else _airlock; fi
printf '%s\n' "${COMPREPLY[@]}"
"""


def _bash(cwd: Path, *words: str) -> list[str]:
    done = subprocess.run(
        ["bash", "--norc", "-c", BASH_HARNESS, "bash", str(BASH), *words],
        cwd=cwd, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return sorted(line for line in done.stdout.splitlines() if line)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "host.toml").touch()
    (tmp_path / "staging").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (("airlock", "up"), ["update", "updates-dir-check"]),
        (("airlock", "con"), ["config"]),
        (("airlock", "config", ""), ["show"]),
        (("airlock", "version-compare", "--s"), ["--strict"]),
        (("airlock", "update", "--fetcher", ""), ["qemu", "sandbox", "spectrum"]),
        (("airlock", "inspect", "--verifier", "s"), ["sqv"]),
        (("airlock", "--debug", "update", "--json", "--timeout", "5", ""), ["staging"]),
        (("airlock", "update", "--config", ""), ["host.toml", "staging"]),
        (("airlock", "demo", "--attack", "t"), ["tampered"]),
        (("spectrum-update", ""), ["staging"]),
        (("airlock", "update", "--timeout", ""), []),  # a number: nothing to offer
        (("airlock", "status", ""), ["staging"]),  # STAGING_DIR: whose state to show
        (("airlock", "updates-dir-check", "check", ""), ["staging"]),
        (("airlock", "updates-dir-check", "--"), []),  # no --help: the C tool has no options
    ],
)
def test_bash_completes_verbs_options_choices_and_paths(
    files: Path, words: tuple[str, ...], expected: list[str]
) -> None:
    assert _bash(files, *words) == expected


def test_bash_offers_every_option_of_a_verb(files: Path) -> None:
    offered = set(_bash(files, "airlock", "inspect", "--"))
    update = next(c for c in tree(build_parser()).children if c.path == ("inspect",))
    assert offered == {f for o in update.options for f in o.flags} | {"--help"}


def _zsh(cwd: Path, line: str) -> set[str]:
    done = subprocess.run(
        ["zsh", "-f", str(ZSH_DRIVER), str(ZSH_DIR), line],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {w for ln in done.stdout.splitlines() for w in ln.removeprefix("match:").split()}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("airlock up", {"update", "updates-dir-check"}),
        ("airlock config ", {"show"}),
        ("airlock update --fetcher ", {"sandbox", "qemu", "spectrum"}),
        ("airlock update --config ", {"host.toml", "staging"}),
        ("spectrum-update ", {"staging"}),
        ("airlock status ", {"staging"}),
        ("airlock updates-dir-check check ", {"staging"}),
    ],
)
def test_zsh_completes_verbs_choices_and_paths(files: Path, line: str, expected: set[str]) -> None:
    assert _zsh(files, line) == expected


def test_a_new_option_reaches_both_scripts() -> None:
    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "verb")
    assert verbs.choices is not None
    status = verbs.choices["status"]  # type: ignore[index]  # a dict of sub-parsers
    status.add_argument("--brand-new", choices=["yes", "no"], help="a test option")
    root = tree(parser)
    assert "\"airlock_status --brand-new=\"*) echo 'choice yes no'" in completion.bash(root)
    assert "'--brand-new[a test option]:{yes,no}:(yes no)'" in completion.zsh(root)
