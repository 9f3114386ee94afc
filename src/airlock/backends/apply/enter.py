# SPDX-License-Identifier: MIT
"""Namespace-side helper: set up the mounts of one sysupdate run, chroot, exec systemd-sysupdate.

Executed by ``runtime.Runtime.run`` as ``python3 -I -S enter.py SPEC_JSON`` *inside* a fresh private
mount namespace (``unshare --mount --propagation private``, in the PID namespace of proc's guard),
so every mount it makes disappears with the namespace. Standard library only (it runs with ``-I
-S``), no airlock imports. The spec is written by trusted host code; nothing here reads untrusted
input.

The runtime root is the read-only lower layer of an overlay whose upper layer is a tmpfs, so the
run can create mount points (and sysupdate can write to its own root) without changing the shared
root.  Mounts use mount(2) through ctypes and fail hard: a mount that did not happen aborts the
run (exit 125) before exec.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import sys

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
)


def mount(
    source: str, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    """mount(2), raising OSError."""
    rc = _libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def bind(
    source: str, target: str, *, read_only: bool, recursive: bool = False, extra: int = 0
) -> None:
    """Bind ``source`` on ``target``, then remount with the wanted flags (a bind ignores them)."""
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    flags = MS_REMOUNT | MS_BIND | extra | (MS_RDONLY if read_only else 0)
    if flags != MS_REMOUNT | MS_BIND:
        mount("none", target, None, flags)


def _overlay(lower: str, scratch: str) -> str:
    """A writable view of the runtime root whose changes live in a tmpfs and die with the run.

    Mount points for binds are created in it, so the shared runtime root is never modified and
    concurrent runs cannot see each other's mount points.
    """
    mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700")
    for d in ("upper", "work", "root"):
        os.mkdir(os.path.join(scratch, d), 0o755)
    merged = os.path.join(scratch, "root")
    mount(
        "overlay",
        merged,
        "overlay",
        0,
        f"lowerdir={lower},upperdir={scratch}/upper,workdir={scratch}/work",
    )
    return merged


def _mounts_below(path: str) -> list[str]:
    """Mount points strictly below ``path`` (octal escapes of mountinfo left as they are)."""
    prefix = path.rstrip("/") + "/"
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(prefix)]


def _writable_view(path: str, scratch: str, made: list[str]) -> None:
    """Make the nearest existing ancestor of ``path`` writable *in this namespace only*.

    An overlay whose lower layer is that directory and whose upper layer is a tmpfs is mounted on
    the directory itself: it shows the same entries, and a mount point created in it lives in the
    tmpfs, so a read-only ``/usr`` or ``/etc`` of the host is never written.  Refused for ``/``
    and for a directory with mounts below it (the overlay would hide them).
    """
    existing = path
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    if existing in made:
        return
    if existing == "/" or _mounts_below(existing):
        raise OSError(
            errno.EROFS, f"cannot make a mount point below {existing}: it is / or has mounts"
        )
    layer = os.path.join(scratch, f"view{len(made)}")
    os.mkdir(layer, 0o700)
    mount("tmpfs", layer, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    os.mkdir(os.path.join(layer, "upper"), 0o755)
    os.mkdir(os.path.join(layer, "work"), 0o755)
    mount(
        "overlay",
        existing,
        "overlay",
        MS_NOSUID | MS_NODEV,
        f"lowerdir={existing},upperdir={layer}/upper,workdir={layer}/work",
    )
    made.append(existing)


def _ensure_target(target: str, *, is_dir: bool) -> None:
    """Create a missing mount point (in a tmpfs upper layer: the chroot's, or a private view)."""
    if os.path.lexists(target):
        return
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    if is_dir:
        os.mkdir(target, 0o755)
    else:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))


def main(argv: list[str]) -> int:  # returns only on failure; success replaces the process
    """Set up and exec; see the module docstring.  Exit 125 on a setup failure."""
    spec = json.loads(argv[1])
    root: str = spec["root"]
    try:
        mount("none", "/", None, MS_REC | MS_PRIVATE)  # belt and braces over --propagation
        if root == "/":
            # The run has its own PID namespace: a /proc of it, or sysupdate's helpers (forked
            # and waited for by pid, with /proc/PID checks) see the host's pids and fail.
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        if root != "/":
            root = _overlay(root, spec["scratch"])
            mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            bind("/sys", root + "/sys", read_only=False, recursive=True)
            bind("/dev", root + "/dev", read_only=False, recursive=True)
            for tmp in ("/run", "/tmp", "/var/tmp"):  # noqa: S108 - inside the chroot
                mount("tmpfs", root + tmp, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
        if root != "/":  # on the host, NOTIFY_SOCKET already names the host-side socket
            os.makedirs(root + spec["notify_dir"], mode=0o700, exist_ok=True)
            bind(
                spec["notify_host_dir"],
                root + spec["notify_dir"],
                read_only=False,
                extra=MS_NOSUID | MS_NODEV | MS_NOEXEC,
            )
        views: list[str] = []
        for b in spec["binds"]:
            target = root + b["target"] if root != "/" else b["target"]
            if root == "/" and not os.path.lexists(target):
                # The host's own files: never written, even where they are writable.
                _writable_view(os.path.dirname(target), spec["scratch"], views)
            _ensure_target(target, is_dir=os.path.isdir(b["source"]))
            extra = MS_NOSUID | MS_NODEV | (MS_NOEXEC if b["read_only"] else 0)
            bind(b["source"], target, read_only=b["read_only"], extra=extra)
        os.chroot(root)
        os.chdir("/")
    except OSError as exc:
        sys.stderr.write(f"airlock-enter: {exc}\n")
        return 125
    argv_exec = [spec["binary"], *spec["args"]]
    os.execve(spec["binary"], argv_exec, spec["env"])  # noqa: S606 - trusted spec, no shell


if __name__ == "__main__":
    sys.exit(main(sys.argv))
