# SPDX-License-Identifier: MIT
"""A complete host world for end-to-end runs of ``airlock update`` under tmp_path.

Real btrfs staging, a GPT disk image with Spectrum's A/B layout (slot A = version 1), an ESP
directory, Spectrum's host transfers (``Path=`` pointing at the image instead of ``auto``), a
throwaway signing key, a signed release directory and a host config pointing every path into
tmp_path.  The fetch command is a small shell program run in the bubblewrap sandbox.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from airlock import config
from airlock.lab import disk
from tests.support import releases, schemas

V1_HASH = hashlib.sha256(b"v1").hexdigest()
V2_HASH = hashlib.sha256(b"v2").hexdigest()
ROOT_MIB, VERITY_MIB = 8, 1

TRANSFERS = {
    "50-verity": ("Spectrum_@v_@u.verity", "partition", "Spectrum_@v.verity", "root-verity"),
    "60-root": ("Spectrum_@v_@u.root", "partition", "Spectrum_@v", "root"),
}


def host_transfers(directory: Path, image: Path) -> Path:
    """Spectrum's host transfers (design.md#transfers-host) with ``Path=`` set to the disk image."""
    directory.mkdir(parents=True, exist_ok=True)
    for stem, (src, _kind, target, ptype) in TRANSFERS.items():
        (directory / f"{stem}.transfer").write_text(
            "[Transfer]\nProtectVersion=%A\n\n"
            f"[Source]\nType=url-file\nPath=file:///run/updater\nMatchPattern={src}\n\n"
            f"[Target]\nType=partition\nPath={image}\nMatchPattern={target}\n"
            f"MatchPartitionType={ptype}\nPartitionFlags=0\nReadOnly=1\n"
        )
    (directory / "70-kernel.transfer").write_text(
        "[Transfer]\nProtectVersion=%A\n\n"
        "[Source]\nType=url-file\nPath=file:///run/updater\nMatchPattern=Spectrum_@v.efi\n\n"
        "[Target]\nType=regular-file\nPath=/EFI/Linux\nPathRelativeTo=boot\n"
        "MatchPattern=Spectrum_@v.efi\nMode=0644\nInstancesMax=2\n"
    )
    return directory


