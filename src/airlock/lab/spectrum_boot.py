# SPDX-License-Identifier: MIT
"""Boot the lab's Spectrum-shaped host in a new mount namespace, then hand that namespace over.

``SpectrumHost.boot`` runs ``python -m airlock.lab.spectrum_boot SPEC_JSON`` under proc's guard,
which gives it a mount namespace of its own (a copy of the lab's).  The helper makes it private
and mounts the host's root as an image is mounted, READ-ONLY: an overlay of the lower layers only
(no upper layer, so nothing can be written), then the lab's own ``/proc``, ``/dev``,
``/sys``, tmpfs ``/run`` and ``/tmp``, the user-data btrfs (loop) at ``/ext``, the ESP at ``/efi``
and the lab's plumbing (the disk image, the update network), and makes it the namespace's root
(``pivot_root``).  Nothing else is writable: there is no ``/var`` to write to.  Then it prints
``ready PID`` (its pid in the lab's /proc), the lab binds ``/proc/PID/ns/mnt`` on a file so the
namespace outlives the helper, and closes the helper's stdin, on which it exits.

Trusts the spec, which ``SpectrumHost`` writes.  Any failure exits non-zero with one line.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from airlock import proc
from airlock.errors import AirlockError, HostError

_T = 60.0
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(*args: str) -> None:
    # In this helper's mount namespace, which becomes the host's.
    proc.run(["mount", *args], timeout=_T, share_mounts=True)


def boot(spec: dict[str, object]) -> None:
    """Mount the root described by ``spec`` and pivot into it (see the module docstring)."""
    root = str(spec["root"])
    lowers = ":".join(str(p) for p in spec["layers"])  # type: ignore[attr-defined]  # a list
    _mount("--make-rprivate", "/")  # a copy of the lab's mounts that sends nothing back
    _mount("-t", "overlay", "-o", f"ro,lowerdir={lowers}", "overlay", root)
    # The lab's own /proc: the host's processes run in many PID namespaces (each under its
    # guard), and a /proc of this helper's would die with it.  Under the one proc's guard put
    # on our /proc lies this namespace's copy of the lab's.
    if _libc.umount2(b"/proc", MNT_DETACH) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"umount of the guard's /proc failed: {os.strerror(errno)}")
    _mount("--rbind", "/proc", f"{root}/proc")
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
    proc.run(["pivot_root", ".", "."], timeout=_T, cwd=Path(root), share_mounts=True)
    # Nothing of the lab (proc's guard, its python) can be started past this point: detach the
    # old root ourselves.
    os.chdir("/")
    if _libc.umount2(b".", MNT_DETACH) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"umount of the old root failed: {os.strerror(errno)}")


def anchored(spec: Mapping[str, object], anchor: Path) -> None:
    """Run this helper in a mount namespace of its own (proc gives every child one) and bind that
    namespace on ``anchor``, so it outlives the helper.

    The helper says ``ready PID`` with its pid in our /proc (which it gives the host) once the
    root is mounted, and exits when its stdin closes.

    Raises:
        HostError: ``host.lab`` when the helper failed (with what it said).
    """
    said_r, said_w = os.pipe2(os.O_CLOEXEC)
    hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
    argv = [sys.executable, "-m", __name__, json.dumps(spec)]
    try:
        with proc.spawn(
            argv, inherit_env=True, stdin=hold_r, stdout=said_w, stderr=said_w
        ) as helper:
            for fd in (said_w, hold_r):
                os.close(fd)
            said_w = hold_r = -1
            said = _first_line(said_r, time.monotonic() + _T)
            if not said.startswith("ready "):
                raise HostError(f"Booting the Spectrum host failed: {said}", code="host.lab")
            where = f"/proc/{int(said.split()[1])}/ns/mnt"
            proc.run(["mount", "--bind", where, anchor], timeout=_T, share_mounts=True)
            os.close(hold_w)
            hold_w = -1
            proc.wait(helper, timeout=_T)
    finally:
        for fd in (said_r, said_w, hold_r, hold_w):
            if fd >= 0:
                os.close(fd)


def _first_line(fd: int, deadline: float) -> str:
    """The helper's first line (``ready PID``), or all it said before it exited or timed out."""
    data = b""
    while b"\n" not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip() or "it said nothing"


def main(argv: list[str]) -> int:
    """``python -m airlock.lab.spectrum_boot SPEC_JSON``."""
    try:
        spec = json.loads(argv[1])
        boot(spec)
    except (AirlockError, OSError, KeyError, ValueError) as exc:
        print(f"spectrum-boot: {exc}", file=sys.stderr)
        return 1
    os.sync()
    # Our pid in the lab's /proc, where the lab binds our mount namespace; then wait for it.
    print(f"ready {os.readlink('/proc/self')}", flush=True)
    sys.stdin.buffer.read()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
