# SPDX-License-Identifier: MIT
"""``airlock update --fetcher qemu`` end to end: the real agent in the real TCG guest downloads a
signed v2 from ``airlock serve`` on host loopback; real btrfs staging, real systemd-sysupdate 257
writes the A/B GPT image and the ESP.  Then a no-op rerun."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock.formats import blockindex
from airlock.release.serve import ServeConfig, serving
from tests.integration.host.conftest import btrfs_dir  # noqa: F401 - the fixture
from tests.integration.host.test_delta_e2e import V3_HASH, assert_v3_installed, v3_files
from tests.integration.host.test_update_e2e import assert_no_leftovers, assert_v2_installed
from tests.integration.host.world import World, build, events
from tests.support import releases
from tests.support.releases import write_vm_transfers

pytestmark = [
    pytest.mark.vm,
    pytest.mark.btrfs,
    pytest.mark.sysupdate,
    pytest.mark.slow,
    pytest.mark.timeout(900),  # two `airlock update` runs of at most 400 s each
]


@pytest.fixture
def world(tmp_path: Path, btrfs_dir: Path, guest_dir: Path) -> Iterator[World]:  # noqa: F811
    w = build(tmp_path / "w", btrfs_dir)
    write_vm_transfers(w.root / "etc/vm-sysupdate.d")
    try:
        yield w
    finally:
        w.key.close()


def test_qemu_fetcher_v1_to_v2_then_noop(world: World) -> None:
    w = world
    with serving(ServeConfig(root=w.release, port=0)) as server:
        (w.root / "etc/update-url").write_text(server.url + "\n")
        w.write_config(
            ["/usr/bin/airlock", "agent", "--share", "/host", "--timeout", "240"],
            {"fetcher.timeout_s": 300},
        )
        start = time.monotonic()
        first = w.update("--fetcher", "qemu", timeout=400)
        first_s = time.monotonic() - start
        assert first.returncode == 0, first.stderr
        evs = events(first.stdout)
        assert evs[-1] == {
            "v": 1, "event": "result", "outcome": "updated", "exit_status": 0, "fresh": True
        }  # fmt: skip
        assert_v2_installed(w)
        assert_no_leftovers(w)
        # The guest wrote the release into the share (plain files on the host, mapped-xattr).
        shared = w.staging / "shared"
        assert sorted(os.listdir(shared)) == sorted(os.listdir(w.release))  # no block index
        log = (w.staging / "fetch.log").read_text(errors="replace")
        assert "airlock-guest: status 0" in log

        disk_before = w.disk_digest()
        start = time.monotonic()
        second = w.update("--fetcher", "qemu", timeout=400)
        second_s = time.monotonic() - start
        assert second.returncode == 0, second.stderr
        assert events(second.stdout)[-1]["outcome"] == "up-to-date"
        assert w.disk_digest() == disk_before
        assert "nothing new" in (w.staging / "fetch.log").read_text(errors="replace")
        print(json.dumps({"first_s": round(first_s, 1), "noop_s": round(second_s, 1)}))


def test_qemu_fetcher_fetches_v3_as_a_delta_of_v2(world: World, tmp_path: Path) -> None:
    w = world
    www = tmp_path / "www"  # published by `airlock publish`: block indexes included
    releases.make_release(www, "2", w.files, w.key)
    with serving(ServeConfig(root=www, port=0)) as server:
        (w.root / "etc/update-url").write_text(server.url + "\n")
        w.write_config(
            ["/usr/bin/airlock", "agent", "--share", "/host", "--timeout", "240"],
            {"fetcher.timeout_s": 300},
        )
        first = w.update("--fetcher", "qemu", timeout=400)
        assert first.returncode == 0, first.stderr
        assert_v2_installed(w)
        (w.root / "etc/os-release").write_text('ID=spectrum\nNAME="Spectrum"\nIMAGE_VERSION=2\n')
        files = v3_files(w)
        releases.make_release(www, "3", files, w.key)
        before = server.bytes_served()
        start = time.monotonic()
        second = w.update("--fetcher", "qemu", timeout=400)
        second_s = time.monotonic() - start
        assert second.returncode == 0, second.stderr
        assert events(second.stdout)[-1]["outcome"] == "updated"
        assert_v3_installed(w, files)
        assert_no_leftovers(w)
        served = {k: n - before.get(k, 0) for k, n in server.bytes_served().items()}
    root_name = releases.spectrum_names("3", V3_HASH)[0]
    assert 0 < served[root_name] <= 6 * 1024  # of a 4 MiB root image
    assert served[blockindex.index_name(root_name)] > 0
    log = (w.staging / "fetch.log").read_text(errors="replace")
    assert "found locally" in log
    print(json.dumps({"delta_update_s": round(second_s, 1), "root_bytes": served[root_name]}))
