# SPDX-License-Identifier: MIT
"""airlock.agent native mode against `airlock serve`: download, no-op, resume, signatures."""

from __future__ import annotations

import hashlib
from typing import cast

import pytest

from airlock.agent.main import run
from airlock.agent.options import Outcome
from airlock.errors import FetchError
from airlock.events import ListReporter, Step, StepProgress
from airlock.release.serve import Faults, ServeConfig, Server, serving
from tests.unit.agent.conftest import BOTH, MIB, Key, World, payload_bytes, release_names


def _assert_release_present(world: World, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (
            hashlib.sha256((world.updates / name).read_bytes()).digest()
            == hashlib.sha256(data).digest()
        ), name
    assert (world.updates / "SHA256SUMS").read_bytes() == (world.origin / "SHA256SUMS").read_bytes()


def test_fresh_download_fetches_the_release_and_both_signatures(
    world: World, server: Server
) -> None:
    files = world.publish("1.0")
    reporter = ListReporter()
    result = run(world.options(), reporter)
    assert result.outcome == Outcome.DOWNLOADED
    assert result.version == "1.0"
    assert result.files_downloaded == 3
    _assert_release_present(world, files)
    for name in BOTH:
        assert (world.updates / name).read_bytes() == (world.origin / name).read_bytes()
    assert not [n for n in world.updates_listing() if n.startswith(".")]
    progress = [e for e in reporter.events if isinstance(e, StepProgress)]
    assert progress
    assert all(e.step == Step.DOWNLOAD for e in progress)
    assert {e.item for e in progress} == {repr(n) for n in files}
    assert result.payload_bytes == payload_bytes(server) == sum(len(d) for d in files.values())


def test_noop_rerun_downloads_no_payload_byte(world: World, server: Server) -> None:
    world.publish("1.0")
    run(world.options(), ListReporter())
    before = payload_bytes(server)
    result = run(world.options(), ListReporter())
    assert result.outcome == Outcome.NOTHING_NEW
    assert result.version == "1.0"
    assert payload_bytes(server) == before
    assert result.payload_bytes == 0


def test_newer_release_is_fetched_and_old_versions_beyond_instances_max_dropped(
    world: World, server: Server
) -> None:
    for v in ("1", "2", "3", "4"):
        files = world.publish(v)
        result = run(world.options(), ListReporter())
        assert result.outcome == Outcome.DOWNLOADED
        assert result.version == v
    _assert_release_present(world, files)
    listing = world.updates_listing()
    for name in release_names("1"):
        assert name not in listing  # InstancesMax=3 (default): 2, 3, 4 stay
    for v in ("2", "3"):
        assert set(release_names(v)) <= set(listing)


def test_cut_at_half_resumes_and_refetches_at_most_one_mib(world: World) -> None:
    files = world.publish("1.0", root_bytes=8 * MIB)
    rootfs = release_names("1.0")[1]
    faults = Faults(cut_after_bytes={rootfs: 4 * MIB})
    with serving(ServeConfig(root=world.origin, faults=faults)) as srv:
        world.set_url(srv.url)
        result = run(world.options(), ListReporter())
        served = srv.bytes_served()[rootfs]
        ranges = [
            cast("list[int] | None", r["range"]) for r in srv.requests() if r["path"] == rootfs
        ]  # serve logs [first, last] or None
    assert result.outcome == Outcome.DOWNLOADED
    _assert_release_present(world, files)
    assert ranges[0] is None
    assert ranges[1] is not None
    assert ranges[1][0] > 0
    assert served - 8 * MIB <= 1 * MIB


def test_partial_file_from_an_earlier_run_is_resumed_with_if_range(
    world: World, server: Server
) -> None:
    files = world.publish("1.0", root_bytes=2 * MIB)
    rootfs = release_names("1.0")[1]
    # A previous run was killed half-way: its partial file is there, without a validator.
    (world.updates / f".{rootfs}.partial").write_bytes(files[rootfs][: 1 * MIB])
    run(world.options(), ListReporter())
    _assert_release_present(world, files)
    assert server.bytes_served()[rootfs] == 1 * MIB


@pytest.mark.parametrize("indexes", [False, True])
def test_partial_file_with_wrong_bytes_is_fetched_again_in_full(
    world: World, server: Server, indexes: bool
) -> None:
    world.indexes = indexes
    files = world.publish("1.0", root_bytes=1 * MIB)
    rootfs = release_names("1.0")[1]
    (world.updates / f".{rootfs}.partial").write_bytes(b"x" * 1000)
    run(world.options(), ListReporter())
    _assert_release_present(world, files)
    # Without an index the resumed bytes fail the hash and the file comes again in full; with
    # one, the partial's blocks are checked first, none matches, and the file comes once.
    expected = 1 * MIB if indexes else 1 * MIB - 1000 + 1 * MIB
    assert server.bytes_served()[rootfs] == expected


@pytest.mark.parametrize("missing", BOTH)
def test_one_missing_signature_name_falls_back_to_the_other(
    world: World, server: Server, missing: str
) -> None:
    present = next(n for n in BOTH if n != missing)
    (world.updates / missing).write_bytes(b"stale signature of an older manifest")
    world.publish("1.0", signatures=(present,))
    result = run(world.options(), ListReporter())
    assert result.outcome == Outcome.DOWNLOADED
    assert result.signatures == (present,)
    assert (world.updates / present).exists()
    assert not (world.updates / missing).exists()  # no stale signature beside the new manifest


def test_both_signature_names_missing_fails_before_any_payload(
    world: World, server: Server
) -> None:
    world.publish("1.0", signatures=())
    with pytest.raises(FetchError) as info:
        run(world.options(), ListReporter())
    assert info.value.code == "fetch.signature"
    assert payload_bytes(server) == 0
    assert world.updates_listing() == []


@pytest.mark.parametrize("bad", ["stranger", "garbage", "other-manifest"])
def test_bad_signature_stops_before_any_payload_is_fetched(
    world: World, server: Server, stranger_key: Key, bad: str
) -> None:
    if bad == "stranger":
        world.publish("1.0", key=stranger_key)
    else:
        world.publish("1.0")
        target = world.origin / "SHA256SUMS.gpg"
        if bad == "garbage":
            target.write_bytes(b"\x89not a signature")
        else:
            (world.origin / "SHA256SUMS").write_bytes(
                (world.origin / "SHA256SUMS").read_bytes() + b"0" * 64 + b" *Spectrum_9.efi\n"
            )
    with pytest.raises(FetchError) as info:
        run(world.options(), ListReporter())
    assert info.value.code == "fetch.signature"
    assert payload_bytes(server) == 0
    assert world.updates_listing() == []


def test_negative_control_good_signature_does_fetch_payload(world: World, server: Server) -> None:
    world.publish("1.0")
    run(world.options(), ListReporter())
    assert payload_bytes(server) > 0


def test_manifest_missing_is_a_fetch_failure(world: World, server: Server) -> None:
    with pytest.raises(FetchError) as info:
        run(world.options(), ListReporter())
    assert info.value.code == "fetch.missing"


def test_incomplete_newest_version_is_skipped_for_the_newest_complete(
    world: World, server: Server
) -> None:
    world.publish("1")
    world.publish("2")
    (world.origin / release_names("2")[2]).unlink()
    world.sign()
    result = run(world.options(), ListReporter())
    assert result.version == "1"
    assert not any(n.startswith("Spectrum_2") for n in world.updates_listing())


def test_changed_file_with_an_old_validator_is_fetched_whole(world: World, server: Server) -> None:
    """If-Range: the partial belongs to an older file, so the server answers 200, not 206."""
    files = world.publish("1.0", root_bytes=1 * MIB)
    rootfs = release_names("1.0")[1]
    (world.updates / f".{rootfs}.partial").write_bytes(b"old bytes" * 1000)
    (world.updates / f".{rootfs}.partial.validator").write_text('"an-old-etag"')
    run(world.options(), ListReporter())
    _assert_release_present(world, files)
    requests = [r for r in server.requests() if r["path"] == rootfs]
    assert [r["status"] for r in requests] == [200]
    assert server.bytes_served()[rootfs] == 1 * MIB
    assert not (world.updates / f".{rootfs}.partial.validator").exists()


def test_directory_in_the_way_is_a_fetch_failure_not_a_crash(world: World, server: Server) -> None:
    world.publish("1")
    efi = release_names("1")[2]
    (world.updates / efi).mkdir()
    (world.updates / efi / "x").write_bytes(b"")
    with pytest.raises(FetchError) as info:
        run(world.options(), ListReporter())
    assert info.value.code == "fetch.write"
