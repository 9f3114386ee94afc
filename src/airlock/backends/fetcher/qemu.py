# SPDX-License-Identifier: MIT
"""``QemuFetcher``: run the untrusted downloader in a real VM under QEMU (issue #7).

The guest is the one ``scripts/make-guest.sh`` builds (a Debian kernel, a busybox initramfs whose
init is ``airlock/lab/guest/init``, and the default runtime's Debian tree — or ``guest_root``,
another runtime's — as a read-only 9p root).  What the host gives the guest, and nothing more:

* read-only 9p shares: the guest root, the airlock package, a boot share holding the command,
  and a private *copy* of the config (``/host/etc``) whose ``update-url`` points at the
  guest-side alias of the server;
* one writable 9p share, the staging subvolume (``/host/updates``), exported with
  ``security_model=mapped-xattr``: whatever the guest creates is a plain file or directory on
  the host (symlinks, FIFOs and device nodes exist only as xattr metadata), root-owned, 0600/0700;
* no NIC: one virtio-serial port (``airlock.net``) whose chardev is one end of a socketpair; the
  other end is held by one host forwarder process (``relay.py``, ADR 0172), which opens at most
  ``max_connections`` TCP connections to the update server, which must be on host loopback.  The
  guest's relay (``airlock/agent/relay.py``) makes that look like ``10.0.2.100:PORT``.

When airlock is root, QEMU and the forwarder run as the configured unprivileged ``uid``/``gid``
(their guards drop before ``execve``; no groups, ``no_new_privs``) with ``RLIMIT_NPROC`` =
``max_processes`` for their threads together, and reach what they open through binds (ADR 0171).
QEMU's seccomp filter also denies spawning and privilege changes: nothing in QEMU forks any more.

Trust: the guest is hostile.  Its console output goes through a bounded reader into the log file and
only escaped tails reach messages; its reported exit status is a hint.  QEMU runs with
``-sandbox on`` (seccomp), is waited for with a timeout, and runs under ``proc``'s guard, as does
the forwarder: both are killed on every exit path, and die with airlock if airlock is killed
(ADR 0005), as do the boot files the guard removes.  KVM is used only when a probe
boot with KVM really reaches the guest's init; otherwise TCG.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from airlock import proc, settings
from airlock.backends.fetcher import FetchRequest, FetchResult, relay, unprivileged
from airlock.backends.fetcher.qemu_boot import RELAY_PORT_NAME, ServerRoute, prepare_boot
from airlock.backends.fetcher.qemu_boot import route as server_route
from airlock.drain import Drain
from airlock.errors import CommandTimedOut, FetchError, HostError
from airlock.events import Notice, Reporter, Step
from airlock.layout import Layout
from airlock.settings import (
    PATH,
    SECONDS,
    Kind,
    choice,
    integer,
    optional,
    setting,
    setting_from,
)
from airlock.text import tail

logger = logging.getLogger(__name__)

_STATUS_RE = re.compile(rb"airlock-guest: status (\d{1,3})\r?$", re.MULTILINE)
_PROBE_OK = b"airlock-guest: probe ok"
_TAIL_BYTES = 8192
_INIT_FAILURES = range(120, 127)  # airlock/lab/guest/init: finish 120..126
_kvm_verdicts: dict[tuple[str, str], bool] = {}
# No spawning, no privilege changes: QEMU itself never forks now (ADR 0172).
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"


class Accel(enum.StrEnum):
    """Which QEMU accelerator to use."""

    AUTO = "auto"  # KVM if a probe boot with KVM reaches init, else TCG
    KVM = "kvm"
    TCG = "tcg"


def _server(value: object) -> str:
    if not isinstance(value, str) or not value.isascii() or not value.isprintable():
        raise settings.Invalid("must be HOST:PORT on loopback")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class QemuConfig:
    """``[fetcher.qemu]``: the update guest under QEMU (all paths absolute, executables checked)."""

    SECTION: ClassVar[str] = "fetcher.qemu"

    qemu: Path = setting(
        Path("/usr/bin/qemu-system-x86_64"), kind=PATH, help="the QEMU system emulator"
    )
    guest_dir: Path = setting_from(
        lambda: Layout.load().guest,
        kind=PATH,
        help="the guest built by scripts/make-guest.sh (kernel, initrd, root)",
        default_doc="$AIRLOCK_CACHE/guest",
    )
    guest_root: Path | None = setting(
        None,
        kind=optional(PATH),
        help="the Debian tree the guest boots read-only (unset: the guest's root, the default"
        " sysupdate runtime; another runtime's root gives the VM that systemd-sysupdate)",
    )
    accel: Accel = setting(
        Accel.TCG,
        kind=choice(Accel),
        help="tcg, kvm, or auto (KVM only if a probe boot with it reaches the guest's init)",
    )
    memory_mib: int = setting(512, kind=integer(64, 65536), help="guest memory in MiB")
    cpus: int = setting(1, kind=integer(1, 64), help="guest CPUs")
    server: str | None = setting(
        None,
        kind=optional(Kind(parse=_server, dump=lambda v: v, metavar="HOST:PORT", doc="HOST:PORT")),
        help="where the host forwarder connects (unset: the loopback host of update-url)",
    )
    max_connections: int = setting(
        16,
        kind=integer(1, 1024),
        help="TCP connections to the server the host forwarder holds for the guest at once (it"
        " closes a connection beyond them at once)",
    )
    agent_source: Path = setting_from(
        lambda: Path(__file__).resolve().parents[2],
        kind=PATH,
        help="the airlock package shared read-only into the guest",
        default_doc="this airlock package",
    )
    max_log_bytes: int = setting(
        1 << 20, kind=integer(1), help="bytes of the guest console kept in the fetch log"
    )
    probe_timeout_s: float = setting(
        20.0, kind=SECONDS, help="bound of the KVM probe boot (accel = auto)"
    )
    uid: int = setting(
        65534,
        kind=integer(1, 2**32 - 2),
        help="host uid QEMU and its forwarder run as when airlock is root (best: one no other"
        " process uses; it owns shared)",
    )
    gid: int = setting(65534, kind=integer(1, 2**32 - 2), help="host gid QEMU runs as")
    max_processes: int = setting(
        256,
        kind=integer(16, 1 << 22),
        help="RLIMIT_NPROC of QEMU's uid: the threads of QEMU and of the forwarder together",
    )


class QemuFetcher:
    """Boots the update guest under QEMU; ``fetch`` returns only after QEMU is gone."""

    def __init__(self, config: QemuConfig | None = None) -> None:
        """Keep ``config`` (defaults when ``None``)."""
        self.config = config or QemuConfig()

    def fetch(self, request: FetchRequest, reporter: Reporter) -> FetchResult:
        """Boot the guest, run ``request.command`` in it and wait for it to power off.

        Raises:
            FetchError: QEMU failed, the guest timed out (it was killed) or its command failed.
            ConfigError: ``update-url`` is missing, malformed or not on host loopback.
            HostError: the guest is not built or an executable is unsafe.
        """
        cfg = self.config
        kernel, initrd, root = _guest_files(cfg.guest_dir, cfg.guest_root)
        proc.check_executable(cfg.qemu)
        route = server_route(request.config_dir, cfg.server)
        accel = _choose_accel(cfg, kernel, initrd)
        if accel is Accel.TCG:
            reporter.emit(Notice(message="update VM runs under TCG (no KVM)", step=Step.FETCH))
        start = time.monotonic()
        # The guard removes it too if airlock is killed while QEMU runs.
        with tempfile.TemporaryDirectory(prefix="airlock-qemu-", ignore_cleanup_errors=True) as tmp:
            work = Path(tmp)
            prepare_boot(work, request, route)
            script = Path(relay.__file__)
            paths = (kernel, initrd, root, work / "boot", cfg.agent_source, work / "config", script)
            with _as_unprivileged(cfg, paths, share=request.share) as (who, sources):

                def at(path: Path) -> Path:
                    return sources.get(path, path)

                argv = [
                    *_machine_argv(
                        cfg, accel, at(kernel), at(initrd), "console=ttyS0 quiet panic=-1"
                    ),
                    *_virtfs("airlock-root", at(root), readonly=True),
                    *_virtfs("airlock-boot", at(work / "boot"), readonly=True),
                    *_virtfs("airlock-src", at(cfg.agent_source), readonly=True),
                    *_virtfs("airlock-config", at(work / "config"), readonly=True),
                    *_virtfs("airlock-updates", at(request.share), readonly=False),
                ]
                scratch = (work, *({p.parent for p in sources.values()}))
                status, console_tail, relay_tail = _run_vm(
                    argv,
                    lambda fd: _forwarder_argv(cfg, route, at(script), fd),
                    request,
                    cfg.max_log_bytes,
                    scratch=scratch,
                    run_as=who,
                )
        duration = time.monotonic() - start
        detail = _console_tail(console_tail)
        if relay_tail:
            detail += ("; " if detail else "") + "relay: " + tail(relay_tail)
        if status is None:
            raise FetchError(
                "Failed to fetch: the update VM powered off without reporting a status"
                + (f"; console: {detail}" if detail else ""),
                code="fetch.failed",
            )
        if status != 0:
            what = (
                "the update VM's init failed to mount its shares"
                if status in _INIT_FAILURES
                else "the update VM's command exited"
            )
            raise FetchError(
                f"Failed to fetch: {what} with status {status}"
                + (f"; console: {detail}" if detail else ""),
                code="fetch.failed",
            )
        return FetchResult(exit_status=status, duration_s=duration, log_tail=detail)


@contextlib.contextmanager
def _as_unprivileged(
    cfg: QemuConfig, paths: Sequence[Path], *, share: Path | None = None
) -> Iterator[tuple[proc.RunAs | None, dict[Path, Path]]]:
    """As root: QEMU's uid, limits, binds and empty network namespace (ADR 0171, 0177); else
    nothing changes.

    Every path QEMU opens is bound onto an entry of a scratch directory the uid may enter, in
    QEMU's own mount namespace.  QEMU needs no network (the guest has no NIC; its one way out is
    an inherited socket, ADR 0172), so it gets a network namespace of its own with nothing in it:
    the host's loopback services and interfaces are out of its reach.  (The forwarder, which
    connects to the upstream, runs as the same uid in the host's: ``_run_vm``.)  With ``share``
    (the fetch), ``shared`` becomes the uid's and is bound too, and the scratch is named after
    it; without (the KVM probe), after ``paths[0]``.
    """
    if os.geteuid() != 0:
        yield None, {}
        return
    if share is not None:
        unprivileged.give_share(share, cfg.uid, cfg.gid)
    prefix = unprivileged.QEMU_PREFIX if share is not None else unprivileged.QEMU_PROBE_PREFIX
    scratch = unprivileged.make_scratch(prefix, share if share is not None else paths[0])
    try:
        sources = unprivileged.bind_through(scratch, (*paths, *([share] if share else [])))
        yield (
            unprivileged.run_as(
                cfg.uid, cfg.gid, sources, own_netns=True, max_processes=cfg.max_processes
            ),
            sources,
        )
    finally:
        unprivileged.remove_flat(scratch)


def _guest_files(guest_dir: Path, guest_root: Path | None) -> tuple[Path, Path, Path]:
    kernel, initrd = guest_dir / "vmlinuz", guest_dir / "initrd.img"
    root = guest_root or guest_dir / "root"
    for path in (kernel, initrd, root / "usr/bin/python3"):
        if not path.exists():
            raise HostError(
                f"Failed to find the update guest: {path} is missing",
                code="host.guest",
                hint="build it with `make guest` (scripts/make-guest.sh)",
            )
    return kernel, initrd, root.resolve()


def _choose_accel(cfg: QemuConfig, kernel: Path, initrd: Path) -> Accel:
    """TCG unless KVM is asked for or, with ``auto``, a probe boot under KVM reaches init.

    ``/dev/kvm`` existing is not enough: on nested-PVM machines it opens fine and the guest hangs.
    """
    if cfg.accel is not Accel.AUTO:
        return cfg.accel
    key = (os.fspath(cfg.qemu), os.fspath(kernel))
    if key not in _kvm_verdicts:
        _kvm_verdicts[key] = _probe_kvm(cfg, kernel, initrd)
    return Accel.KVM if _kvm_verdicts[key] else Accel.TCG


def _probe_kvm(cfg: QemuConfig, kernel: Path, initrd: Path) -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return _probe_boot(cfg, Accel.KVM, kernel, initrd)


def _probe_boot(cfg: QemuConfig, accel: Accel, kernel: Path, initrd: Path) -> bool:
    """Boot the guest with ``airlock.probe``: True if its init reports within the bound.

    As root, the probe runs as QEMU's unprivileged uid, exactly as the fetch will (ADR 0171):
    it never runs QEMU with privilege, and KVM counts as working only if that uid can use it.
    """
    with _as_unprivileged(cfg, (kernel, initrd)) as (who, sources):
        argv = _machine_argv(
            cfg,
            accel,
            sources.get(kernel, kernel),
            sources.get(initrd, initrd),
            "console=ttyS0 quiet airlock.probe",
        )
        try:
            done = proc.run(
                argv,
                timeout=cfg.probe_timeout_s,
                check=False,
                max_output=1 << 16,
                scratch=tuple({p.parent for p in sources.values()}),
                run_as=who,
            )
        except CommandTimedOut:
            done = None
    if done is None:
        logger.debug("%s probe boot timed out", accel.value)
        return False
    ok = done.returncode == 0 and _PROBE_OK in done.stdout
    logger.debug("%s probe boot: %s", accel.value, "ok" if ok else "failed")
    return ok


def _machine_argv(
    cfg: QemuConfig, accel: Accel, kernel: Path, initrd: Path, cmdline: str
) -> list[str]:
    return [
        os.fspath(cfg.qemu),
        "-machine", "q35",
        "-accel", accel.value,
        "-cpu", "host" if accel is Accel.KVM else "qemu64",  # "max" is slower under TCG
        "-m", str(cfg.memory_mib),
        "-smp", str(cfg.cpus),
        "-nodefaults", "-no-user-config", "-no-reboot",
        "-display", "none",
        "-monitor", "none",
        "-chardev", "stdio,id=con,signal=off",
        "-serial", "chardev:con",
        # seccomp: nothing in QEMU forks or changes its credentials since the guest's traffic
        # goes over a serial port to one forwarder airlock starts (ADR 0172; before, libslirp's
        # per-connection cmd: forwarder needed both, ADR 0142).
        "-sandbox", SANDBOX,
        "-nic", "none",
        "-kernel", os.fspath(kernel),
        "-initrd", os.fspath(initrd),
        "-append", cmdline,
    ]  # fmt: skip


def _opt(value: str | os.PathLike[str]) -> str:
    """Escape a value for QEMU's comma-separated option syntax."""
    return os.fspath(value).replace(",", ",,")


