#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Generate what a distribution installs besides the package: man pages and shell completions.

Usage: python3 scripts/packaging-files.py [--check]   (--check: exit 1 if a file is out of date)

All of it comes from airlock's own declarations: the argument parser (``airlock.cli.parsetree``),
the exit statuses, the error codes the source raises (``scripts/error-codes.py``) and the settings.
A test (tests/unit/test_docs.py) runs the check, so no page or completion can drift from the code.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "packaging"
sys.path.insert(0, str(ROOT / "src"))
from airlock.cli import (  # noqa: E402
    build_parser,
    completion,
    manpage,
)
from airlock.cli.parsetree import tree  # noqa: E402


def _error_codes() -> dict[str, int]:
    spec = importlib.util.spec_from_file_location("error_codes", ROOT / "scripts/error-codes.py")
    if spec is None or spec.loader is None:
        raise SystemExit("scripts/error-codes.py is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {code: module.STATUS.get(code.split(".")[0], 1) for code in module.collect()}


def render() -> dict[Path, str]:
    """Every generated file and its content."""
    root = tree(build_parser())
    return {
        OUT / "man/airlock.8": manpage.airlock_page(root, codes=_error_codes()),
        OUT / "man/spectrum-update.8": manpage.spectrum_update_page(),
        OUT / "man/airlock.toml.5": manpage.config_page(),
        OUT / "completions/airlock": completion.bash(root),
        OUT / "completions/_airlock": completion.zsh(root),
    }


def main() -> int:
    files = render()
    if "--check" in sys.argv[1:]:
        stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
        for path in stale:
            sys.stderr.write(f"out of date: {path.relative_to(ROOT)}\n")
        return 1 if stale else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
