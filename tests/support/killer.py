# SPDX-License-Identifier: MIT
"""SIGKILL a real airlock command at a chosen point, without any test hook in the product.

The point is read from outside only: the ``--json`` event stream (right after a ``step-started``
or ``step-finished`` event, or at an apply progress event strictly between 0 and 100 %), the
process tree below the command (while its n-th child running a given program is alive, by the
program's ``/proc/PID/exe``; that child is held with SIGSTOP until the kill), or a condition on
the file system (a file the fetcher wrote).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import leaks

POLL_S = 0.001


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """Where to kill.

    Attributes:
        name: for test ids.
        step: the step whose event starts the watch (``None``: watch from the start).
        event: ``step-started`` or ``step-finished``.
        child: then wait until a descendant running one of these programs is alive...
        nth: ...the n-th distinct one since the watch started.
        progress: then wait for a progress event of ``step`` strictly between 0 and 100.
        ready: then wait until this returns True.
    """

    name: str
    step: str | None
    event: str = "step-started"
    child: tuple[str, ...] = ()
    nth: int = 1
    progress: bool = False
    ready: Callable[[], bool] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Killed:
    """What the kill left: the command's status, its events, and its process tree at the kill."""

    returncode: int
    events: tuple[dict[str, object], ...]
    tree: frozenset[int]
    programs: frozenset[str]  # what the tree was running at the kill
    namespaces: frozenset[str]  # the mount, network and PID namespaces it had, other than ours
    hit: str  # what was running or seen when the kill was sent


def _wait_child(pid: int, point: Point, deadline: float) -> str:
    seen: set[int] = set()
    while time.monotonic() < deadline:
        for child in leaks.descendants(pid):
            if child not in seen and leaks.exe_name(child) in point.child:
                seen.add(child)
                if len(seen) == point.nth:
                    return _hold(child, point)
        time.sleep(POLL_S)
    raise AssertionError(f"{point.name}: never saw {point.child} #{point.nth} run")


def _hold(child: int, point: Point) -> str:
    """Stop ``child`` where it is, so that it is still running its program when the command is
    killed (a short child such as ``btrfs subvolume delete`` may otherwise end between being seen
    and the kill).  The kill of the command ends it like the rest of the tree: SIGKILL reaches a
    stopped process."""
    try:
        os.kill(child, signal.SIGSTOP)
    except ProcessLookupError:
        pass
    name = leaks.exe_name(child)  # '' once it has exited (a zombie's exe is unreadable)
    if name not in point.child:
        raise AssertionError(f"{point.name}: {point.child} #{point.nth} ended before it was held")
    return f"{name} (pid {child}, held)"


def _wait_ready(point: Point, deadline: float) -> str:
    assert point.ready is not None
    while time.monotonic() < deadline:
        if point.ready():
            return "ready"
        time.sleep(0.01)
    raise AssertionError(f"{point.name}: the condition never held")


def kill_at(
    argv: Sequence[str], point: Point, *, timeout_s: float = 300, env: dict[str, str] | None = None
) -> Killed:
    """Run ``argv`` (an airlock command with ``--json`` if ``point.step`` is set) and SIGKILL it at
    ``point``.  Fails the test if the point is never reached or the command ends before it."""
    deadline = time.monotonic() + timeout_s
    cmd = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert cmd.stdout is not None
    events: list[dict[str, object]] = []
    armed = point.step is None
    hit = ""
    try:
        while not hit:
            if armed and point.child:
                hit = _wait_child(cmd.pid, point, deadline)
                break
            if armed and point.ready is not None:
                hit = _wait_ready(point, deadline)
                break
            line = cmd.stdout.readline()
            if not line:
                raise AssertionError(f"{point.name}: the command ended first: {events[-3:]}")
            event = json.loads(line)
            events.append(event)
            if not armed:
                armed = event.get("event") == point.event and event.get("step") == point.step
                if armed and not (point.child or point.progress or point.ready):
                    hit = f"{point.event} {point.step}"
            elif point.progress and event.get("event") == "step-progress":
                done = event.get("done")
                if isinstance(done, int) and 0 < done < 100:
                    hit = f"{point.step} at {done} %"
        tree = frozenset(leaks.descendants(cmd.pid))
        programs = frozenset(leaks.exe_name(p) for p in tree)
        namespaces = frozenset().union(*(namespaces_of(p) for p in {*tree, cmd.pid}))
        namespaces -= namespaces_of(os.getpid())
        os.kill(cmd.pid, signal.SIGKILL)
    except BaseException:
        cmd.kill()
        raise
    finally:
        cmd.stdout.close()
        returncode = cmd.wait(timeout=60)
    return Killed(
        returncode=returncode,
        events=tuple(events),
        tree=tree,
        programs=programs,
        namespaces=namespaces,
        hit=hit,
    )


def namespaces_of(pid: int) -> frozenset[str]:
    """``pid``'s mount, network and PID namespaces (``mnt:[…]``, …)."""
    found = set()
    for kind in ("mnt", "net", "pid"):
        try:
            found.add(os.readlink(f"/proc/{pid}/ns/{kind}"))
        except OSError:
            continue
    return frozenset(found)


def inhabited(namespaces: frozenset[str]) -> set[int]:
    """Processes anywhere on the host that are in one of ``namespaces``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and namespaces_of(int(entry)) & namespaces:
            found.add(int(entry))
    return leaks.alive(found)


def gone(pids: frozenset[int] | set[int], *, within_s: float = 10.0) -> set[int]:
    """Those of ``pids`` still alive after up to ``within_s`` seconds (empty: all gone)."""
    deadline = time.monotonic() + within_s
    while (left := leaks.alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def released(path: Path, *, within_s: float = 10.0) -> set[int]:
    """Processes still holding ``path`` open after up to ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while (left := leaks.holders(path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
