#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Generate docs/config.md: every host setting from its one declaration (``airlock.config``).

Usage: python3 scripts/config-reference.py [--check]   (--check: exit 1 if the file is out of date)
A test (tests/unit/test_docs.py) runs the check, so the reference cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "config.md"
sys.path.insert(0, str(ROOT / "src"))
from airlock.config import reference  # noqa: E402 - after the path is set


def main() -> int:
    text = reference()
    if "--check" in sys.argv[1:]:
        return 0 if OUT.exists() and OUT.read_text() == text else 1
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
