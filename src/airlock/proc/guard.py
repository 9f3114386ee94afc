# SPDX-License-Identifier: MIT
"""The guard that stands between airlock and every process it starts (``airlock.proc`` runs it).

Executed as ``python3 -I -S -c 'import guard; guard.main(...)' CTL_FD MODE ...``
(``child.guard_argv``: imported rather than run as a script, so that its bytecode is cached;
``python3 -I -S guard.py CTL_FD MODE ...`` does the same): standard library only, no airlock
imports.
``CTL_FD`` is this end of a unix stream socket whose other end only airlock holds; when airlock
dies, whatever kills it, the kernel closes that end and the guard reads EOF.  That is the one event
everything below hangs on (a ``PR_SET_PDEATHSIG`` on the guard would fire when the airlock *thread*
that started it exits, not the process, and could be missed in the window before it is set).

``run REQUIRED MOUNTS AS [SCRATCH...] -- ARGV...``: the guard unshares a PID namespace (with
``MOUNTS`` ``own``, also a mount namespace, in which the init mounts a /proc that shows the new
PID namespace; with ``shared`` the command changes airlock's own mount table and sees airlock's
/proc, whose pids are not its own; with ``host``, no namespace at all: as without the privilege
below) and forks
its *init* (pid 1 there), which arms ``PR_SET_PDEATHSIG=SIGKILL`` towards
the guard (then checks the guard did not die before that), forks and execs ``ARGV``, forwards
SIGTERM/SIGINT/SIGHUP/SIGQUIT to the whole namespace and reaps orphans until the command exits.
Then, enforced by the kernel:

* airlock gone → the guard reads EOF and SIGKILLs the init;
* the guard gone (any signal) → the kernel SIGKILLs the init (PDEATHSIG);
* the init gone (exit or any signal) → the kernel SIGKILLs every process left in the namespace,
  daemons, double forks and new sessions included, and the init's exit completes only when they
  are all gone; nothing can leave a PID namespace.

Without the privilege to unshare (``REQUIRED`` is ``0``: an unprivileged caller such as the agent
inside the sandbox) the init is an ordinary child and a child subreaper that kills whatever its
command left behind when it exits, and the command dies with the init (its own PDEATHSIG); what the
command orphaned before airlock was killed may then survive.  With ``REQUIRED`` ``1`` (airlock runs
as root) a failed unshare is a start failure instead.

``teardown STEPS_JSON``: no command.  ``disarm`` from airlock ends the guard quietly; EOF (airlock
died) makes it run the steps, each ``{"argv": [...], "timeout_s": S, "when": W, "critical": C}``
with stdio on /dev/null; ``when`` is ``always``, ``ok`` or ``failed`` (only if the step before ran
and succeeded or failed: a fallback).  It exits 1 if a critical step failed and no fallback after
it succeeded, else 0.

``AS`` is ``-`` or ``UID:GID:NPROC:NETNS[:SRC=DST...]`` (``:`` and ``=`` never occur in the paths):
before ``execve`` the command's process — still root, in the init's private mount namespace —
joins the network namespace file ``NETNS`` (``-``: stays; ``+``: a new, empty one of its own),
bind-mounts each ``SRC`` on ``DST``
in a mount namespace of its own (never visible to the guard, whose scratch removal is recursive),
drops every supplementary group, sets all its uids and
gids to ``UID``/``GID`` (``RLIMIT_NPROC`` to ``NPROC`` first unless ``-``) and sets
``no_new_privs``: a real unprivileged host uid, not one a user
namespace maps back to root.  The init itself stays root, so it can still signal and reap it.

The ``SCRATCH`` directories (absolute paths) are removed by the guard once the init is gone,
whether the command ended or airlock died: the command's temporary files do not outlive it either.

Messages to airlock on CTL: ``started INIT_PID ns|plain`` (answered by ``ack`` once airlock holds
its own pidfd of the init, which stays unreaped until then), ``armed`` (teardown mode) or ``failed
ERRNO WHAT``.  The command's exit status becomes the guard's
own; killed by signal N, the guard kills itself with N.
"""

from __future__ import annotations

import ctypes
import os
import select
import sys
import time

# Every start waits for this script: what it imports is its cost.  ``typing`` and ``signal``
# (which imports ``enum``) are for the type checker only; at run time the C module does.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from typing import Any, NoReturn
else:
    import _signal as signal

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_SLAVE = 0x2, 0x4, 0x8, 0x4000, 0x80000
MS_PRIVATE = 0x40000
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
RESET = (*FORWARDED, signal.SIGPIPE, signal.SIGXFSZ)  # Python ignores the last two at startup
EXEC_OK, EXEC_FAILED, EXITED, SETUP_FAILED = 0, 1, 2, 3
_MSG_SIZE = 8  # two signed 32-bit integers: kind, value

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0))


def _send(ctl: int, text: str) -> None:
    try:
        os.write(ctl, text.encode() + b"\n")
    except OSError:
        pass  # airlock is gone; the EOF that follows says so


