# SPDX-License-Identifier: MIT
"""The lab's work directory: claimed for the lab's lifetime, swept by the next lab if it died.

Everything the lab mounts lives in its private mount namespace and every process it starts dies
with it (``airlock.proc``), so a SIGKILLed lab leaves its work directory and, if it was killed
while a fetcher ran, that fetcher's empty scratch directory under ``/run`` (named after the
share).  The lab holds an exclusive ``flock`` on ``<workdir>/.airlock-lab`` while it runs; the
kernel drops it when the lab dies, however it dies.  The next lab removes every work directory
whose lock is free and that was not kept on purpose (``--keep`` writes ``.airlock-lab-kept``),
with the scratch of its share: the default ones named ``airlock-demo-*`` beside its own, and an
explicit ``--workdir`` before it reuses it.  A directory without the lock file is never removed:
it is not the lab's.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from airlock.backends.fetcher import unprivileged
from airlock.errors import HostError

logger = logging.getLogger(__name__)

LOCK = ".airlock-lab"
KEPT = ".airlock-lab-kept"
PREFIX = "airlock-demo-"
SHARE = "staging-fs/staging/shared"  # the lab's shared, relative to its work directory


def _remove(workdir: Path) -> None:
    """Remove ``workdir`` and what its killed fetcher left outside it (its scratch under /run)."""
    shutil.rmtree(workdir, ignore_errors=True)
    unprivileged.forget(workdir / SHARE)


def default_parent() -> Path:
    """Where default work directories go: ``$TMPDIR``, else ``/var/tmp`` (room for images)."""
    return Path(os.environ.get("TMPDIR") or "/var/tmp")  # noqa: S108 - the documented default


def _lock_free(workdir: Path) -> bool | None:
    """Whether the lab that claimed ``workdir`` is gone (``None``: no lab ever claimed it)."""
    if workdir.is_symlink():
        return None
    try:
        fd = os.open(workdir / LOCK, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False  # its lab is running
        raise
    finally:
        os.close(fd)
    return True


def _abandoned(workdir: Path) -> bool:
    """True if ``workdir`` is a lab's, that lab is gone, and it was not kept."""
    return _lock_free(workdir) is True and not (workdir / KEPT).exists()


def sweep(parent: Path) -> list[Path]:
    """Remove the abandoned default work directories in ``parent``; the ones removed."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(parent.iterdir()):
            if entry.name.startswith(PREFIX) and entry.is_dir() and _abandoned(entry):
                logger.info("removing %s, left by a lab that was killed", entry)
                _remove(entry)
                removed.append(entry)
    return removed


@contextlib.contextmanager
def claim(workdir: Path) -> Iterator[bool]:
    """Create or take over ``workdir`` and hold its lock; yields True if it was (re)created.

    An existing directory left by a killed lab (and not kept) is removed first; one whose lab
    still runs is refused; any other is reused as it is.

    Raises:
        HostError: ``host.lab`` when another lab uses ``workdir``.
    """
    created = not workdir.exists()
    if not created and _lock_free(workdir) is False:
        raise HostError(f"Another lab is using {workdir}", code="host.lab")
    if not created and _abandoned(workdir):
        shutil.rmtree(workdir)
        unprivileged.forget(workdir / SHARE)
        created = True
    workdir.mkdir(parents=True, exist_ok=True)
    # Locked before it appears under its name: a sweeping lab never sees it free.
    tmp = workdir / f"{LOCK}.{os.getpid()}"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"airlock lab work directory: removed by the next lab once this one is gone\n")
        os.replace(tmp, workdir / LOCK)
        yield created
    finally:
        os.close(fd)


def keep(workdir: Path) -> None:
    """Mark ``workdir`` as kept on purpose: no later lab removes it."""
    (workdir / KEPT).write_text("kept with --keep\n")
