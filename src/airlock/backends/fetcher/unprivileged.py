# SPDX-License-Identifier: MIT
"""What the sandbox and QEMU fetchers share to run as a real unprivileged host uid (ADR 0170).

airlock (root) gives ``shared`` to that uid and lets the fetcher's guard bind every host path the
fetcher opens onto an entry of a scratch directory the uid may enter: the staging directory above
``shared`` is 0700 and stays so, and a test's or an administrator's paths may sit below private
directories too.  The binds exist only in the fetcher's own mount namespace; on the host the
entries are empty and root's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from airlock import proc
from airlock.errors import ConfigError, HostError
from airlock.text import display

SCRATCH_PARENT = "/run"  # root's, 0755; not $TMPDIR, which may be private
SANDBOX_PREFIX = "airlock-sandbox-"
QEMU_PREFIX = "airlock-qemu-binds-"
QEMU_PROBE_PREFIX = "airlock-qemu-probe-"  # named after the kernel: the KVM probe has no share


def scratch_path(prefix: str, share: Path) -> Path:
    """The scratch directory of the fetcher ``prefix`` names for ``share`` (one per share)."""
    digest = hashlib.sha256(os.fsencode(os.path.abspath(share))).hexdigest()[:16]
    return Path(SCRATCH_PARENT) / f"{prefix}{digest}"


def forget(share: Path) -> None:
    """Remove what a killed fetcher left for ``share`` when no run will use it again.

    For whoever deletes a share (the lab sweeping a killed lab's work directory): the next run on
    the same share would remove these itself (``make_scratch``), but there is no next run.
    """
    for prefix in (SANDBOX_PREFIX, QEMU_PREFIX):
        remove_flat(scratch_path(prefix, share))


def make_scratch(prefix: str, share: Path) -> Path:
    """An empty directory, 0755, below ``SCRATCH_PARENT``, named after ``share``.

    One name per share: a run killed with its guard (SIGKILL, or ``leftovers`` stopping it) leaves
    its empty entries behind, and the next run on that share — which holds the update lock, after
    every process of the earlier one is gone — removes them here, one level, nothing followed.

    Raises:
        HostError: a leftover could not be removed or the directory made.
    """
    scratch = scratch_path(prefix, share)
    remove_flat(scratch)
    try:
        scratch.mkdir(mode=0o700)
        scratch.chmod(0o755)
    except OSError as exc:
        raise HostError(
            f"Failed to make {scratch} for the fetcher: {exc.strerror}", code="host.fetcher"
        ) from exc
    return scratch


def remove_flat(scratch: Path) -> None:
    """Remove ``scratch`` and its entries, one level, nothing followed (the guard may have)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(scratch):
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    os.rmdir(entry.path)
                else:
                    os.unlink(entry.path)
        os.rmdir(scratch)


def give_share(share: Path, uid: int, gid: int) -> None:
    """Make ``shared``'s top directory the uid's (``clean`` may have recreated it as root's).

    Raises:
        HostError: it could not be changed.
    """
    try:
        fd = os.open(share, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o755)
        finally:
            os.close(fd)
    except OSError as exc:
        raise HostError(
            f"Failed to give {share} to uid {uid}: {exc.strerror}", code="host.fetcher"
        ) from exc


def bind_through(scratch: Path, paths: Iterable[Path]) -> dict[Path, Path]:
    """One empty entry of ``scratch`` per path (a directory or a file, as the path is).

    Raises:
        HostError: an entry could not be made.
    """
    found: dict[Path, Path] = {}
    try:
        for path in paths:
            if path in found:
                continue
            target = scratch / str(len(found))
            if os.path.isdir(path):
                target.mkdir(mode=0o755)
            else:
                target.touch(mode=0o644)
            found[path] = target
    except OSError as exc:
        raise HostError(
            f"Failed to prepare {scratch} for the fetcher: {exc.strerror}", code="host.fetcher"
        ) from exc
    return found


def run_as(
    uid: int,
    gid: int,
    sources: dict[Path, Path],
    *,
    netns: Path | None = None,
    own_netns: bool = False,
    max_processes: int | None = None,
) -> proc.RunAs:
    """The ``RunAs`` for these binds, checked.

    Raises:
        ConfigError: a path the guard cannot carry (``:`` or ``=`` in it).
    """
    who = proc.RunAs(
        uid=uid,
        gid=gid,
        netns=netns,
        own_netns=own_netns,
        binds=tuple(sources.items()),
        max_processes=max_processes,
    )
    try:
        who.spec()
    except ValueError as exc:
        raise ConfigError(
            f"Refusing a fetcher path: {display(str(exc))}", code="config.fetcher"
        ) from exc
    return who
