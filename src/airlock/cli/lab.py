# SPDX-License-Identifier: MIT
"""CLI verbs: lab (filled in by its issue)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's verbs to the parser."""
