# SPDX-License-Identifier: MIT
"""sysupdate mode (Spectrum's download-update): retries, rendered definitions, then the manifest.

systemd-sysupdate itself is replaced by a small script that records its arguments and the
rendered definitions it was given; the manifest and signature fetch after it is real.
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
from tests.unit.agent.conftest import World, release_names


def _fake_sysupdate(world: World, *, fail_times: int) -> tuple[Path, Path]:
    record = world.root / "record"
    record.mkdir()
    efi = release_names("1")[2]
    script = world.root / "systemd-sysupdate"
    script.write_text(
        "#!/bin/sh\n"
        f"R={record}\n"
        'n=$(cat "$R/count" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$R/count"\n'
        'echo "$@" > "$R/argv"\n'
        'cat /etc/systemd/import-pubring.gpg > "$R/keyring"\n'
        "[ ! -e /usr/lib/systemd/import-pubring.gpg ] || "
        'cat /usr/lib/systemd/import-pubring.gpg > "$R/vendor"\n'
        'for a in "$@"; do case $a in --definitions=*) cp "${a#--definitions=}"/* "$R/";; '
        "esac; done\n"
        f'[ $n -le {fail_times} ] && {{ echo "Network is down" >&2; exit 1; }}\n'
        f'cp "{world.origin / efi}" "{world.updates / efi}"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, record


def test_sysupdate_is_retried_then_manifest_and_signatures_fetched(
    world: World, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sysupdate, "RETRY_PAUSE_S", 0.01)
    world.publish("1")
    script, record = _fake_sysupdate(world, fail_times=2)
    result = run(
        world.options(mode=Mode.SYSUPDATE, sysupdate_path=os.fspath(script)), ListReporter()
    )
    assert (record / "count").read_text().strip() == "3"
    assert (record / "argv").read_text().split()[-1] == "update"
    # sysupdate read the share's keyring, under both names it reads (#13 item 7)
    share_keyring = (world.share / "etc/systemd/import-pubring.gpg").read_bytes()
    assert (record / "keyring").read_bytes() == share_keyring
    if Path("/usr/lib/systemd/import-pubring.gpg").exists():
        assert (record / "vendor").read_bytes() == share_keyring
    assert not Path("/etc/systemd/import-pubring.gpg").exists()  # nothing left on this host
    rendered = (record / "70-kernel.transfer").read_text()
    assert f"Path={server.url}\n" in rendered
    assert f"Path={world.updates}\n" in rendered
    assert "@UPDATE_URL@" not in rendered
    assert result.outcome == Outcome.DOWNLOADED
    assert result.files_downloaded == 1
    for name in ("SHA256SUMS", "SHA256SUMS.gpg", "SHA256SUMS.sha256.asc"):
        assert (world.updates / name).read_bytes() == (world.origin / name).read_bytes()


def test_sysupdate_failing_every_try_is_a_fetch_failure(
    world: World, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sysupdate, "RETRY_PAUSE_S", 0.01)
    world.publish("1")
    script, record = _fake_sysupdate(world, fail_times=99)
    options = world.options(mode=Mode.SYSUPDATE, sysupdate_path=os.fspath(script))
    with pytest.raises(FetchError) as info:
        run(options, ListReporter())
    assert info.value.code == "fetch.sysupdate"
    assert "Network is down" in info.value.message
    assert (record / "count").read_text().strip() == "5"
    assert not (world.updates / "SHA256SUMS").exists()


def test_sysupdate_mode_still_checks_the_signature(
    world: World, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sysupdate, "RETRY_PAUSE_S", 0.01)
    world.publish("1")
    (world.origin / "SHA256SUMS.gpg").write_bytes(b"garbage")
    script, _record = _fake_sysupdate(world, fail_times=0)
    with pytest.raises(FetchError) as info:
        run(world.options(mode=Mode.SYSUPDATE, sysupdate_path=os.fspath(script)), ListReporter())
    assert info.value.code == "fetch.signature"
