# SPDX-License-Identifier: MIT
"""Namespace-side helper of sysupdate mode: the share's keyring becomes the one sysupdate reads.

Spectrum's VM overlays the host's ``/host/etc`` on its ``/etc`` before it runs systemd-sysupdate
(design.md#vm-download), so sysupdate verifies with the host's keyring.  ``agent.sysupdate`` does
the same for ``airlock agent --mode sysupdate``: it runs ``python3 -I -S nsexec.py SPEC_JSON`` in
a new private mount namespace (``unshare --mount``, plus ``--map-root-user`` when not root), and
this helper binds the share's keyring read-only over ``/etc/systemd/import-pubring.gpg`` and over
the vendor keyring ``/usr/lib/systemd/import-pubring.gpg`` when that exists (sysupdate 257 falls
back to it silently), then execs systemd-sysupdate.  A missing ``/etc/systemd/import-pubring.gpg``
is created in a private writable view of its directory (an overlay whose upper layer is a tmpfs),
never on the VM's own filesystem.  Every mount dies with the namespace.

Standard library only, no airlock imports (it runs with ``-I -S``).  The spec comes from the
agent; nothing here reads what the network sent.  Exit 125 when a mount fails.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
ETC = "/etc/systemd/import-pubring.gpg"
VENDOR = "/usr/lib/systemd/import-pubring.gpg"

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    if _libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    ):
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _bind_read_only(source: str, target: str) -> None:
    _mount(source, target, None, MS_BIND, None)
    _mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None)


def _mount_point(target: str, scratch: str) -> None:
    """Create the file ``target`` in a private writable view of its directory."""
    directory = os.path.dirname(target)
    _mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700")
    for d in ("upper", "work"):
        os.mkdir(os.path.join(scratch, d), 0o755)
    _mount(
        "overlay",
        directory,
        "overlay",
        MS_NOSUID | MS_NODEV,
        f"lowerdir={directory},upperdir={scratch}/upper,workdir={scratch}/work",
    )
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))


def main(argv: list[str]) -> int:  # returns only on failure; success replaces the process
    """Bind the keyring, exec sysupdate; see the module docstring.  Exit 125 on a setup failure."""
    spec = json.loads(argv[1])
    keyring: str = spec["keyring"]
    try:
        _mount("none", "/", None, MS_REC | MS_PRIVATE, None)
        if not os.path.lexists(ETC):
            _mount_point(ETC, spec["scratch"])
        _bind_read_only(keyring, ETC)
        if os.path.lexists(VENDOR):
            _bind_read_only(keyring, VENDOR)
    except OSError as exc:
        sys.stderr.write(f"airlock-agent: {exc}\n")
        return 125
    os.execve(spec["argv"][0], spec["argv"], spec["env"])  # noqa: S606 - the agent's own argv


if __name__ == "__main__":
    sys.exit(main(sys.argv))
