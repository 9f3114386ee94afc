# SPDX-License-Identifier: MIT
"""What the VM needs from the host is checked before anything starts (exit 3, not 20)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from airlock.backends.fetcher import FetcherConfig
from airlock.config import HostConfig
from airlock.errors import ConfigError, ExitStatus
from airlock.events import ListReporter
from airlock.formats import definitions
from airlock.lock import LockConfig
from airlock.pipeline import wiring


def _config(tmp_path: Path) -> HostConfig:
    (tmp_path / "vm-sysupdate.d").mkdir()
    (tmp_path / "vm-sysupdate.d" / "60-root.transfer").write_text("[Transfer]\n")
    (tmp_path / "update-url").write_text("https://updates.example/spectrum\n")
    return HostConfig(
        lock=LockConfig(path=tmp_path / "lock"),
        fetcher=FetcherConfig(
            vm_definitions_dir=tmp_path / "vm-sysupdate.d",
            update_url_file=tmp_path / "update-url",
        ),
    )


def test_complete_vm_inputs_pass(tmp_path: Path) -> None:
    wiring.check_vm_inputs(_config(tmp_path))


@pytest.mark.parametrize(
    ("breakage", "code"),
    [
        ("no-url", "config.update-url"),
        ("bad-url", "config.update-url"),
        ("no-transfers", "config.vm-transfers"),
        ("no-transfer-dir", "config.vm-transfers"),
    ],
)
def test_missing_vm_inputs_stop_the_run_before_anything_starts(
    tmp_path: Path, breakage: str, code: str
) -> None:
    config = _config(tmp_path)
    match breakage:
        case "no-url":
            (tmp_path / "update-url").unlink()
        case "bad-url":
            (tmp_path / "update-url").write_text("https://updates.example/?x=1\n")
        case "no-transfers":
            (tmp_path / "vm-sysupdate.d" / "60-root.transfer").rename(tmp_path / "x.conf")
        case "no-transfer-dir":
            (tmp_path / "vm-sysupdate.d" / "60-root.transfer").unlink()
            (tmp_path / "vm-sysupdate.d").rmdir()
    staging = tmp_path / "staging"
    with pytest.raises(ConfigError) as info:
        wiring.build_context(config, staging, reporter=ListReporter(), now=datetime.now(UTC))
    assert info.value.code == code
    assert info.value.exit_status == ExitStatus.CONFIG
    assert not staging.exists()
    assert not (tmp_path / "lock").exists()


def _transfer(tmp_path: Path, source: str) -> tuple[definitions.Transfer, ...]:
    d = tmp_path / "defs"
    d.mkdir(exist_ok=True)
    (d / "60-root.transfer").write_text(
        f"[Source]\n{source}\nMatchPattern=Spectrum_@v.root\n\n"
        "[Target]\nType=regular-file\nPath=/var/lib/x\nMatchPattern=Spectrum_@v\n"
    )
    return definitions.load_dir(d, specifiers=definitions.Specifiers())


def test_host_transfers_from_the_snapshot_pass(tmp_path: Path) -> None:
    transfers = _transfer(tmp_path, "Type=url-file\nPath=file:///run/updater/")
    wiring.check_host_sources(transfers, "/run/updater")


@pytest.mark.parametrize(
    "source",
    [
        "Type=url-file\nPath=https://updates.example/spectrum",
        "Type=url-file\nPath=file:///run/elsewhere",
        "Type=url-file\nPath=file:///run/updater/sub",
        "Type=regular-file\nPath=/run/updater",
    ],
)
def test_a_host_transfer_not_reading_the_snapshot_is_refused(tmp_path: Path, source: str) -> None:
    transfers = _transfer(tmp_path, source)
    with pytest.raises(ConfigError) as info:
        wiring.check_host_sources(transfers, "/run/updater")
    assert info.value.code == "config.source"
    assert info.value.exit_status == ExitStatus.CONFIG
