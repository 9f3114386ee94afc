# SPDX-License-Identifier: MIT
"""A Spectrum-shaped host under tmp_path: /run/vm, /run/fs, a persistent per-VM mount namespace,
and a real s6 supervision tree whose ``vmm`` instance is an idle stand-in VMM that boots a guest
when ``vm-start`` asks (design.md#vm)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from airlock.backends.fetcher.spectrum import SpectrumConfig

VM_NAME = "sys.appvm-systemd-sysupdate"
VM_ID = "Ab3xZ9"


@dataclass
class World:
    root: Path
    run: Path
    service: Path
    ns_mnt: Path
    fs: Path
    share: Path
    config_dir: Path
    guest: Path
    vm_start: Path
    vm_stop: Path

    def config(self, **overrides: object) -> SpectrumConfig:
        values: dict[str, object] = {
            "run_dir": self.run,
            "vm_name": VM_NAME,
            "vm_start": (os.fspath(self.vm_start),),
            "vm_stop": (os.fspath(self.vm_stop),),
            "stop_timeout_s": 10.0,
        }
        values.update(overrides)
        return SpectrumConfig(**values)  # type: ignore[arg-type]

    def set_guest(self, body: str) -> None:
        self.guest.write_text("#!/bin/sh\n" + body + "\n")

    def svstat(self) -> tuple[bool, int | None]:
        out = subprocess.run(
            ["s6-svstat", "-o", "up,pid", self.service], capture_output=True, text=True, check=False
        ).stdout.split()
        if len(out) != 2:  # s6-supervise not started yet
            return False, None
        return out[0] == "true", (int(out[1]) if out[1].isdigit() and out[1] != "-1" else None)

    def wait_up(self, timeout_s: float = 10) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            up, pid = self.svstat()
            if up and pid:
                return pid
            time.sleep(0.05)
        raise AssertionError("VMM service did not come up")

    def vm_mounts(self) -> list[str]:
        """Mount points inside the VM's mount namespace at or below <run>/fs/<id>."""
        info = subprocess.run(
            ["nsenter", f"--mount={self.ns_mnt}", "--", "cat", "/proc/self/mountinfo"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [
            line.split()[4]
            for line in info.splitlines()
            if line.split()[4].startswith(os.fspath(self.fs))
        ]


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def _sh(*argv: str | os.PathLike[str]) -> None:
    subprocess.run([os.fspath(a) for a in argv], check=True, capture_output=True)


@contextmanager
def spectrum_world(tmp_path: Path) -> Iterator[World]:
    run = tmp_path / "run"
    by_id = run / "vm" / "by-id" / VM_ID
    (by_id / "ns").mkdir(parents=True)
    (run / "vm" / "by-name").mkdir(parents=True)
    os.symlink(by_id, run / "vm" / "by-name" / VM_NAME)
    fs = run / "fs" / VM_ID
    (fs / "updates").mkdir(parents=True)
    share = tmp_path / "shared"
    share.mkdir()
    config_dir = tmp_path / "vmconfig"
    (config_dir / "vm-sysupdate.d").mkdir(parents=True)
    (config_dir / "vm-sysupdate.d" / "60-root.transfer").write_text("[Transfer]\n")
    (config_dir / "update-url").write_text("https://updates.example/\n")
    boot = by_id / "boot"
    os.mkfifo(boot)
    ns = by_id / "ns"
    ns_mnt = ns / "mnt"
    scan = run / "service" / "vmm" / "instance"
    service = scan / VM_ID
    service.mkdir(parents=True)
    guest = tmp_path / "guest.sh"
    world = World(
        root=tmp_path,
        run=run,
        service=service,
        ns_mnt=ns_mnt,
        fs=fs,
        share=share,
        config_dir=config_dir,
        guest=guest,
        # vm-start: boot the idle VMM (ch-remote boot), then return 2 s later, so a quick guest
        # is gone and s6 has restarted an idle VMM before a naive `s6-svwait -D`
        # (design.md#vm-wait-race).
        vm_start=_script(tmp_path / "vm-start", f"echo boot > {boot}\nsleep 2\n"),
        # vm-stop: the VMM exits (ch-remote shutdown).
        vm_stop=_script(tmp_path / "vm-stop", f"exec s6-svc -k {service}\n"),
    )
    world.set_guest("exit 0")
    # The stand-in VMM: idle until booted, then the guest runs inside the VM's mount namespace
    # (as virtiofsd does), and the service goes down when the guest "powers off".
    _script(
        service / "run",
        f"exec 2>&1\nread cmd < {boot}\n" f"exec nsenter --mount={ns_mnt} -- /bin/sh {guest}\n",
    )
    _script(service / "finish", "exec sleep 0.3\n")
    svscan: subprocess.Popen[bytes] | None = None
    host_mounts: list[Path] = []
    try:
        # A persistent mount namespace, Spectrum's create-vm-dependencies way
        # (design.md#tools-namespaces).
        _sh("mount", "--bind", ns, ns)
        host_mounts.append(ns)
        _sh("mount", "--make-private", ns)
        ns_mnt.touch()
        _sh("unshare", f"--mount={ns_mnt}", "--propagation", "slave", "true")
        host_mounts.append(ns_mnt)
        # Inside it the share root is read-only; bind mounts below it may be writable
        # (design.md#vm-namespaces).
        _sh("nsenter", f"--mount={ns_mnt}", "--", "mount", "--bind", fs, fs)
        _sh("nsenter", f"--mount={ns_mnt}", "--", "mount", "-o", "remount,bind,ro", fs)
        svscan = subprocess.Popen(
            ["s6-svscan", os.fspath(scan)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        world.wait_up()
        yield world
    finally:
        if svscan is not None:
            subprocess.run(["s6-svc", "-dx", service], check=False, capture_output=True)
            subprocess.run(["s6-svscanctl", "-t", scan], check=False, capture_output=True)
            try:
                svscan.wait(10)
            except subprocess.TimeoutExpired:
                svscan.kill()
                svscan.wait()
        for path in reversed(host_mounts):
            subprocess.run(["umount", path], check=False, capture_output=True)


def processes_mentioning(marker: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmd:
            found.append(cmd.replace(b"\0", b" ").decode(errors="replace"))
    return found
