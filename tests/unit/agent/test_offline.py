# SPDX-License-Identifier: MIT
"""file:// offline source (a USB stick bound read-only into the VM): same rules as the network."""

from __future__ import annotations

import os

import pytest

from airlock.agent.main import run
from airlock.agent.options import Outcome
from airlock.errors import FetchError
from airlock.events import ListReporter
from tests.unit.agent.conftest import World, release_names


def test_offline_source_downloads_then_is_a_noop(world: World) -> None:
    files = world.publish("1")
    world.set_url(f"file://{world.origin}")
    first = run(world.options(), ListReporter())
    assert first.outcome == Outcome.DOWNLOADED
    assert first.version == "1"
    for name, data in files.items():
        assert (world.updates / name).read_bytes() == data
    second = run(world.options(), ListReporter())
    assert second.outcome == Outcome.NOTHING_NEW
    assert second.payload_bytes == 0


def test_offline_source_with_one_signature_name(world: World) -> None:
    world.publish("1", signatures=("SHA256SUMS.gpg",))
    world.set_url(f"file://{world.origin}/")
    assert run(world.options(), ListReporter()).signatures == ("SHA256SUMS.gpg",)


def test_offline_symlink_is_refused(world: World) -> None:
    world.publish("1")
    secret = world.root / "vm-secret"
    secret.write_bytes(b"not for the host")
    efi = world.origin / release_names("1")[2]
    efi.unlink()
    os.symlink(secret, efi)
    world.sign()
    world.set_url(f"file://{world.origin}")
    with pytest.raises(FetchError) as info:
        run(world.options(), ListReporter())
    assert info.value.code == "fetch.file"
    assert not (world.updates / efi.name).exists()


def test_offline_fifo_is_refused_without_blocking(world: World) -> None:
    world.publish("1")
    os.mkfifo(world.origin / "SHA256SUMS.sha256.asc.fifo")
    (world.origin / "SHA256SUMS.sha256.asc").unlink()
    os.rename(world.origin / "SHA256SUMS.sha256.asc.fifo", world.origin / "SHA256SUMS.sha256.asc")
    world.set_url(f"file://{world.origin}")
    with pytest.raises(FetchError) as info:
        run(world.options(timeout_s=5.0), ListReporter())
    assert info.value.code == "fetch.file"


def test_missing_offline_directory_fails_within_the_time_limit(world: World) -> None:
    world.set_url(f"file://{world.root}/no-stick")
    with pytest.raises(FetchError) as info:
        run(world.options(timeout_s=1.5), ListReporter())
    assert info.value.code in ("fetch.timeout", "fetch.network")
