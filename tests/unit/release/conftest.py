# SPDX-License-Identifier: MIT
"""Session-wide throwaway signing keys for the release tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.releases import SigningKey, make_key


@pytest.fixture(scope="session")
def key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningKey]:
    k = make_key(tmp_path_factory.mktemp("key") / "k")
    yield k
    k.close()


@pytest.fixture(scope="session")
def key2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningKey]:
    k = make_key(tmp_path_factory.mktemp("key2") / "k", uid="Second <second@example.invalid>")
    yield k
    k.close()
