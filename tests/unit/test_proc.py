# SPDX-License-Identifier: MIT
"""airlock.proc: argv lists, timeouts, bounded output, and the guard: nothing a child starts
outlives it, and nothing outlives airlock, whatever kills airlock.

Survivors are found as descendants of this test process, which the session made a child subreaper
(``tests/support/leaks.py``): an orphan stays our descendant instead of escaping to pid 1.  Every
kill test has a negative control: the same process tree started without the guard survives, and
the same check sees it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock import proc
from airlock.errors import CommandFailed, CommandTimedOut, HostError
from tests.support import leaks

# A command that leaves three kinds of survivor behind: a background child, a child in a new
# session, and one that ignores SIGTERM.
TREE = "sleep 300 & setsid sleep 300 & (trap '' TERM; sleep 300) & echo ready; wait"
SRC = str(Path(__file__).resolve().parents[2] / "src")


_BASELINE: set[int] = set()


@pytest.fixture(autouse=True)
def _baseline() -> None:
    """What already runs below this process (a session fixture's server, say) is not news."""
    _BASELINE.clear()
    _BASELINE.update(leaks.descendants(os.getpid()))


def _mine() -> set[int]:
    """What runs below this process and did not when the test began."""
    return leaks.descendants(os.getpid()) - _BASELINE


def _kill(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while leaks.alive(pids) and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.fixture
def survivors() -> Iterator[set[int]]:
    """Collects what a negative control deliberately leaked, and kills it afterwards."""
    found: set[int] = set()
    yield found
    _kill(found)


def test_run_captures_output() -> None:
    r = proc.run(["/bin/echo", "hi"], timeout=10)
    assert r.stdout == b"hi\n" and r.returncode == 0


def test_failure_names_command_status_and_escaped_stderr() -> None:
    with pytest.raises(CommandFailed) as info:
        proc.run(["/bin/sh", "-c", "printf 'bad\\033[31m' >&2; exit 3"], timeout=10)
    assert info.value.returncode == 3
    assert "exit code 3" in info.value.message
    assert "\x1b" not in info.value.message and "\\x1b" in info.value.message


def test_death_by_a_signal_is_reported_as_such() -> None:
    with pytest.raises(CommandFailed) as info:
        proc.run(["/bin/sh", "-c", "kill -TERM $$"], timeout=10)
    assert info.value.returncode == -signal.SIGTERM
    assert "killed by SIGTERM" in info.value.message


def test_timeout_leaves_nothing_running() -> None:
    assert _mine() == set()
    start = time.monotonic()
    with pytest.raises(CommandTimedOut):
        proc.run(["/bin/sh", "-c", TREE], timeout=0.5)
    assert time.monotonic() - start < 15
    assert _mine() == set()  # at once: run() returns only when the namespace is empty


def test_normal_exit_leaves_no_daemon_behind() -> None:
    r = proc.run(["/bin/sh", "-c", "setsid sleep 300 >/dev/null 2>&1 & echo $!"], timeout=10)
    assert r.stdout.strip()
    assert _mine() == set()


def test_negative_control_the_same_daemon_survives_without_the_guard(
    survivors: set[int],
) -> None:
    subprocess.run(["/bin/sh", "-c", "setsid sleep 300 >/dev/null 2>&1 &"], check=True)
    survivors |= _mine()
    assert len(survivors) == 1  # the check above sees what the guard prevents


_CALLER = """
import sys, time
from airlock import proc
with proc.spawn(["/bin/sh", "-c", sys.argv[1]], stdout=sys.stdout):
    time.sleep(600)
"""

_CALLER_WITHOUT_GUARD = """
import subprocess, sys, time
subprocess.Popen(["/bin/sh", "-c", sys.argv[1]], stdout=sys.stdout, process_group=0)
time.sleep(600)
"""


def _start_caller(program: str) -> subprocess.Popen[str]:
    caller = subprocess.Popen(
        [sys.executable, "-c", program, TREE],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert caller.stdout is not None
    assert caller.stdout.readline() == "ready\n"
    return caller


def test_sigkill_of_the_caller_kills_everything_it_started() -> None:
    caller = _start_caller(_CALLER)
    tree = _mine() - {caller.pid}
    assert len(tree) >= 6  # guard, init, sh and the three sleeps
    caller.send_signal(signal.SIGKILL)
    assert caller.wait(timeout=30) == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while leaks.alive(tree) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert leaks.alive(tree) == set()


def test_negative_control_sigkill_of_an_unguarded_caller_leaves_the_tree(
    survivors: set[int],
) -> None:
    caller = _start_caller(_CALLER_WITHOUT_GUARD)
    tree = _mine() - {caller.pid}
    caller.send_signal(signal.SIGKILL)
    caller.wait(timeout=30)
    time.sleep(1)
    survivors |= leaks.alive(tree)
    assert len(survivors) == 4  # sh and its three sleeps: nothing killed them


def test_a_child_outlives_the_thread_that_started_it() -> None:
    """PR_SET_PDEATHSIG fires when the *thread* that forked exits; the guard does not use it."""
    stack = contextlib.ExitStack()
    children: list[proc.Child] = []

    def start() -> None:  # enters spawn() in a thread that then ends; the stack exits it later
        children.append(stack.enter_context(proc.spawn(["/bin/sleep", "300"])))

    worker = threading.Thread(target=start)
    worker.start()
    worker.join()
    with stack:
        time.sleep(0.5)
        assert children[0].poll() is None
    assert _mine() == set()


def test_negative_control_pdeathsig_kills_when_the_starting_thread_exits() -> None:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        child = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "/bin/sleep", "300"])
        started.append(child)
        while leaks.exe_name(child.pid) != "sleep":  # PDEATHSIG is armed once sleep runs
            time.sleep(0.01)

    worker = threading.Thread(target=start)
    worker.start()
    worker.join()
    assert started[0].wait(timeout=10) == -signal.SIGKILL


def test_output_is_bounded() -> None:
    r = proc.run(["/bin/sh", "-c", "head -c 100000 /dev/zero"], timeout=10, max_output=1000)
    assert len(r.stdout) == 1000


def test_large_input_is_fed_without_deadlock() -> None:
    r = proc.run(["/bin/cat"], input=b"x" * 3_000_000, timeout=30, max_output=4_000_000)
    assert len(r.stdout) == 3_000_000


def test_passed_fds_reach_the_command() -> None:
    r, w = os.pipe()
    try:
        proc.run(["/bin/sh", "-c", f"echo through > /proc/self/fd/{w}"], timeout=10, pass_fds=(w,))
        os.close(w)
        w = -1
        assert os.read(r, 100) == b"through\n"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_environment_is_rebuilt() -> None:
    os.environ["AIRLOCK_LEAK_TEST"] = "1"
    try:
        r = proc.run(["/usr/bin/env"], timeout=10)
    finally:
        del os.environ["AIRLOCK_LEAK_TEST"]
    assert b"AIRLOCK_LEAK_TEST" not in r.stdout
    assert b"PATH=" in r.stdout


def test_child_sees_a_proc_of_its_own_pid_namespace() -> None:
    r = proc.run(["/bin/sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'"], timeout=10)
    pid, count = r.stdout.split()
    assert int(pid) == 2  # the guard's init is 1
    assert int(count) <= 4  # init, sh, ls, grep: nothing of the host


def test_missing_program_is_a_host_error() -> None:
    with pytest.raises(HostError):
        proc.run(["/nonexistent/tool"], timeout=5)


def test_bare_names_resolve_against_the_fixed_path_only(tmp_path: Path) -> None:
    fake = tmp_path / "ls"
    fake.write_text("#!/bin/sh\necho fake\n")
    fake.chmod(0o755)
    os.environ["PATH"] = f"{tmp_path}:{os.environ['PATH']}"
    try:
        assert proc.tool("ls").startswith("/") and proc.tool("ls") != str(fake)
        assert proc.run(["ls", "-d", "/"], timeout=10).stdout == b"/\n"
    finally:
        os.environ["PATH"] = os.environ["PATH"].split(":", 1)[1]
    with pytest.raises(HostError):
        proc.tool("airlock-no-such-tool")
    with pytest.raises(HostError):
        proc.tool("bin/ls")


def test_check_executable_accepts_a_root_owned_binary() -> None:
    proc.check_executable(Path("/bin/sh"))


@pytest.mark.parametrize("case", ["missing", "relative", "not-executable", "world-writable"])
def test_check_executable_refuses(tmp_path: Path, case: str) -> None:
    target = tmp_path / "tool"
    if case != "missing":
        target.write_text("#!/bin/sh\n")
        target.chmod({"relative": 0o755, "not-executable": 0o644, "world-writable": 0o777}[case])
    if case == "relative":
        target = Path(os.path.relpath(target))
    with pytest.raises(HostError) as info:
        proc.check_executable(target, hint="h")
    assert info.value.code == "host.executable"


def _touch(path: Path, status: int = 0) -> proc.Teardown:
    return proc.Teardown(argv=("/bin/sh", "-c", f"echo x >> {path}; exit {status}"), timeout_s=10)


def test_a_disarmed_teardown_guard_does_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with proc.teardown_guard([_touch(marker)]):
        pass
    assert not marker.exists()
    assert [leaks.describe(p) for p in _mine()] == []


_ARMED = """
import sys, time
from pathlib import Path
from airlock import proc
step = proc.Teardown(argv=("/bin/sh", "-c", f"echo x >> {sys.argv[1]}"), timeout_s=10)
with proc.teardown_guard([step]):
    print("armed", flush=True)
    time.sleep(600)
"""


def test_the_teardown_runs_when_the_caller_is_sigkilled(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    caller = subprocess.Popen(
        [sys.executable, "-c", _ARMED, str(marker)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert caller.stdout is not None
    assert caller.stdout.readline() == "armed\n"
    assert not marker.exists()  # negative control: nothing ran while the caller lives
    caller.send_signal(signal.SIGKILL)
    caller.wait(timeout=30)
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.read_text() == "x\n"
    deadline = time.monotonic() + 10
    while _mine() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _mine() == set()


@pytest.mark.parametrize(
    ("steps", "ok"),
    [
        ([(0, "always", True)], True),
        ([(1, "always", True)], False),
        ([(1, "always", True), (0, "failed", True)], True),  # the fallback rescues it
        ([(1, "always", True), (1, "failed", True)], False),
        ([(0, "always", True), (1, "failed", True)], True),  # a fallback that did not run
        ([(1, "always", False), (0, "always", True)], True),  # not critical
        ([(1, "always", True), (0, "always", True)], False),  # a later step does not rescue
        ([(0, "always", True), (1, "ok", False), (0, "always", True)], True),
    ],
)
def test_teardown_verdict(tmp_path: Path, steps: list[tuple[int, str, bool]], ok: bool) -> None:
    log = tmp_path / "log"
    teardown = [
        proc.Teardown(
            argv=("/bin/sh", "-c", f"echo {i} >> {log}; exit {status}"),
            timeout_s=10,
            when=when,
            critical=critical,
        )
        for i, (status, when, critical) in enumerate(steps)
    ]
    assert proc.teardown_now(teardown) is ok


def test_the_init_broadcasts_a_signal_only_as_pid_1_of_its_own_namespace() -> None:
    """kill(-1) from anything but pid 1 of a fresh namespace signals the whole machine: the
    guard's init forwards to its command alone unless it really is that pid 1."""
    from airlock.proc import guard

    assert os.getpid() != 1
    assert guard.forward_target(True, 4242) == 4242  # "contained" but not pid 1: no broadcast
    assert guard.forward_target(False, 4242) == 4242
    # Control: as pid 1 of a new PID namespace (a forked child after unshare), -1 is chosen.
    out = subprocess.run(
        [
            "unshare",
            "--pid",
            "--fork",
            "--",
            sys.executable,
            "-c",
            "import os; from airlock.proc import guard as g; "
            "print(os.getpid(), g.forward_target(True, 7))",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if out.returncode != 0:  # unprivileged without user namespaces: the first half still holds
        assert os.geteuid() != 0, out.stderr
        return
    assert out.stdout.split() == ["1", "-1"]


def test_share_pids_runs_in_our_pid_namespace_and_still_leaves_nothing() -> None:
    """The lab's mode for a world whose /proc must show its own pids: no PID namespace, yet
    what the command left behind is killed when it exits (the guard's init is a subreaper)."""
    ours = os.readlink("/proc/self/ns/pid")
    r = proc.run(
        ["/bin/sh", "-c", "readlink /proc/self/ns/pid; setsid sleep 300 >/dev/null 2>&1 & echo $!"],
        timeout=10,
        share_pids=True,
    )
    ns, orphan = r.stdout.decode().split()
    assert ns == ours
    assert int(orphan) > 2  # a pid of our namespace, not of a fresh one
    deadline = time.monotonic() + 10
    while leaks.alive({int(orphan)}) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _mine() == set()
    # Control: by default the command gets a PID namespace of its own.
    default = proc.run(["readlink", "/proc/self/ns/pid"], timeout=10)
    assert default.stdout.decode().strip() != ours
