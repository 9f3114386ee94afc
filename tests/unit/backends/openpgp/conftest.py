# SPDX-License-Identifier: MIT
"""Session-wide throwaway keys for the OpenPGP tests (fixture in tests/support/keys.py)."""

from __future__ import annotations

from tests.support.keys import openpgp_keys

__all__ = ["openpgp_keys"]
