# SPDX-License-Identifier: MIT
"""Session fixtures for judge tests: throwaway keys and Spectrum's transfer definitions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock.formats import definitions
from tests.support.corpus import write_definitions
from tests.support.keys import KeySet, kill_agent


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeySet]:
    keyset = KeySet.build(tmp_path_factory.mktemp("keys"))
    yield keyset
    kill_agent(keyset.home)


@pytest.fixture(scope="session")
def defdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_definitions(tmp_path_factory.mktemp("defs") / "sysupdate.d")


@pytest.fixture(scope="session")
def transfers(defdir: Path) -> tuple[definitions.Transfer, ...]:
    return definitions.load_dir(
        defdir, specifiers=definitions.Specifiers.from_os_release("IMAGE_VERSION=1\n")
    )
