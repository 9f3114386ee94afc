# SPDX-License-Identifier: MIT
"""airlock.agent.signed: a release published between the manifest and signature requests."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from airlock.agent import signed
from airlock.agent.fetch import Budget, Downloader
from airlock.agent.offline import FileSource
from airlock.agent.options import Options
from airlock.agent.transport import Body, body_from_bytes
from airlock.errors import FetchError
from airlock.events import ListReporter
from tests.unit.agent.conftest import World


class _RacingSource(FileSource):
    """Serves an older SHA256SUMS for the first request only (the publisher was mid-update)."""

    def __init__(self, url: str, stale: bytes | None) -> None:
        super().__init__(url)
        self.stale = stale

    @contextlib.contextmanager
    def open(
        self, name: str, *, offset: int = 0, validator: str | None = None
    ) -> Iterator[Body | None]:
        if name == "SHA256SUMS" and self.stale is not None:
            data, self.stale = self.stale, None
            yield body_from_bytes(data)
            return
        with super().open(name, offset=offset, validator=validator) as body:
            yield body


def _downloader(source: FileSource) -> Downloader:
    budget = Budget(
        deadline=time.monotonic() + 30,
        max_manifest_bytes=1 << 20,
        max_signature_bytes=1 << 16,
        max_file_bytes=1 << 30,
        max_total_bytes=1 << 30,
    )
    return Downloader(source, budget, ListReporter())


def test_manifest_changed_mid_fetch_is_fetched_again(world: World) -> None:
    world.publish("1")
    old = (world.origin / "SHA256SUMS").read_bytes()
    world.publish("2")
    source = _RacingSource(f"file://{world.origin}", stale=old)
    release = signed.fetch_release(
        _downloader(source), keyring=world.key.pubring, options=Options(), reporter=ListReporter()
    )
    assert release.raw_manifest == (world.origin / "SHA256SUMS").read_bytes()
    assert release.raw_manifest != old


def test_negative_control_unchanged_manifest_with_bad_signature_fails(world: World) -> None:
    world.publish("1")
    (world.origin / "SHA256SUMS.gpg").write_bytes(b"garbage")
    source = _RacingSource(f"file://{world.origin}", stale=None)
    with pytest.raises(FetchError) as info:
        signed.fetch_release(
            _downloader(source),
            keyring=world.key.pubring,
            options=Options(),
            reporter=ListReporter(),
        )
    assert info.value.code == "fetch.signature"
