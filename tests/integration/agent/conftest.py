# SPDX-License-Identifier: MIT
"""The agent's test world (share, signed releases, `airlock serve`), shared with the unit tests."""

from __future__ import annotations

from tests.unit.agent.conftest import server, signing_key, stranger_key, world

__all__ = ["server", "signing_key", "stranger_key", "world"]