def _virtfs(tag: str, path: Path, *, readonly: bool) -> list[str]:
    # The writable share is mapped-xattr: the guest's symlinks, FIFOs and device nodes become
    # plain files on the host; the read-only ones pass modes through (none).
    model = "none" if readonly else "mapped-xattr"
    opts = f"local,path={_opt(path)},mount_tag={tag},security_model={model},id={tag}"
    return ["-virtfs", opts + (",readonly=on" if readonly else "")]


def _serial_port(fd: int) -> list[str]:
    """The guest's one way out: a virtio-serial port on the inherited socket ``fd`` (ADR 0172).

    One end of a socketpair: there is no path another local user could connect to.
    """
    return [
        "-device", "virtio-serial-pci,id=vser0",
        "-chardev", f"socket,id=relay,fd={fd}",
        "-device", f"virtserialport,bus=vser0.0,chardev=relay,name={RELAY_PORT_NAME}",
    ]  # fmt: skip


def _forwarder_argv(cfg: QemuConfig, route: ServerRoute, script: Path, fd: int) -> list[str]:
    # -I -S: standard library only, nothing from the environment or the working directory.
    return [
        "python3", "-I", "-S", os.fspath(script),
        "--fd", str(fd),
        "--upstream", f"{route.host_addr}:{route.host_port}",
        "--max-connections", str(cfg.max_connections),
    ]  # fmt: skip


