# SPDX-License-Identifier: MIT
"""sysupdate mode with the real systemd-sysupdate of each runtime (257, 262) and `airlock serve`.

The agent renders Spectrum's VM transfer files and runs systemd-sysupdate on them, as Spectrum's
download-update does.  The "VM" here is a private mount namespace that chroots into the runtime,
with the share's updates/, the rendered definitions and the share's keyring bound where
systemd-sysupdate expects them; nothing mounted outlives the ``unshare``.  Network: 127.0.0.1 only.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from airlock.agent import sysupdate
from airlock.agent.main import run
from airlock.agent.options import Mode, Outcome
from airlock.errors import FetchError
from airlock.events import ListReporter
from airlock.release.serve import Server
from tests.support.oracles import RUNTIMES, require_runtime
from tests.unit.agent.conftest import Key, World, release_names

pytestmark = pytest.mark.sysupdate

# The VM's root is the runtime: what the agent made /etc/systemd/import-pubring.gpg in its
# namespace (the share's keyring) becomes the runtime's, as if the agent ran inside it.
_INNER = (
    "R=$1; U=$2; D=$3; shift 3; "
    'mount -t proc proc "$R/proc" && mount --rbind /dev "$R/dev" && '
    'mount -t tmpfs tmpfs "$R/run" && mount -t tmpfs tmpfs "$R/tmp" && '
    'mount -t tmpfs tmpfs "$R/etc/systemd" && '
    'cp /etc/systemd/import-pubring.gpg "$R/etc/systemd/import-pubring.gpg" && '
    'mkdir -p "$R$U" "$R$D" && mount --bind "$U" "$R$U" && mount --bind "$D" "$R$D" && '
    'exec chroot "$R" /usr/lib/systemd/systemd-sysupdate "$@"'
)


@pytest.fixture(params=RUNTIMES)
def runtime_root(request: pytest.FixtureRequest) -> Path:
    """The root of each runtime (the "VM" chroots into it)."""
    rt = require_runtime(str(request.param))
    if rt.root == Path("/"):
        pytest.skip("the host's own sysupdate: covered by the QEMU guest test")
    return rt.root


def _wrapper(world: World, root: Path) -> Path:
    script = world.root / "systemd-sysupdate"
    script.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case $a in --definitions=*) D=${a#--definitions=};; esac; done\n'
        f"exec unshare --mount --propagation private --fork sh -c '{_INNER}' sh "
        f'"{root}" "{world.updates}" "$D" "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_real_sysupdate_downloads_v1_then_v2_into_the_share(
    world: World, server: Server, runtime_root: Path
) -> None:
    script = _wrapper(world, runtime_root)
    options = world.options(mode=Mode.SYSUPDATE, sysupdate_path=os.fspath(script), timeout_s=120)
    files = world.publish("1")
    first = run(options, ListReporter())
    assert first.outcome == Outcome.DOWNLOADED
    for name, data in files.items():
        assert (world.updates / name).read_bytes() == data
    files2 = world.publish("2")
    second = run(options, ListReporter())
    assert second.outcome == Outcome.DOWNLOADED
    assert second.files_downloaded == 3
    for name, data in files2.items():
        assert (world.updates / name).read_bytes() == data
    assert (world.updates / "SHA256SUMS").read_bytes() == (world.origin / "SHA256SUMS").read_bytes()
    third = run(options, ListReporter())
    assert third.outcome == Outcome.NOTHING_NEW
    assert set(release_names("1")) <= set(os.listdir(world.updates))  # InstancesMax=3 keeps v1


def test_real_sysupdate_refuses_a_foreign_signature(
    world: World,
    server: Server,
    stranger_key: Key,
    monkeypatch: pytest.MonkeyPatch,
    runtime_root: Path,
) -> None:
    monkeypatch.setattr(sysupdate, "RETRY_PAUSE_S", 0.01)
    script = _wrapper(world, runtime_root)
    world.publish("1", key=stranger_key)
    options = world.options(mode=Mode.SYSUPDATE, sysupdate_path=os.fspath(script), timeout_s=120)
    with pytest.raises(FetchError) as info:
        run(options, ListReporter())
    assert info.value.code == "fetch.sysupdate"
    assert not [n for n in os.listdir(world.updates) if not n.startswith(".")]
