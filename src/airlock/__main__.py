# SPDX-License-Identifier: MIT
"""``python -m airlock``."""

from __future__ import annotations

import sys

from airlock.cli import main

if __name__ == "__main__":
    sys.exit(main())
