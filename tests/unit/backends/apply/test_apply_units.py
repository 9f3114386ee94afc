# SPDX-License-Identifier: MIT
"""Pure parts of the sysupdate runtime and applier (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airlock.backends.apply import runtime
from airlock.backends.apply.runtime import Bind
from airlock.backends.apply.sysupdate import DEFINITIONS, ESP, KEYRING_TARGETS, Invocation
from airlock.errors import HostError


def test_parse_notify() -> None:
    raw = b"X_SYSUPDATE_PROGRESS=42\nSTATUS=Updating to '2' (42% complete).\nREADY=1\n"
    assert runtime.parse_notify(raw) == {
        "X_SYSUPDATE_PROGRESS": "42",
        "STATUS": "Updating to '2' (42% complete).",
        "READY": "1",
    }


@pytest.mark.parametrize("raw", [b"", b"garbage", b"lower=1", b"=x", b"\xff\xfe=1"])
def test_parse_notify_drops_malformed(raw: bytes) -> None:
    assert runtime.parse_notify(raw) == {}


def test_parse_notify_is_bounded() -> None:
    msg = runtime.parse_notify(b"STATUS=" + b"x" * 100_000)
    assert len(msg["STATUS"]) < runtime.MAX_NOTIFY_BYTES


@pytest.mark.parametrize("target", ["rel", "/a/../b", "/", "/a//b", "/a/"])
def test_bind_target_must_be_canonical_absolute(target: str) -> None:
    with pytest.raises(HostError):
        runtime._check_target(target)


def test_invocation_binds_keyring_over_both_paths(tmp_path: Path) -> None:
    inv = Invocation(
        definitions=tmp_path / "d",
        keyring=tmp_path / "k.gpg",
        esp=tmp_path / "esp",
        env={"SYSTEMD_LOG_LEVEL": "debug"},
    )
    binds = {b.target: b for b in inv.all_binds()}
    for target in KEYRING_TARGETS:
        assert binds[target] == Bind(
            source=tmp_path / "k.gpg", target=target, read_only=True, if_present=True
        )
    assert binds[DEFINITIONS].read_only
    assert not binds[ESP].read_only
    assert inv.all_env() == {"SYSTEMD_LOG_LEVEL": "debug", "SYSTEMD_ESP_PATH": ESP}


def test_locate_without_runtime(tmp_path: Path) -> None:
    if Path(runtime.SYSUPDATE).exists():
        pytest.skip("the host has its own systemd-sysupdate")
    with pytest.raises(HostError) as info:
        runtime.locate(tmp_path)
    assert info.value.code == "host.sysupdate"


def test_host_sysupdate_gets_mount_points_only_below_run(tmp_path: Path) -> None:
    # The host's own systemd-sysupdate (no runtime root): a missing mount point is created
    # only below /run (and listed for removal), an absent keyring path is not covered, and a
    # missing target anywhere else is refused: nothing is ever created in /etc or /usr.
    host = runtime.Runtime(root=Path("/"), version=257)
    src = tmp_path / "src"
    src.mkdir()
    token = tmp_path.name
    below_run = Bind(source=src, target=f"/run/airlock-{token}/definitions", read_only=True)
    absent_key = Bind(source=src, target=f"/etc/{token}.gpg", read_only=True, if_present=True)
    used, created = host._check_binds([below_run, absent_key])
    assert used == (below_run,)
    assert created == (f"/run/airlock-{token}", f"/run/airlock-{token}/definitions")
    with pytest.raises(HostError, match="only below /run"):
        host._check_binds([Bind(source=src, target=f"/etc/{token}/x", read_only=True)])
    chroot = runtime.Runtime(root=tmp_path, version=257)  # the runtime root: all in its overlay
    assert chroot._check_binds([absent_key]) == ((absent_key,), ())
