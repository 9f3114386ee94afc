# SPDX-License-Identifier: MIT
"""The run record: what a run has running, kept in the staging directory for the next run.

While a run holds the lock, ``RunRecord`` keeps ``<staging>/run.json`` (0600, host-only, outside
``shared``) up to date through ``proc.observe``: the boot id, this run's process identity, the
guard and namespace init of every child it has running (pid + start time, ``airlock.pids``) and
the teardown steps of every armed ``proc.teardown_guard`` (the Spectrum VM, which s6 runs, not
airlock).  A run that ends by any path short of dying removes the file.

If it is still there when the next run reaches ``prepare``, that run died: ``stop_leftovers``
SIGKILLs each recorded process that is still the very same process (a pidfd checked against the
start time; a reused pid is never touched), waits until it is gone, lets a teardown guard that is
still working finish, then runs the recorded teardown steps again (they are idempotent), and only
then is ``shared`` touched.  Normally there is nothing left to stop: every child dies with airlock
(``proc``); this is the second line, for a guard that was itself stopped or killed.

Nothing here looks at command lines: a local user can name the snapshot in theirs, but cannot
write this root-owned file in a root-only directory, so cannot make a run busy or make it kill
anything.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from airlock import pids, proc
from airlock.errors import BusyError, HostError

logger = logging.getLogger(__name__)

RECORD = "run.json"
RUN_TMP = "tmp"
MAX_RECORD_BYTES = 1 << 20
STOP_TIMEOUT_S = 30.0


class RunRecord:
    """Keeps ``<staging>/run.json`` current while it is entered (see the module docstring).

    It also gives the run its temporary directory, ``<staging>/tmp`` (``tempfile.tempdir`` while
    entered): what the run's backends create there (a sysupdate namespace's scratch and notify
    socket, the VM's boot files) is removed when the run ends, and by the next run's
    ``stop_leftovers`` when it was killed.
    """

    def __init__(self, staging_dir: Path) -> None:
        self._path = staging_dir / RECORD
        self._tmp = staging_dir / RUN_TMP
        self._saved_tempdir: str | None = None
        self._lock = threading.Lock()
        me = pids.identify(os.getpid()) if pids.frame() else None
        self._data: dict[str, object] = {
            "v": 1,
            "boot_id": pids.boot_id(),
            "pid_ns": pids.frame(),  # the numbering of every pid below
            "owner": me.as_json() if me else None,
        }
        self._children: dict[int, dict[str, object]] = {}
        self._teardowns: dict[int, dict[str, object]] = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> RunRecord:
        self._write()
        try:
            _remove_tmp(self._tmp.parent)  # left by a run killed while it was ending
            self._tmp.mkdir(mode=0o700)
        except OSError as exc:
            self._path.unlink()
            raise HostError(
                f"Failed to create {self._tmp}: {exc.strerror}", code="host.record"
            ) from exc
        self._saved_tempdir, tempfile.tempdir = tempfile.tempdir, os.fspath(self._tmp)
        self._stack.enter_context(proc.observe(self._event))
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()
        tempfile.tempdir = self._saved_tempdir
        shutil.rmtree(self._tmp, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def _event(self, event: proc.Started | proc.Ended) -> None:
        with self._lock:
            key = event.guard.pid
            if isinstance(event, proc.Ended):
                self._children.pop(key, None)
                self._teardowns.pop(key, None)
            elif event.teardown:
                self._teardowns[key] = {
                    "guard": event.guard.as_json(),
                    "steps": [s.as_json() for s in event.teardown],
                }
            else:
                self._children[key] = {
                    "guard": event.guard.as_json(),
                    "init": event.init.as_json() if event.init else None,
                }
            self._write()

    def _write(self) -> None:
        data = {
            **self._data,
            "children": list(self._children.values()),
            "teardowns": list(self._teardowns.values()),
        }
        tmp = self._path.with_name(f".{RECORD}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
            os.replace(tmp, self._path)
        except OSError as exc:
            raise HostError(
                f"Failed to write the run record {self._path}: {exc.strerror}",
                code="host.record",
            ) from exc


def _read(staging_dir: Path) -> dict[str, object] | None:
    """The record left in ``staging_dir``, if the directory and the file are ours (root, 0700)."""
    try:
        dfd = os.open(staging_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None  # prepare refuses a staging directory that is not a directory
        raise
    try:
        dst = os.fstat(dfd)
        if dst.st_uid != os.geteuid() or dst.st_mode & 0o022:
            return None  # not ours: prepare refuses it before anything else happens
        try:
            fd = os.open(RECORD, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            raw = fh.read(MAX_RECORD_BYTES + 1)
    finally:
        os.close(dfd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or len(raw) > MAX_RECORD_BYTES:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _entries(data: dict[str, object], key: str) -> Iterator[dict[str, object]]:
    value = data.get(key)
    if isinstance(value, list):
        yield from (e for e in value if isinstance(e, dict))


def _steps(raw: object) -> list[proc.Teardown]:
    steps = []
    for step in raw if isinstance(raw, list) else []:
        argv = step.get("argv") if isinstance(step, dict) else None
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            continue
        steps.append(
            proc.Teardown(
                argv=tuple(argv),
                timeout_s=float(step.get("timeout_s", 60.0)),
                when=str(step.get("when", "always")),
                critical=bool(step.get("critical", True)),
            )
        )
    return steps


def _stop(raw: object, what: str) -> int:
    """1 if the recorded process was still running and is stopped now, else 0."""
    who = pids.ProcessId.from_json(raw)
    if who is None or not pids.alive(who):
        return 0
    logger.info("stopping %s pid %d left by an interrupted run", what, who.pid)
    if not pids.stop(who, timeout_s=STOP_TIMEOUT_S):
        raise BusyError(
            f"A process of an interrupted run (pid {who.pid}) could not be stopped",
            code="busy.orphan",
            hint="find out why it does not die (D state?), then run again",
        )
    return 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Stopped:
    """What ``stop_leftovers`` did: processes it killed, teardowns it ran again."""

    processes: int = 0
    teardowns: int = 0

    def __bool__(self) -> bool:
        return bool(self.processes or self.teardowns)

    def __str__(self) -> str:
        return (
            f"stopped {self.processes} process(es) and ran {self.teardowns} teardown(s) "
            "left by an interrupted run"
        )


def stop_leftovers(staging_dir: Path) -> Stopped:
    """Stop whatever a dead earlier run recorded in ``staging_dir``, then remove its temporary
    directory.

    Raises:
        BusyError: ``busy.staging`` when the recording run is alive (another lock file?),
            ``busy.orphan`` when a recorded process or VM could not be stopped.
    """
    data = _read(staging_dir)
    if data is None:
        return Stopped()
    if data.get("boot_id") != pids.boot_id():
        (staging_dir / RECORD).unlink()  # every process of an earlier boot is gone
        _remove_tmp(staging_dir)
        return Stopped()
    if data.get("pid_ns") is None or data.get("pid_ns") != pids.frame():
        # Written in another PID namespace (a run inside the lab): its pids mean nothing here;
        # every child of that run died with its namespace anyway.
        data = {**data, "children": [], "owner": None}
        data["teardowns"] = [{"steps": t.get("steps")} for t in _entries(data, "teardowns")]
    owner = pids.ProcessId.from_json(data.get("owner"))
    if owner is not None and pids.alive(owner) and owner.pid != os.getpid():
        raise BusyError(
            f"Another run (pid {owner.pid}) uses this staging directory",
            code="busy.staging",
            hint="two configurations with different lock files share it; use one lock file",
        )
    processes = teardowns = 0
    for child in _entries(data, "children"):
        processes += _stop(child.get("init"), "the namespace of a child")  # all in it goes too
        processes += _stop(child.get("guard"), "a child's guard")
    for entry in _entries(data, "teardowns"):
        guard = pids.ProcessId.from_json(entry.get("guard"))
        if guard is not None and pids.alive(guard):  # it may be tearing down right now
            steps = _steps(entry.get("steps"))
            budget = sum(s.timeout_s for s in steps) + proc.GRACE_S
            if pids.stopped(guard) or not pids.wait_gone(guard, timeout_s=budget):
                processes += _stop(entry.get("guard"), "a teardown guard")
        if not proc.teardown_now(_steps(entry.get("steps"))):
            raise BusyError(
                "A VM of an interrupted run could not be stopped",
                code="busy.orphan",
                hint="stop the update VM by hand (vm-stop), then run again",
            )
        teardowns += 1
    (staging_dir / RECORD).unlink()
    _remove_tmp(staging_dir)
    return Stopped(processes=processes, teardowns=teardowns)


def _remove_tmp(staging_dir: Path) -> None:
    """The dead run's temporary directory (nothing of that run is alive any more)."""
    tmp = staging_dir / RUN_TMP
    if tmp.is_symlink() or (os.path.lexists(tmp) and not tmp.is_dir()):
        tmp.unlink()
    elif tmp.is_dir():
        shutil.rmtree(tmp)
