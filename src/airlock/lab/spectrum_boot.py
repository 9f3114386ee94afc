# SPDX-License-Identifier: MIT
"""Boot the lab's Spectrum-shaped host: run inside a new mount namespace, then exit.

``SpectrumHost.boot`` runs ``python -m airlock.lab.spectrum_boot SPEC_JSON`` as the first process
of a mount namespace anchored on a file (``unshare --mount=FILE``), so the namespace lives on after
this helper exits.  The helper mounts the host's root as an image is mounted, READ-ONLY: an
overlay of the lower layers only (no upper layer, so nothing can be written), then ``/proc``,
``/dev``, ``/sys``, tmpfs ``/run`` and ``/tmp``, the user-data btrfs (loop) at ``/ext``, the ESP at
``/efi`` and the lab's plumbing (the disk image, the update network), and makes it the
namespace's root (``pivot_root``).  Nothing else is writable: there is no ``/var`` to write to.

Trusts the spec, which ``SpectrumHost`` writes.  Any failure exits non-zero with one line.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

from airlock import proc
from airlock.errors import AirlockError

_T = 60.0
MNT_DETACH = 2


def _mount(*args: str) -> None:
    proc.run(["mount", *args], timeout=_T, share_pids=True)  # this namespace, its /proc


def boot(spec: dict[str, object]) -> None:
    """Mount the root described by ``spec`` and pivot into it (see the module docstring)."""
    root = str(spec["root"])
    lowers = ":".join(str(p) for p in spec["layers"])  # type: ignore[attr-defined]  # a list
    _mount("-t", "overlay", "-o", f"ro,lowerdir={lowers}", "overlay", root)
    _mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", f"{root}/proc")
    _mount("--rbind", "/dev", f"{root}/dev")
    _mount("--rbind", "-o", "ro", "/sys", f"{root}/sys")
    _mount("-t", "tmpfs", "-o", "mode=0755,nosuid,nodev", "tmpfs", f"{root}/run")
    _mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", f"{root}/tmp")  # noqa: S108
    # Spectrum mounts its user data nosuid,nodev,noexec,nosymfollow; the staging dir lives there.
    opts = "loop,nosuid,nodev,noexec,nosymfollow"
    _mount("-t", "btrfs", "-o", opts, str(spec["userdata"]), f"{root}/ext")
    _mount("--bind", str(spec["esp"]), f"{root}/efi")
    lab = Path(root, "run/lab")
    lab.mkdir(mode=0o755)
    for name, source in dict(spec["plumbing"]).items():  # type: ignore[call-overload]  # a dict
        (lab / name).touch()
        _mount("--bind", str(source), str(lab / name))
    proc.run(["pivot_root", ".", "."], timeout=_T, cwd=Path(root), share_pids=True)
    # The old root is stacked under the new one; detach it here, not by a command: airlock's
    # guard (python and its script) is no longer reachable from the new root.
    os.chdir("/")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(b".", MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"detaching the old root: {os.strerror(err)}")


def main(argv: list[str]) -> int:
    """``python -m airlock.lab.spectrum_boot SPEC_JSON``."""
    try:
        boot(json.loads(argv[1]))
    except (AirlockError, OSError, KeyError, ValueError) as exc:
        print(f"spectrum-boot: {exc}", file=sys.stderr)
        return 1
    os.sync()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