@dataclass
class World:
    root: Path
    staging: Path
    image: Path
    esp: Path
    release: Path
    config: Path
    state_file: Path
    lock: Path
    files: dict[str, bytes]
    key: releases.SigningKey

    def write_config(
        self,
        command: Sequence[str],
        settings: Mapping[str, object] | None = None,
        *,
        keyring: Path | None = None,
        policy: Mapping[str, object] | None = None,
        limits: Mapping[str, int] | None = None,
    ) -> None:
        """Write ``host.toml``: every path into this world, the fetch ``command`` in the sandbox.

        The one place tests write a host config: ``keyring`` (default: the world's key),
        ``policy`` (``[policy]`` keys: ``trusted_fingerprints``, ``threshold``, ``require_fresh``),
        ``limits`` (``[limits]`` caps) and any other setting in ``settings`` by its dotted name
        (e.g. ``"staging.qgroup_limit_bytes"``).
        """
        values: dict[str, object] = {
            "host.definitions_dir": self.root / "etc/sysupdate.d",
            "host.keyring": keyring or self.key.pubring,
            "host.os_release": self.root / "etc/os-release",
            "lock.path": self.lock,
            "fetcher.backend": "sandbox",
            "fetcher.timeout_s": 60,
            "fetcher.command": list(command),
            "fetcher.vm_definitions_dir": self.root / "etc/vm-sysupdate.d",
            "fetcher.update_url_file": self.root / "etc/update-url",
            "fetcher.sandbox.ro_binds": [self.release],
            "apply.esp_path": self.esp,
            "apply.binds": [self.image],
            "state.path": self.state_file,
            **{f"policy.{key}": value for key, value in (policy or {}).items()},
            **{f"limits.{key}": value for key, value in (limits or {}).items()},
            **(settings or {}),
        }
        self.config.write_text(config.render(values))

    def copy_in(self, extra: str = "") -> list[str]:
        """A fetch program that copies the prepared release into the share."""
        return ["/bin/sh", "-c", f"cp {self.release}/* /host/updates/ {extra}"]

    def airlock(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "airlock", *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        schemas.check_output(args, done.stdout)  # every --json run checks the promised shape
        return done

    def update(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return self.airlock("update", str(self.staging), "--json", *args, timeout=timeout)

    def disk_digest(self) -> str:
        return hashlib.sha256(self.image.read_bytes()).hexdigest()

    def esp_listing(self) -> dict[str, str]:
        base = self.esp / "EFI/Linux"
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(base.iterdir())}

    def slots(self) -> tuple[disk.Slot, ...]:
        return disk.state(self.image)

    def host_state(self) -> dict[str, object]:
        """What a refused run must leave byte-identical: the disk image, ``$BOOT``, the state."""
        boot = {
            os.fspath(p.relative_to(self.esp)): (
                p.lstat().st_mode,
                hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None,
            )
            for p in sorted(self.esp.rglob("*"))
        }
        saved = self.state_file.read_bytes() if self.state_file.exists() else None
        return {"disk": self.disk_digest(), "boot": boot, "state": saved}

    def boot(self, version: str) -> None:
        """The host now runs ``version`` (its os-release says so), as after a reboot into it."""
        (self.root / "etc/os-release").write_text(
            f'ID=spectrum\nNAME="Spectrum"\nIMAGE_VERSION={version}\n'
        )

    def save_pristine(self) -> None:
        """Keep the disk image, ``$BOOT``, os-release and the state file for ``restore``."""
        keep = self.root / "pristine"
        shutil.rmtree(keep, ignore_errors=True)
        keep.mkdir()
        shutil.copy2(self.root / "etc/os-release", keep / "os-release")
        shutil.copy2(self.image, keep / "disk.img")
        shutil.copytree(self.esp, keep / "esp", symlinks=True)
        if self.state_file.exists():
            shutil.copy2(self.state_file, keep / "state.json")

    def restore(self, *, state: bool = True) -> None:
        """Put back what ``save_pristine`` kept; ``state=False`` keeps the current state file and
        the running system (the disk and ``$BOOT`` "restored from a backup" behind the host's
        back)."""
        keep = self.root / "pristine"
        shutil.copy2(keep / "disk.img", self.image)
        shutil.rmtree(self.esp)
        shutil.copytree(keep / "esp", self.esp, symlinks=True)
        if state:
            shutil.copy2(keep / "os-release", self.root / "etc/os-release")
            self.state_file.unlink(missing_ok=True)
            if (keep / "state.json").exists():
                shutil.copy2(keep / "state.json", self.state_file)


def build(root: Path, btrfs: Path) -> World:
    """Create everything under ``root`` (staging on the mounted btrfs ``btrfs``)."""
    etc = root / "etc"
    releases.write_vm_transfers(etc / "vm-sysupdate.d")  # the host checks the VM gets them
    (etc / "update-url").write_text("http://127.0.0.1:9/\n")
    (etc / "os-release").write_text('ID=spectrum\nNAME="Spectrum"\nIMAGE_VERSION=1\n')
    image = root / "disk.img"
    v1_root, v1_verity = root / "v1.root", root / "v1.verity"
    v1_root.write_bytes(releases.payload(3 << 20, seed="v1-root"))
    v1_verity.write_bytes(releases.payload(64 << 10, seed="v1-verity"))
    disk.create(
        image,
        roothash=V1_HASH,
        version="1",
        root_image=v1_root,
        verity_image=v1_verity,
        root_mib=ROOT_MIB,
        verity_mib=VERITY_MIB,
    )
    host_transfers(etc / "sysupdate.d", image)
    esp = root / "esp"
    (esp / "EFI/Linux").mkdir(parents=True)
    (esp / "EFI/Linux/Spectrum_1.efi").write_bytes(releases.payload(8192, seed="v1-efi"))
    key = releases.make_key(root / "key")
    root_name, verity_name, efi_name = releases.spectrum_names("2", V2_HASH)
    files = {
        root_name: releases.payload(4 << 20, seed="v2-root"),
        verity_name: releases.payload(96 << 10, seed="v2-verity"),
        efi_name: releases.payload(12288, seed="v2-efi"),
    }
    release = root / "release"
    releases.make_release(release, "2", files, key)
    for index in release.glob("*.blocks"):
        # The fetch programs here copy the release as a VM would leave it in updates/: the
        # block indexes (for delta downloads) never get there; the judge would refuse them.
        index.unlink()
    os.chmod(release, 0o755)  # noqa: S103 - the sandbox uid reads it
    for p in release.iterdir():
        os.chmod(p, 0o644)
    world = World(
        root=root,
        staging=btrfs / "staging",
        image=image,
        esp=esp,
        release=release,
        config=root / "host.toml",
        state_file=root / "state/state.json",
        lock=root / "update-lock",
        files=files,
        key=key,
    )
    world.write_config(world.copy_in())
    return world


def events(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