def _recv(ctl: int) -> bytes:
    try:
        return os.read(ctl, 64)
    except OSError:
        return b""


def _report(fd: int, kind: int, value: int) -> None:
    os.write(fd, kind.to_bytes(4, "little", signed=True) + value.to_bytes(4, "little", signed=True))


def _receive(fd: int) -> tuple[int, int] | None:
    data = b""
    while len(data) < _MSG_SIZE:
        chunk = os.read(fd, _MSG_SIZE - len(data))
        if not chunk:
            return None
        data += chunk
    return int.from_bytes(data[:4], "little", signed=True), int.from_bytes(
        data[4:], "little", signed=True
    )


def _exit_like(status: int) -> NoReturn:
    """Exit as the command did: the same exit code, or death by the same signal."""
    if os.WIFSIGNALED(status):
        import resource  # only this path pays for it

        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 125)


# -- the init ---------------------------------------------------------------------------------


def _own_proc() -> None:
    """In our own mount namespace: a /proc that shows this PID namespace (programs such as
    bubblewrap look up their children there), invisible to the parent (``MS_SLAVE``)."""
    for target, fstype, flags in (
        ("/", None, MS_REC | MS_SLAVE),
        ("/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC),
    ):
        _check(_libc.mount(fstype, target.encode(), fstype, flags, None))


def become(spec: str) -> None:
    """Apply ``AS`` (see the module docstring) to this process; raises ``OSError``."""
    uid, gid, nproc, *rest = spec.split(":")
    netns = rest[0] if rest else "-"
    if netns == "+":  # a new, empty network namespace: only a loopback interface, down
        _check(_libc.unshare(CLONE_NEWNET))
    elif netns != "-":
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc.setns(fd, CLONE_NEWNET))
        finally:
            os.close(fd)
    if rest[1:]:
        # A mount namespace of the command's own: the guard (which removes the scratch
        # directories, recursively) never sees these binds.
        _check(_libc.unshare(CLONE_NEWNS))
        _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None))
    for pair in rest[1:]:
        src, _, dst = pair.partition("=")
        _check(_libc.mount(src.encode(), dst.encode(), None, MS_BIND | MS_REC, None))
    if nproc != "-":
        import resource  # only commands with a limit pay for it

        resource.setrlimit(resource.RLIMIT_NPROC, (int(nproc), int(nproc)))
    os.setgroups([])
    os.setresgid(int(gid), int(gid), int(gid))
    os.setresuid(int(uid), int(uid), int(uid))
    if os.getresuid() != (int(uid),) * 3 or os.getgroups() not in ([], [int(gid)]):
        raise OSError(1, "credentials did not change")
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def forward_target(contained: bool, child: int) -> int:
    """Where the init forwards a signal: ``-1`` (every process of its namespace) only when it
    really is pid 1 of a namespace of its own; anywhere else ``kill(-1)`` would signal every
    process the caller may signal on the machine, so then only the command itself."""
    return -1 if contained and os.getpid() == 1 else child


def _init(
    argv: list[str], alive_r: int, status_w: int, contained: bool, proc: bool, as_: str
) -> NoReturn:
    """Pid 1 of the new namespace (or a plain subreaper child): run the command, reap, report."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    poller = select.poll()
    poller.register(alive_r, select.POLLIN)
    if poller.poll(0):  # the guard's end is closed: it died before PDEATHSIG was armed
        os._exit(1)
    os.close(alive_r)
    if not contained:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
    elif proc:
        try:
            _own_proc()
        except OSError as exc:
            _report(status_w, SETUP_FAILED, exc.errno or 0)
            os._exit(125)
    exec_r, exec_w = os.pipe2(os.O_CLOEXEC)
    me = os.getpid()
    child = os.fork()
    if child == 0:
        os.close(exec_r)
        os.close(status_w)
        for sig in RESET:
            signal.signal(sig, signal.SIG_DFL)
        try:
            if as_ != "-":  # before PDEATHSIG: a change of credentials clears it
                become(as_)
            if not contained:  # no namespace to end: the command itself must die with the init
                _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                if os.getppid() != me:
                    os._exit(1)
            os.execve(argv[0], argv, os.environ)  # noqa: S606 - argv from airlock, no shell
        except OSError as exc:
            os.write(exec_w, (exc.errno or 0).to_bytes(4, "little"))
        os._exit(127)

    target = forward_target(contained, child)

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(target, signum)
        except OSError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    os.close(exec_w)
    failed = os.read(exec_r, 4)
    os.close(exec_r)
    if failed:
        os.waitpid(child, 0)
        _report(status_w, EXEC_FAILED, int.from_bytes(failed, "little"))
        os._exit(127)
    _report(status_w, EXEC_OK, 0)
    while True:
        pid, status = os.wait()
        if pid == child:
            break
    _report(status_w, EXITED, status)
    if not contained:
        _kill_children()
    os._exit(0)  # in a namespace the kernel now kills whatever is left in it


def _kill_children() -> None:
    """As a subreaper: SIGKILL and reap every child until none is left (orphans come to us)."""
    try:
        if os.readlink("/proc/self") != str(os.getpid()):
            return  # /proc shows another PID namespace: its pids are not ours to signal
    except OSError:
        return
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            for entry in os.listdir("/proc"):
                if entry.isdigit() and _ppid(int(entry)) == os.getpid():
                    try:
                        os.kill(int(entry), signal.SIGKILL)
                    except OSError:
                        pass
            time.sleep(0.01)


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    return int(raw[raw.rfind(b")") + 2 :].split()[1])


# -- the guard --------------------------------------------------------------------------------


def _remove(paths: list[str]) -> None:
    """The command's scratch directories, once nothing of it runs any more."""
    if paths:
        import shutil  # only guards with something to remove pay for it

        for path in paths:
            shutil.rmtree(path, ignore_errors=True)


