# SPDX-License-Identifier: MIT
"""Pure parts of the sysupdate runtime and applier (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airlock.backends.apply import runtime, sysupdate
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
    assert keyring_targets(rt, tmp_path / "k.gpg") == targets
    for target in targets:
        assert binds[target] == Bind(source=tmp_path / "k.gpg", target=target, read_only=True)
    assert binds[DEFINITIONS].read_only
    assert not binds[ESP].read_only
    expected = {"SYSTEMD_LOG_LEVEL": "debug", "SYSTEMD_ESP_PATH": ESP}
    if env is not None:
        expected[dialect.KEYRING_ENV] = env
    assert inv.all_env(rt) == expected


@pytest.mark.parametrize(
    ("version", "present", "targets"),
    [
        (262, {dialect.ETC_GPG, dialect.VENDOR_PGP}, (dialect.ETC_GPG, dialect.VENDOR_PGP)),
        # no /etc keyring: the first /etc name is bound too, or the vendor's alone would count
        (262, {dialect.VENDOR_PGP}, (dialect.ETC_PGP, dialect.VENDOR_PGP)),
        (262, set(), (dialect.ETC_PGP,)),
        (257, {dialect.VENDOR_GPG}, (dialect.ETC_GPG, dialect.VENDOR_GPG)),
        (257, {dialect.ETC_GPG}, (dialect.ETC_GPG,)),
    ],
)
def test_on_the_host_existing_keyring_paths_and_the_first_etc_one_are_bound(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    version: int,
    present: set[str],
    targets: tuple[str, ...],
) -> None:
    host = runtime.Runtime(root=Path("/"), version=version)
    keyring = tmp_path / "k.gpg"
    monkeypatch.setattr("os.path.lexists", lambda p: p in present)
    assert keyring_targets(host, keyring) == targets
    inv = Invocation(definitions=tmp_path / "d", keyring=keyring)
    assert [b.target for b in inv.all_binds(host)] == list(targets)
    assert all(b.source == keyring and b.read_only for b in inv.all_binds(host))
    # 262's override names the host keyring itself: no chroot, its real path is what it opens
    assert inv.all_env(host).get(dialect.KEYRING_ENV) == (str(keyring) if version >= 262 else None)


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


@pytest.mark.parametrize("vendor_exists", [True, False])
def test_the_host_s_own_sysupdate_gets_real_paths_and_only_replacing_binds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vendor_exists: bool
) -> None:
    # Spectrum's host: nothing is bound where it already is, nothing created on /usr or /etc.
    host = runtime.Runtime(root=Path("/"), version=257)
    etc = tmp_path / "etc-pubring.gpg"  # the configured keyring IS /etc's (same file)
    etc.write_bytes(b"host keyring")
    present = {dialect.ETC_GPG, *([dialect.VENDOR_GPG] if vendor_exists else [])}
    monkeypatch.setattr("os.path.lexists", lambda p: p in present)
    monkeypatch.setattr(sysupdate, "_same_file", lambda a, b: a == etc and b == dialect.ETC_GPG)
    inv = Invocation(definitions=tmp_path / "d", keyring=etc, esp=tmp_path / "esp")
    assert inv.definitions_arg(host) == f"--definitions={tmp_path / 'd'}"
    assert inv.all_env(host) == {"SYSTEMD_ESP_PATH": str(tmp_path / "esp")}
    binds = inv.all_binds(host)
    # the configured keyring is the file sysupdate reads: only the vendor fallback is covered
    assert binds == (
        (Bind(source=etc, target=dialect.VENDOR_GPG, read_only=True),) if vendor_exists else ()
    )
    other = tmp_path / "other.gpg"
    other.write_bytes(b"pinned")
    binds = Invocation(definitions=tmp_path / "d", keyring=other).all_binds(host)
    assert [b.target for b in binds] == [
        dialect.ETC_GPG,
        *([dialect.VENDOR_GPG] if vendor_exists else []),
    ]
    # Negative control: a runtime root gets the bound paths, not the host's real ones.
    chrooted = runtime.Runtime(root=tmp_path / "root", version=257, name="257")
    assert inv.definitions_arg(chrooted) == f"--definitions={DEFINITIONS}"
    assert inv.all_env(chrooted) == {"SYSTEMD_ESP_PATH": ESP}
