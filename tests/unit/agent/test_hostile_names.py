# SPDX-License-Identifier: MIT
"""A hostile server's odd file names never become files outside the share's updates/ (or in it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airlock.agent.main import run
from airlock.agent.options import Outcome
from airlock.errors import FetchError
from airlock.events import ListReporter
from airlock.release.serve import Server
from tests.unit.agent.conftest import World, release_names


def _tree(root: Path) -> set[str]:
    return {
        os.path.relpath(os.path.join(d, n), root)
        for d, dirs, files in os.walk(root)
        for n in dirs + files
    }


# Names formats.manifest accepts (systemd 257 would too) but the agent must not fetch.
ODD = [
    ".Spectrum_2.efi",  # a dot-file: hidden, and the host's temporaries are dot-files
    "-Spectrum_2.efi",  # an option to a tool
    "Spectrum_2.efi\u202e",  # a bidi override
    "Spectrum 2.efi",  # a space
    "Spectrum_2.efi.",  # trailing dot
    "SHA256SUMS.sha256",  # not a transfer's name
    "Spectrum_2_zz.root",  # prefix matches, @u does not: no EXACT match
    "Spectrum_2_0123456789abcdef0123456789abcdef.root.x",  # a suffix after an exact match
]


def test_odd_names_are_ignored_and_never_requested(world: World, server: Server) -> None:
    before = _tree(world.root)
    files = world.publish("2", extra=[(n, b"evil") for n in ODD])
    result = run(world.options(), ListReporter())
    assert result.outcome == Outcome.DOWNLOADED
    requested = {str(r["path"]) for r in server.requests()}
    for name in ODD:
        assert name not in requested
        assert repr(name)[1:-1] not in requested
    assert set(world.updates_listing()) == {
        *release_names("2"),
        "SHA256SUMS",
        "SHA256SUMS.gpg",
        "SHA256SUMS.sha256.asc",
    }
    created = _tree(world.root) - before
    outside = {p for p in created if not p.startswith(("share/updates/", "origin/"))}
    assert outside == set()
    assert files


@pytest.mark.parametrize("name", ["../../escape", "Spectrum_2.efi/../../x", "/etc/passwd"])
def test_manifest_with_path_names_is_refused_whole(world: World, server: Server, name: str) -> None:
    world.publish("2", extra=[(name, b"")])
    before = _tree(world.root)
    with pytest.raises(FetchError) as info:
        run(world.options(), ListReporter())
    assert info.value.code == "fetch.manifest"
    assert _tree(world.root) == before


def test_negative_control_a_legit_name_of_the_same_shape_is_fetched(
    world: World, server: Server
) -> None:
    world.publish("2")
    run(world.options(), ListReporter())
    requested = {str(r["path"]) for r in server.requests()}
    assert set(release_names("2")) <= requested


def test_two_files_for_one_transfer_and_version_are_refused(world: World, server: Server) -> None:
    world.publish("2")
    uuid2 = "ffffffffffffffffffffffffffffffff"
    (world.origin / f"Spectrum_2_{uuid2}.root").write_bytes(b"twin")
    world.sign()
    with pytest.raises(FetchError) as info:
        run(world.options(), ListReporter())
    assert info.value.code == "fetch.manifest"
