# SPDX-License-Identifier: MIT
"""Process identity that survives pid reuse, and stopping a process by that identity.

A ``ProcessId`` is a pid plus the process's start time (clock ticks after boot, field 22 of
``/proc/PID/stat``); within one boot (``boot_id``) no two processes share both.  To act on one,
``stop`` opens a pidfd first and then checks the start time again, so the signal cannot reach a
process that took over the pid in between.  A zombie counts as gone: it holds no files and runs no
code.  Nothing here reads command lines, which any local user can make say anything.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessId:
    """A pid and the start time that makes it unique within one boot."""

    pid: int
    start: int

    def as_json(self) -> dict[str, int]:
        """JSON-friendly form."""
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_json(cls, raw: object) -> ProcessId | None:
        """Parse ``as_json`` output; ``None`` when malformed."""
        if not isinstance(raw, dict):
            return None
        pid, start = raw.get("pid"), raw.get("start")
        if type(pid) is not int or type(start) is not int or pid <= 0 or start < 0:
            return None
        return cls(pid=pid, start=start)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of ``pid``, or ``None`` when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    # fields[0] is field 3 (state); the start time is field 22.
    return fields[0].decode("ascii", "replace"), int(fields[19])


def identify(pid: int) -> ProcessId | None:
    """The identity of live process ``pid`` (``None``: gone or a zombie)."""
    found = _stat(pid)
    if found is None or found[0] in ("Z", "X"):
        return None
    return ProcessId(pid=pid, start=found[1])


def stopped(who: ProcessId) -> bool:
    """True if ``who`` runs but is stopped (SIGSTOP, a tracer): it makes no progress."""
    found = _stat(who.pid)
    return found is not None and found[1] == who.start and found[0] in ("T", "t")


def alive(who: ProcessId) -> bool:
    """True if the very process ``who`` names still runs (not a zombie, not a reused pid)."""
    return identify(who.pid) == who


def frame() -> str | None:
    """The PID namespace the numbers in ``/proc`` belong to, if it is ours; else ``None``.

    A process that sees a /proc of another PID namespace (its pids are not the ones /proc shows)
    must not act on pids read there: ``None`` says so.
    """
    try:
        if os.readlink("/proc/self") != str(os.getpid()):
            return None
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def boot_id() -> str:
    """This boot's id: process identities are meaningless across boots."""
    return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()


def wait_gone_fd(pidfd: int, *, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for the process behind ``pidfd`` to exit; True once it has."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout_s * 1000))))


def wait_gone(who: ProcessId, *, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for ``who`` to exit; True once it is gone."""
    try:
        fd = os.pidfd_open(who.pid)
    except ProcessLookupError:
        return True
    try:
        if not alive(who):
            return True
        return wait_gone_fd(fd, timeout_s=timeout_s)
    finally:
        os.close(fd)


def stop(who: ProcessId, *, timeout_s: float) -> bool:
    """SIGKILL ``who`` (never another process that reuses its pid); True once it is gone."""
    try:
        fd = os.pidfd_open(who.pid)
    except ProcessLookupError:
        return True
    try:
        if not alive(who):  # checked after the pidfd pins the process
            return True
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        return wait_gone_fd(fd, timeout_s=timeout_s)
    finally:
        os.close(fd)
