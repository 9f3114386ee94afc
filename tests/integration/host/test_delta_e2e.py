# SPDX-License-Identifier: MIT
"""Delta downloads through ``airlock update``: the real agent in the bubblewrap sandbox, nginx in a
network namespace the test made (loopback only, no default route), real btrfs, real
systemd-sysupdate 257.

v1 → v2 is fetched whole; after a "reboot" into v2, v3 (a few changed bytes in each image) is
fetched as a delta from the v2 files the agent left in ``shared``.  The host's judgement does not
change: it hashes every byte of the snapshot against the signed manifest, installs v3, and a
lying block index only makes the agent fall back to a whole download.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import airlock
from airlock.formats import blockindex
from airlock.lab import disk, nginx
from tests.support import releases

from .test_update_e2e import assert_no_leftovers, assert_v2_installed
from .world import V2_HASH, World, build, events

pytestmark = [pytest.mark.btrfs, pytest.mark.sandbox, pytest.mark.sysupdate]

SRC = Path(airlock.__file__).resolve().parent.parent
V3_HASH = hashlib.sha256(b"v3").hexdigest()
PORT = 8080  # the namespace is ours alone


@dataclass
class Delta:
    world: World
    www: Path
    web: nginx.Nginx


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"airlock-d{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def delta(tmp_path: Path, btrfs_dir: Path, netns: str) -> Iterator[Delta]:
    w = build(tmp_path / "w", btrfs_dir)
    www = w.root / "www"  # published by `airlock publish` (block indexes included)
    releases.make_release(www, "2", w.files, w.key)
    os.chmod(w.root, 0o755)  # noqa: S103 - nginx reads below it
    config = nginx.NginxConfig(
        root=www, workdir=w.root / "nginx", bind="127.0.0.1", port=PORT, netns=netns
    )
    try:
        with nginx.serving(config) as web:
            releases.write_vm_transfers(w.root / "etc/vm-sysupdate.d")
            (w.root / "etc/update-url").write_text(f"http://127.0.0.1:{PORT}/\n")
            prefix = Path(os.path.realpath(sys.executable)).parent.parent
            w.write_config(
                ["/usr/bin/env", f"PYTHONPATH={SRC}", sys.executable, "-m", "airlock", "agent",
                 "--share", "/host"],
                {
                    "fetcher.sandbox.netns": netns,
                    "fetcher.sandbox.ro_binds": sorted(
                        {str(SRC), str(Path(sys.prefix)), str(prefix)}
                    ),
                },
            )  # fmt: skip
            yield Delta(world=w, www=www, web=web)
    finally:
        w.key.close()


def _edited(data: bytes, *offsets: int) -> bytes:
    out = bytearray(data)
    for at in offsets:
        out[at : at + 100] = hashlib.sha256(f"v3:{at}".encode()).digest() * 3 + b"v3v3"
    return bytes(out)


def v3_files(w: World) -> dict[str, bytes]:
    root_name, verity_name, efi_name = releases.spectrum_names("2", V2_HASH)
    new_root, new_verity, new_efi = releases.spectrum_names("3", V3_HASH)
    return {
        new_root: _edited(w.files[root_name], 5000, 1_000_000, 3_000_000),
        new_verity: _edited(w.files[verity_name], 40_000),
        new_efi: _edited(w.files[efi_name], 9000),
    }


def _update_to_v2_then_reboot(d: Delta) -> None:
    w = d.world
    first = w.update()
    assert first.returncode == 0, first.stderr
    assert events(first.stdout)[-1]["outcome"] == "updated"
    assert_v2_installed(w)
    (w.root / "etc/os-release").write_text('ID=spectrum\nNAME="Spectrum"\nIMAGE_VERSION=2\n')


def assert_v3_installed(w: World, files: dict[str, bytes]) -> None:
    root_name, verity_name, efi_name = releases.spectrum_names("3", V3_HASH)
    slots = w.slots()
    # v2 is booted now (protected), so v3 went into slot A.
    assert (slots[0].label, slots[1].label) == ("Spectrum_3.verity", "Spectrum_3")
    assert slots[1].partuuid == disk.format_uuid(V3_HASH[:32])
    data = disk.state(w.image, measure={1: len(files[verity_name]), 2: len(files[root_name])})
    assert data[1].sha256_prefix == hashlib.sha256(files[root_name]).hexdigest()
    assert data[0].sha256_prefix == hashlib.sha256(files[verity_name]).hexdigest()
    assert w.esp_listing()[efi_name] == hashlib.sha256(files[efi_name]).hexdigest()


def test_v2_to_v3_is_fetched_as_a_delta_and_installed(delta: Delta) -> None:
    w = delta.world
    _update_to_v2_then_reboot(delta)
    files = v3_files(w)
    releases.make_release(delta.www, "3", files, w.key)
    nginx.clear_log(delta.web)
    second = w.update()
    assert second.returncode == 0, second.stderr
    assert events(second.stdout)[-1]["outcome"] == "updated"
    assert_v3_installed(w, files)
    assert_no_leftovers(w)
    served = delta.web.bytes_served()
    root_name = releases.spectrum_names("3", V3_HASH)[0]
    # Three 100-byte edits: each within one or two 1 KiB sub-blocks, of a 4 MiB image.
    assert 0 < served[root_name] <= 6 * 1024
    index = blockindex.parse_header(
        (delta.www / blockindex.index_name(root_name)).read_bytes(), max_file_bytes=1 << 40
    )
    assert served[blockindex.index_name(root_name)] < index.index_bytes
    log = (w.staging / "fetch.log").read_text(errors="replace")
    assert "found locally" in log
    # The block indexes stay on the server: nothing but the release reached the snapshot.
    assert not [n for n in os.listdir(w.staging / "shared") if n.endswith(".blocks")]


def test_a_lying_index_cannot_change_what_the_host_installs(delta: Delta) -> None:
    w = delta.world
    _update_to_v2_then_reboot(delta)
    files = v3_files(w)
    releases.make_release(delta.www, "3", files, w.key)
    root_name = releases.spectrum_names("3", V3_HASH)[0]
    old_root = w.files[releases.spectrum_names("2", V2_HASH)[0]]
    # v3's size and SHA-256, but the block digests of v2: "everything is already there".
    lie = bytearray(blockindex.build(old_root[: len(files[root_name])]))
    lie[: blockindex.HEADER_BYTES] = blockindex.build(files[root_name])[: blockindex.HEADER_BYTES]
    (delta.www / blockindex.index_name(root_name)).write_bytes(bytes(lie))
    nginx.clear_log(delta.web)
    second = w.update()
    assert second.returncode == 0, second.stderr
    assert_v3_installed(w, files)
    log = (w.staging / "fetch.log").read_text(errors="replace")
    assert "differs from the manifest" in log
    assert delta.web.bytes_served()[root_name] >= len(files[root_name])  # fetched whole
