# SPDX-License-Identifier: MIT
"""Target ``canary``: the harness's negative control (not part of ``all``).

It raises ``ValueError`` on any input that starts with ``!``; a working runner finds that within
a few hundred executions, exits non-zero and leaves the input in the artifacts directory.
"""

from __future__ import annotations

from collections.abc import Iterator

from airlock.errors import UsageError
from fuzz.common import refusals


def test_one(data: bytes) -> None:
    """Refuse empty input the documented way; crash on ``!``."""
    with refusals((UsageError,), "usage."):
        if not data:
            raise UsageError("empty", code="usage.invalid")
        if data[:1] == b"!":
            raise ValueError("the canary fired")


def seeds() -> Iterator[bytes]:
    """One harmless input."""
    yield b"a"
