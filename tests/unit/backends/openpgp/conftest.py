# SPDX-License-Identifier: MIT
"""Session-wide throwaway keys for the OpenPGP tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.keys import KeySet, kill_agent


@pytest.fixture(scope="session")
def openpgp_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeySet]:
    """Every key the signature tests need, generated once."""
    keys = KeySet.build(tmp_path_factory.mktemp("openpgp"))
    yield keys
    kill_agent(keys.home)
