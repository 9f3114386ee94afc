# SPDX-License-Identifier: MIT
"""Pure parts of the sysupdate runtime and applier (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airlock.backends.apply import runtime
from airlock.backends.apply.runtime import Bind
from airlock.backends.apply.sysupdate import DEFINITIONS, ESP, Invocation, keyring_targets
from airlock.errors import ConfigError, HostError
from airlock.formats import dialect


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


@pytest.mark.parametrize(
    ("version", "targets", "env"),
    [
        (257, (dialect.ETC_GPG, dialect.VENDOR_GPG), None),
        (258, (dialect.ETC_PGP, dialect.ETC_GPG, dialect.VENDOR_PGP), None),
        (262, (dialect.ETC_PGP, dialect.ETC_GPG, dialect.VENDOR_PGP), dialect.ETC_PGP),
    ],
)
def test_invocation_binds_keyring_over_every_path_the_version_reads(
    tmp_path: Path, version: int, targets: tuple[str, ...], env: str | None
) -> None:
    rt = runtime.Runtime(root=tmp_path / "root", version=version, name=str(version))
    inv = Invocation(
        definitions=tmp_path / "d",
        keyring=tmp_path / "k.gpg",
        esp=tmp_path / "esp",
        env={"SYSTEMD_LOG_LEVEL": "debug"},
    )
    binds = {b.target: b for b in inv.all_binds(rt)}
    assert keyring_targets(rt) == targets
    for target in targets:
        assert binds[target] == Bind(source=tmp_path / "k.gpg", target=target, read_only=True)
    assert binds[DEFINITIONS].read_only
    assert not binds[ESP].read_only
    expected = {"SYSTEMD_LOG_LEVEL": "debug", "SYSTEMD_ESP_PATH": ESP}
    if env is not None:
        expected[dialect.KEYRING_ENV] = env
    assert inv.all_env(rt) == expected


def test_on_the_host_only_existing_keyring_paths_are_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = runtime.Runtime(root=Path("/"), version=262)
    present = {dialect.ETC_GPG, dialect.VENDOR_PGP}
    monkeypatch.setattr("os.path.lexists", lambda p: p in present)
    assert keyring_targets(host) == (dialect.ETC_GPG, dialect.VENDOR_PGP)
    inv = Invocation(definitions=tmp_path / "d", keyring=tmp_path / "k.gpg")
    assert inv.all_env(host)[dialect.KEYRING_ENV] == dialect.ETC_GPG
    present.clear()  # no keyring file at all: refuse rather than run without the host's keys
    with pytest.raises(HostError) as info:
        inv.all_binds(host)
    assert info.value.code == "host.sysupdate"


def test_locate_without_runtime(tmp_path: Path) -> None:
    if Path(runtime.SYSUPDATE).exists():
        pytest.skip("the host has its own systemd-sysupdate")
    with pytest.raises(HostError) as info:
        runtime.locate(tmp_path)
    assert info.value.code == "host.sysupdate"
    with pytest.raises(HostError) as info:
        runtime.locate(tmp_path, choice="262")
    assert "262" in info.value.message
    assert info.value.hint == "run scripts/make-runtime.sh 262 (make runtime)"
    with pytest.raises(HostError):
        runtime.locate(tmp_path, choice="host")


@pytest.mark.parametrize("choice", ["258", "trixie", "", "../x"])
def test_locate_refuses_an_unknown_runtime(tmp_path: Path, choice: str) -> None:
    with pytest.raises(ConfigError) as info:
        runtime.locate(tmp_path, choice=choice or "nope")
    assert info.value.code == "config.runtime"
    assert "auto, host, 257, 262" in str(info.value.hint)
