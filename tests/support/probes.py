# SPDX-License-Identifier: MIT
"""Real capability probes: each does the real thing once per run and caches the answer."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from airlock.backends.apply import runtime
from airlock.errors import AirlockError, HostError
from airlock.layout import Layout


def _run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, timeout=timeout, check=False)


@functools.cache
def root() -> str | None:
    """None when we are root and can create a mount namespace, else the reason."""
    if os.geteuid() != 0:
        return "not root"
    r = _run(["unshare", "--mount", "--propagation", "private", "true"])
    return None if r.returncode == 0 else "cannot unshare a mount namespace"


@functools.cache
def btrfs() -> str | None:
    """Loop file → mkfs.btrfs → mount → subvolume → read-only snapshot → delete → unmount."""
    if (why := root()) is not None:
        return why
    for tool in ("mkfs.btrfs", "btrfs", "losetup"):
        if shutil.which(tool) is None:
            return f"{tool} missing"
    with tempfile.TemporaryDirectory(prefix="airlock-probe-") as tmp:
        img, mnt = Path(tmp, "fs.img"), Path(tmp, "mnt")
        mnt.mkdir()
        with open(img, "wb") as fh:
            fh.truncate(256 << 20)
        if _run(["mkfs.btrfs", "-q", "-f", os.fspath(img)]).returncode != 0:
            return "mkfs.btrfs failed"
        if _run(["mount", "-t", "btrfs", "-o", "loop", os.fspath(img), os.fspath(mnt)]).returncode:
            return "cannot mount a loop-backed btrfs"
        try:
            ok = (
                _run(["btrfs", "subvolume", "create", os.fspath(mnt / "a")]).returncode == 0
                and _run(
                    [
                        "btrfs",
                        "subvolume",
                        "snapshot",
                        "-r",
                        os.fspath(mnt / "a"),
                        os.fspath(mnt / "b"),
                    ]
                ).returncode
                == 0
                and _run(["btrfs", "subvolume", "delete", os.fspath(mnt / "b")]).returncode == 0
            )
        finally:
            _run(["umount", os.fspath(mnt)])
        return None if ok else "btrfs subvolume operations failed"


@functools.cache
def sandbox() -> str | None:
    """bubblewrap with user, mount, pid and net namespaces."""
    if shutil.which("bwrap") is None:
        return "bwrap missing"
    r = _run(
        [
            "bwrap",
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--unshare-all",
            "--die-with-parent",
            "true",
        ]
    )
    return None if r.returncode == 0 else "bwrap cannot create namespaces"


@functools.cache
def _located(choice: str | None = None) -> runtime.Runtime | str:
    """The runtime ``choice`` names (``None``: the one ``airlock update`` uses), or why none."""
    try:
        return runtime.locate(choice=choice)
    except AirlockError as exc:
        return exc.message + (f" ({exc.hint})" if exc.hint else "")


def sysupdate_runtime(choice: str | None = None) -> Path | None:
    """The root of that runtime (``/`` for the host's own), if any."""
    rt = _located(choice)
    return rt.root if isinstance(rt, runtime.Runtime) else None


@functools.cache
def sysupdate_named(choice: str | None) -> str | None:
    """The systemd-sysupdate ``choice`` names runs, the way the product runs it.

    ``runtime.locate(choice=...)`` picks it (``None``: the product's own choice — the host's if
    ≥ 257, else the default runtime) and reads its major version; ``Runtime.run`` (private mount
    and PID namespaces, overlay, chroot) must then report that same version, and a named runtime
    must be that major: the tests run exactly what ``airlock update`` would.
    """
    if (why := root()) is not None:
        return why
    rt = _located(choice)
    if isinstance(rt, str):
        return rt
    try:
        done = rt.run(["--version"], timeout=60)
    except HostError as exc:
        return f"systemd-sysupdate in {rt.root} does not run: {exc.message}"
    found = re.match(rb"systemd (\d+) ", done.stdout)
    if done.returncode != 0 or found is None:
        return f"systemd-sysupdate in {rt.root} does not run (exit {done.returncode})"
    major = int(found.group(1))
    if major != rt.version or rt.version < runtime.MIN_VERSION:
        return f"systemd-sysupdate in {rt.root} is {found.group(1).decode()}, not {rt.version}"
    if choice not in (None, runtime.AUTO, runtime.HOST) and str(major) != choice:
        return f"runtime {choice} runs systemd-sysupdate {major}"
    return None


@functools.cache
def sysupdate() -> str | None:
    """The systemd-sysupdate the product will use runs and is ≥ 257 (``sysupdate_named``)."""
    return sysupdate_named.__wrapped__(None)


@functools.cache
def vm() -> str | None:
    """QEMU present (TCG is enough)."""
    return None if shutil.which("qemu-system-x86_64") else "qemu-system-x86_64 missing"


@functools.cache
def boot() -> str | None:
    """QEMU, OVMF, the guest's kernel and the runtime's ukify and systemd-boot (lab boots)."""
    from airlock.lab import esp, initramfs, machine

    if (why := vm()) is not None:
        return why
    for path in (machine.OVMF_CODE, machine.OVMF_VARS):
        if not path.is_file():
            return f"{path} missing (Debian package ovmf)"
    if initramfs.GuestKernel.find() is None:
        return "the guest kernel is missing (make guest)"
    rt = sysupdate_runtime()
    if rt is None or not (rt / esp.SYSTEMD_BOOT).is_file() or not (rt / "usr/bin/ukify").exists():
        return "the runtime has no ukify or systemd-boot (make runtime)"
    return None


@functools.cache
def s6() -> str | None:
    """The s6 tools."""
    for tool in ("s6-svscan", "s6-svlisten1", "s6-svc"):
        if shutil.which(tool) is None:
            return f"{tool} missing"
    return None


@functools.cache
def e2e() -> str | None:
    """Everything the lab needs."""
    for probe in (root, btrfs, sandbox, sysupdate):
        if (why := probe()) is not None:
            return why
    return None


@functools.cache
def spectrum_host() -> str | None:
    """The Spectrum-shaped host's layers (make setup: the runtime and make-spectrum-host.sh)."""
    if (why := e2e()) is not None:
        return why
    layout = Layout.load()
    if layout.spectrum_host_layer() is None:
        return f"the Spectrum host layer is not built under {layout.spectrum_host} (make setup)"
    return None


PROBES = {
    "root": root,
    "btrfs": btrfs,
    "sandbox": sandbox,
    "sysupdate": sysupdate,
    "vm": vm,
    "boot": boot,
    "s6": s6,
    "e2e": e2e,
    "spectrum_host": spectrum_host,
}
