# SPDX-License-Identifier: MIT
"""SpectrumFetcher's path handling without s6: the VM id from by-name, the config copy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airlock.backends.fetcher.spectrum import SpectrumConfig, provide_config, resolve
from airlock.errors import ConfigError


def _link(tmp_path: Path, target: str) -> SpectrumConfig:
    (tmp_path / "vm" / "by-name").mkdir(parents=True)
    os.symlink(target, tmp_path / "vm" / "by-name" / "sys.appvm-systemd-sysupdate")
    return SpectrumConfig(run_dir=tmp_path)


def test_vm_id_is_the_basename_of_the_by_name_link(tmp_path: Path) -> None:
    vm = resolve(_link(tmp_path, "/run/vm/by-id/Ab3xZ9"))
    assert vm.vm_id == "Ab3xZ9"
    assert vm.updates == tmp_path / "fs" / "Ab3xZ9" / "updates"
    assert vm.ns_mnt == tmp_path / "vm" / "by-id" / "Ab3xZ9" / "ns" / "mnt"
    assert vm.service == tmp_path / "service" / "vmm" / "instance" / "Ab3xZ9"


@pytest.mark.parametrize("target", ["/run/vm/by-id/..", "/x/.hidden", "/x/a\nb", "/x/-rf", "/"])
def test_implausible_vm_ids_are_refused(tmp_path: Path, target: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(_link(tmp_path, target))
    assert info.value.code == "config.vm"
    assert "\n" not in info.value.message


def test_unknown_vm_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Failed to resolve VM"):
        resolve(SpectrumConfig(run_dir=tmp_path))


def test_config_copy_replaces_the_old_tree_and_fixes_modes(tmp_path: Path) -> None:
    src = tmp_path / "cfg"
    (src / "vm-sysupdate.d").mkdir(parents=True)
    (src / "update-url").write_text("https://u.example/\n")
    (src / "update-url").chmod(0o600)
    os.symlink("/dev/null", src / "vm-sysupdate.d" / "70-kernel.transfer")  # masked
    etc = tmp_path / "fs" / "Ab3xZ9" / "etc"
    etc.mkdir(parents=True)
    (etc / "stale").write_text("old")
    provide_config(src, etc)
    assert not (etc / "stale").exists()
    assert (etc / "update-url").stat().st_mode & 0o777 == 0o644
    assert (etc / "systemd").is_dir()
    assert os.readlink(etc / "vm-sysupdate.d" / "70-kernel.transfer") == "/dev/null"
    assert (etc.parent / "updates").is_dir()