def _console_tail(data: bytes) -> str:
    """Escaped last lines of the console (the serial line turns each newline into CR LF)."""
    lines = [line.rstrip(b"\r") for line in data.split(b"\n") if line.strip()]
    return tail(b"\n".join(lines[-3:]))


def _run_vm(
    argv: Sequence[str],
    forwarder: Callable[[int], list[str]],
    request: FetchRequest,
    max_log_bytes: int,
    *,
    scratch: Sequence[Path],
    run_as: proc.RunAs | None,
) -> tuple[int | None, bytes, bytes]:
    """Run the forwarder and QEMU to power-off or the timeout.

    Returns:
        The guest's reported status, the console's tail and the forwarder's stderr tail.

    Raises:
        FetchError: QEMU failed or the guest outlived the timeout (it was killed).
    """
    # console r/w, QEMU's stderr r/w, the forwarder's stderr r/w
    fds = [*os.pipe2(os.O_CLOEXEC), *os.pipe2(os.O_CLOEXEC), *os.pipe2(os.O_CLOEXEC)]
    guest_end, host_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    readers: list[Drain] = []
    returncode: int | None = None
    try:
        fd, fds[0] = fds[0], -1  # a Drain owns its fd from here on, even if it fails
        console = Drain(
            fd,
            tail=_TAIL_BYTES,
            log_path=request.log_path,
            log_limit=max_log_bytes,
            marker=b"\n[airlock: console log truncated]\n",
        )
        readers.append(console)
        fd, fds[2] = fds[2], -1
        errors = Drain(fd, tail=_TAIL_BYTES)
        readers.append(errors)
        fd, fds[4] = fds[4], -1
        relay_log = Drain(fd, tail=_TAIL_BYTES)
        readers.append(relay_log)
        # The forwarder first: the guest's first frame must find it.  It ends when QEMU's end
        # of the socketpair closes; leaving its block kills it if it has not.
        # The same uid and limits as QEMU, in the host's network namespace: it connects out.
        relay_as = dataclasses.replace(run_as, own_netns=False) if run_as else None
        with proc.spawn(
            forwarder(host_end.fileno()),
            stderr=fds[5],
            pass_fds=(host_end.fileno(),),
            run_as=relay_as,
        ) as relay_child:
            host_end.close()
            with proc.spawn(
                [*argv, *_serial_port(guest_end.fileno())],
                stdout=fds[1],
                stderr=fds[3],
                pass_fds=(guest_end.fileno(),),
                scratch=scratch,
                run_as=run_as,
            ) as vm:
                guest_end.close()
                for i in (1, 3, 5):  # only QEMU and the forwarder hold the write ends now
                    os.close(fds[i])
                    fds[i] = -1
                returncode = proc.wait(vm, timeout=request.timeout_s)
                if returncode is None:
                    proc.kill(vm)
            proc.wait(relay_child, timeout=proc.GRACE_S)
    finally:
        # QEMU, the forwarder and all they started are gone when spawn() returns: EOF.
        guest_end.close()
        host_end.close()
        for fd in fds:
            if fd >= 0:
                os.close(fd)
        for reader in readers:
            reader.close(timeout=proc.GRACE_S)
    if returncode is None:
        raise FetchError(
            f"Failed to fetch: the update VM did not power off within {request.timeout_s:g} s and "
            "was killed" + (f"; console: {_console_tail(console.tail)}" if console.tail else ""),
            code="fetch.timeout",
        )
    if returncode != 0:
        raise FetchError(
            f"Failed to run the update VM: QEMU exited with status {returncode}: "
            f"{tail(errors.tail) or _console_tail(console.tail)}",
            code="fetch.vm",
        )
    matches = _STATUS_RE.findall(console.tail)
    return (int(matches[-1]) if matches else None), console.tail, relay_log.tail
