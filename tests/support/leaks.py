# SPDX-License-Identifier: MIT
"""What this test session has running or holding on the host, attributed without guesswork.

Other engineers run their own suites on the same machine at the same time, so nothing here looks
at the machine as a whole and nothing matches command lines:

* processes: the session makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``), so every
  process any test starts stays its descendant, even when orphaned (a killed parent, a double
  fork, a new session); a process is ours exactly when it descends from this pytest process;
* mounts, loop devices, temporary files: only those under this session's base temp dir (``TMPDIR``
  points there too, so ``tempfile`` and the CLI subprocesses create their temp dirs inside it);
* btrfs subvolumes: only on btrfs file systems mounted under the base temp dir;
* network namespaces: only names carrying ``SESSION`` (``netns_name``).

A module's long-lived world may run a supervisor that restarts its own services (the Spectrum
host's s6 restarts the idle VMM after every update): ``add_world`` names a function that returns
the pids of such supervisors, and their descendants are the world's, not the test's.  The world
itself is still checked by the session (and by its own teardown).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
_worlds: list[Callable[[], Iterable[int]]] = []
SESSION = f"{os.getpid()}"
KINDS = ("processes", "mounts", "loops", "netns", "tmp", "subvolumes")


def become_subreaper() -> None:
    """Make this process the reaper of every orphan among its descendants."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def netns_name(tag: str) -> str:
    """A network namespace name this session's leak check recognises as its own."""
    return f"airlock-{tag}-{SESSION}-{uuid.uuid4().hex[:6]}"


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of ``pid``."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1])


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            continue
    return out


def descendants(root: int, *, include_zombies: bool = False) -> set[int]:
    """Live (non-zombie) processes below ``root``, found by parent links in /proc."""
    out: set[int] = set()
    todo = _children(root)
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.add(pid)
        todo += _children(pid)
    if include_zombies:
        return out
    return alive(out)


def alive(pids: Iterable[int]) -> set[int]:
    """Those of ``pids`` that are live processes (zombies are dead)."""
    return {p for p in pids if (s := _stat(p)) is not None and s[0] not in ("Z", "X")}


def exe_name(pid: int) -> str:
    """The basename of the program ``pid`` runs ('' if unreadable)."""
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return ""


def describe(pid: int) -> str:
    """For a failure message only: pid, program and arguments (never used to decide)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:200]
    except OSError:
        cmd = b"?"
    return f"{pid} {cmd.decode(errors='replace').strip()}"


def holders(path: Path) -> set[int]:
    """Processes with an open file, cwd or root at or below ``path`` (by fd links, host-wide)."""
    prefix = os.fspath(path)
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        links = [f"/proc/{entry}/cwd", f"/proc/{entry}/root"]
        try:
            links += [f"/proc/{entry}/fd/{fd}" for fd in os.listdir(f"/proc/{entry}/fd")]
        except OSError:
            continue
        for link in links:
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if target == prefix or target.startswith(prefix + "/"):
                found.add(int(entry))
                break
    return found


def _mounts(base: str) -> frozenset[str]:
    points = (line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
    return frozenset(p for p in points if p.startswith(base))


def _sources() -> frozenset[str]:
    """The devices mounted in our mount namespace."""
    out = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        out.add(fields[fields.index("-") + 2])
    return frozenset(out)


def _btrfs_mounts(base: str) -> list[str]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype == "btrfs" and fields[4].startswith(base):
            out.append(fields[4])
    return out


def _busy(dev: str) -> bool:
    """True if a file system somewhere (in any mount namespace) has ``/dev/<dev>`` mounted."""
    try:
        fd = os.open(f"/dev/{dev}", os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC)
    except OSError as exc:
        return exc.errno == errno.EBUSY
    os.close(fd)
    return False


def _loops(base: str, mounted_here: frozenset[str]) -> frozenset[str]:
    """Loop devices backed by our files that are mounted here, or attached and used by nothing.

    One that is busy elsewhere is not our leak: a mount namespace anyone made while our file
    system was mounted keeps a copy of that mount (this host's mounts are private) and holds the
    device until it ends; our own processes and their namespaces are the process check's.
    """
    found = set()
    for dev in Path("/sys/block").glob("loop*"):
        try:
            backing = (dev / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(base) and (f"/dev/{dev.name}" in mounted_here or not _busy(dev.name)):
            found.add(f"{dev.name}: {backing}")
    return frozenset(found)


def _netns() -> frozenset[str]:
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return frozenset()
    return frozenset(n for n in names if SESSION in n)


def _tmp(tmpdir: Path) -> frozenset[str]:
    try:
        return frozenset(os.listdir(tmpdir))
    except OSError:
        return frozenset()


def _subvolumes(base: str) -> frozenset[str]:
    found = set()
    for mnt in _btrfs_mounts(base):
        out = subprocess.run(
            ["btrfs", "subvolume", "list", "-o", mnt],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
        for line in out.splitlines():
            path = line.rsplit(" path ", 1)[-1]
            if os.path.basename(path) != "shared":  # the download cache, kept on purpose
                found.add(f"{mnt}: {path}")
    return frozenset(found)


@contextlib.contextmanager
def world(supervisors: Callable[[], Iterable[int]]) -> Iterator[None]:
    """While in this context, processes below ``supervisors()`` are a world's (module docstring)."""
    _worlds.append(supervisors)
    try:
        yield
    finally:
        _worlds.remove(supervisors)


def _ours() -> set[int]:
    """This session's processes, without those below a world's supervisors."""
    mine = descendants(os.getpid())
    for supervisors in _worlds:
        for root in supervisors():
            mine -= descendants(root)
    return mine


def snapshot(base: str, tmpdir: Path) -> dict[str, frozenset[str]]:
    """Everything this session holds now (see the module docstring)."""
    return {
        "processes": frozenset(str(p) for p in _ours()),
        "mounts": _mounts(base),
        "loops": _loops(base, _sources()),
        "netns": _netns(),
        "tmp": _tmp(tmpdir),
        "subvolumes": _subvolumes(base),
    }


def new_since(
    before: dict[str, frozenset[str]],
    base: str,
    tmpdir: Path,
    *,
    wait_s: float = 10.0,
    ignore: frozenset[str] = frozenset(),
) -> dict[str, list[str]]:
    """What appeared since ``before`` and is still there after up to ``wait_s`` seconds.

    ``ignore`` names kinds (of ``KINDS``) not to look at, nor to wait for.

    Killing takes the kernel a moment (a guard sees EOF, a namespace is emptied), so the check
    waits until the leftovers are gone or the time is up, and reports what is still there.
    """
    deadline = time.monotonic() + wait_s
    while True:
        now = snapshot(base, tmpdir)
        leaked = {
            k: sorted(now[k] - before[k]) for k in KINDS if k not in ignore and now[k] - before[k]
        }
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if "processes" in leaked:
        leaked["processes"] = [describe(int(p)) for p in leaked["processes"]]
    return leaked