def run(
    ctl: int, required: bool, mounts: str, as_: str, scratch: list[str], argv: list[str]
) -> NoReturn:
    """Run mode (see the module docstring)."""
    for sig in FORWARDED:
        signal.signal(sig, signal.SIG_IGN)  # the init forwards them; only SIGKILL ends us
    contained = mounts != "host"
    own = mounts == "own"
    if contained and _libc.unshare(CLONE_NEWPID | (CLONE_NEWNS if own else 0)) != 0:
        err = ctypes.get_errno()
        if required:
            _send(ctl, f"failed {err} unshare")
            os._exit(125)
        contained = False
    alive_r, alive_w = os.pipe()
    status_r, status_w = os.pipe()
    init = os.fork()
    if init == 0:
        os.close(ctl)
        os.close(alive_w)
        os.close(status_r)
        _init(argv, alive_r, status_w, contained, own, as_)
    os.close(alive_r)
    os.close(status_w)
    pidfd = os.pidfd_open(init)
    started = _receive(status_r)
    if started is None or started[0] != EXEC_OK:
        err = started[1] if started is not None else 0
        what = "setup" if started is not None and started[0] == SETUP_FAILED else "exec"
        _send(ctl, f"failed {err} {what}")
        os.waitpid(init, 0)
        os._exit(127)
    _send(ctl, f"started {init} {'ns' if contained else 'plain'}")
    # Until airlock acknowledges (it has opened its own pidfd of the init), the init is not
    # reaped, so its pid cannot name another process meanwhile.
    acked = _recv(ctl) == b"ack\n"
    poller = select.poll()
    poller.register(ctl, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    while acked:
        ready = {fd for fd, _ in poller.poll()}
        if pidfd in ready:
            break
        if ctl in ready and not _recv(ctl):  # airlock is gone
            acked = False
    if not acked:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        os.waitpid(init, 0)
        _remove(scratch)
        os._exit(128 + signal.SIGKILL)
    _, init_status = os.waitpid(init, 0)
    reported = _receive(status_r)
    _remove(scratch)
    _exit_like(reported[1] if reported is not None and reported[0] == EXITED else init_status)


def teardown(ctl: int, steps: list[dict[str, Any]]) -> NoReturn:
    """Teardown mode (see the module docstring)."""
    for sig in FORWARDED:
        signal.signal(sig, signal.SIG_IGN)
    _send(ctl, "armed")
    received = b""
    while chunk := _recv(ctl):
        received += chunk
        if b"disarm\n" in received:
            os._exit(0)
    failed = pending = False  # pending: a critical step failed and no fallback rescued it yet
    previous: bool | None = None
    for step in steps:
        when = step.get("when", "always")
        if (when == "ok" and previous is not True) or (when == "failed" and previous is not False):
            previous = None
            continue
        if when != "failed":
            failed, pending = failed or pending, False
        previous = _run_step([str(a) for a in step["argv"]], float(step.get("timeout_s", 60)))
        if when == "failed":
            pending = pending and not previous
        elif not previous and step.get("critical", True):
            pending = True
    os._exit(1 if failed or pending else 0)


def _run_step(argv: list[str], timeout_s: float) -> bool:
    """Run one teardown step in its own process group; SIGKILL the group at the timeout."""
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        for sig in RESET:
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execve(argv[0], argv, os.environ)  # noqa: S606 - argv from airlock, no shell
        finally:
            os._exit(127)
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    if not poller.poll(int(timeout_s * 1000)):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    _, status = os.waitpid(pid, 0)
    os.close(pidfd)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def main(args: list[str]) -> NoReturn:
    """Dispatch on the mode."""
    ctl = int(args[0])
    os.set_inheritable(ctl, False)
    if args[1] == "run" and "--" in args:
        end = args.index("--")  # the scratch paths are absolute: none of them is "--"
        run(ctl, args[2] == "1", args[3], args[4], args[5:end], args[end + 1 :])
    if args[1] == "teardown":
        import json  # only this mode pays for it: every start waits for the guard

        teardown(ctl, json.loads(args[2]))
    sys.stderr.write("airlock-guard: bad arguments\n")
    os._exit(125)


if __name__ == "__main__":
    main(sys.argv[1:])
