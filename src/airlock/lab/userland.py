# SPDX-License-Identifier: MIT
"""A small userland for the lab's bootable releases, taken from this Debian 12 host.

The initramfs and the EROFS roots need a shell and a few tools: busybox (static) for the shell and
the small commands, and, for what busybox cannot do, the host's own dynamically linked programs —
``veritysetup`` (cryptsetup-bin), ``findfs`` (util-linux; busybox's applet knows no PARTUUID) and
``dmsetup`` — each copied with the shared libraries ``ldd`` names, at the same paths.  The guest
runs a Debian 12 kernel, so the host's Debian 12 programs fit it.  Trusts: the host's programs.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from airlock import proc
from airlock.errors import HostError

BUSYBOX = Path("/bin/busybox")
_LIBRARY = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")
TOOLS = {
    "/bin/busybox": "busybox-static",
    "/sbin/veritysetup": "cryptsetup-bin",
    "/sbin/findfs": "util-linux",
    "/sbin/dmsetup": "dmsetup",
}


def check() -> None:
    """Refuse, in one line, when a program the bootable releases need is missing.

    Raises:
        HostError: ``host.tools``.
    """
    missing = sorted({pkg for path, pkg in TOOLS.items() if not os.access(path, os.X_OK)})
    if missing:
        raise HostError(
            f"Bootable lab releases need programs from Debian packages: {', '.join(missing)}",
            code="host.tools",
            hint="run `make demo` as root: scripts/install-deps.sh installs them",
        )


def libraries(program: Path) -> tuple[Path, ...]:
    """The shared libraries (and the dynamic loader) ``program`` loads, as ``ldd`` lists them.

    Raises:
        HostError: ldd failed.
    """
    out = proc.run(["ldd", program], timeout=60, check=False)
    if out.returncode != 0 and b"not a dynamic executable" in out.stdout + out.stderr:
        return ()
    if out.returncode != 0:
        raise HostError(f"ldd {program} failed", code="host.tools")
    found = _LIBRARY.findall(out.stdout.decode("utf-8", "replace"))
    return tuple(Path(p) for p in dict.fromkeys(found))


def install(tree: Path, programs: Iterable[Path]) -> None:
    """Copy each program and its libraries into ``tree`` at the same absolute paths."""
    for program in programs:
        for path in (program, *libraries(program)):
            target = tree / path.relative_to("/")
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path.resolve(), target)
            target.chmod(0o755)


def busybox(tree: Path, *, links: bool) -> None:
    """``tree/bin/busybox``; with ``links``, a ``bin/NAME`` symlink for every applet.

    Without links the init script runs ``busybox --install -s`` itself (a writable initramfs); a
    read-only root needs them made here.  Existing files (real programs) are never replaced.
    """
    (tree / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BUSYBOX, tree / "bin/busybox")
    (tree / "bin/busybox").chmod(0o755)
    if not links:
        return
    applets = proc.run([BUSYBOX, "--list"], timeout=30).stdout.decode().split()
    for name in applets:
        link = tree / "bin" / name
        if name != "busybox" and not (tree / "sbin" / name).exists() and not link.exists():
            link.symlink_to("busybox")
