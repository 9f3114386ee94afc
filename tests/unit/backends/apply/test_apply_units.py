# SPDX-License-Identifier: MIT
"""Pure parts of the sysupdate runtime and applier (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airlock.backends.apply import runtime, sysupdate
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
        assert binds[target] == Bind(source=tmp_path / "k.gpg", target=target, read_only=True)
    assert binds[DEFINITIONS].read_only
    assert not binds[ESP].read_only
    assert inv.all_env() == {"SYSTEMD_LOG_LEVEL": "debug", "SYSTEMD_ESP_PATH": ESP}


def test_locate_without_runtime(tmp_path: Path) -> None:
    if Path(runtime.SYSUPDATE).exists():
        pytest.skip("the host has its own systemd-sysupdate")
    with pytest.raises(HostError) as info:
        runtime.locate(tmp_path)
    assert info.value.code == "host.sysupdate"


@pytest.mark.parametrize("vendor_exists", [True, False])
def test_the_host_s_own_sysupdate_gets_real_paths_and_only_replacing_binds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vendor_exists: bool
) -> None:
    # Spectrum's host: nothing is bound where it already is, nothing created on /usr or /etc.
    etc, vendor = tmp_path / "etc-pubring.gpg", tmp_path / "vendor-pubring.gpg"
    etc.write_bytes(b"host keyring")
    if vendor_exists:
        vendor.write_bytes(b"vendor keyring")
    monkeypatch.setattr(sysupdate, "KEYRING_TARGETS", (str(etc), str(vendor)))
    inv = Invocation(definitions=tmp_path / "d", keyring=etc, esp=tmp_path / "esp")
    assert inv.definitions_arg(host=True) == f"--definitions={tmp_path / 'd'}"
    assert inv.all_env(host=True) == {"SYSTEMD_ESP_PATH": str(tmp_path / "esp")}
    binds = inv.all_binds(host=True)
    # the configured keyring is the file sysupdate reads: only the vendor fallback is covered
    assert binds == (
        (Bind(source=etc, target=str(vendor), read_only=True),) if vendor_exists else ()
    )
    other = tmp_path / "other.gpg"
    other.write_bytes(b"pinned")
    binds = Invocation(definitions=tmp_path / "d", keyring=other).all_binds(host=True)
    assert [b.target for b in binds] == [str(etc), *([str(vendor)] if vendor_exists else [])]
