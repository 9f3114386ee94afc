# SPDX-License-Identifier: MIT
"""``SpectrumFetcher``: Spectrum's own host protocol for the update VM.

The protocol is Spectrum's host command, steps 7 to 14 (design.md#spectrum), with the VM machinery
of design.md#vm.

Steps, each from config so tests can point them at a test root:

1. resolve the VM id from ``<run>/vm/by-name/<name>`` (the basename of the link; checked against a
   strict grammar before it becomes part of any path);
2. copy the config into ``<run>/fs/<id>/etc`` (the share root is read-only to the VM,
   design.md#vm-share);
3. in the VM's mount namespace (``<run>/vm/by-id/<id>/ns/mnt``, entered with ``nsenter``), bind
   the ``shared`` subvolume at ``<run>/fs/<id>/updates`` — the only path the VM may write;
4. boot it with ``vm-start <id>`` and wait until the VMM service ``<run>/service/vmm/instance/<id>``
   is *really down* (down and its finish script done).  Spectrum runs ``s6-svwait -D`` after
   ``vm-start`` returns and misses the event when the guest is quicker (design.md#vm-wait-race).
   Here ``s6-svlisten1 -D`` subscribes first; ``vm-start`` runs only once the subscription is in
   place (its child signals us), so a guest that finishes before ``vm-start`` returns is still seen;
5. at the timeout, ``vm-stop <id>`` (then ``s6-svc -d`` as a last resort), each again subscribed
   before it is sent; afterwards the VMM process that ran the guest must be gone;
6. unmount the share on every exit path;
7. from before the bind until the unmount, a teardown guard (``proc.teardown_guard``) stands by:
   the VM is s6's, not our child, so if airlock dies (SIGKILL included) the guard runs
   ``vm-stop`` (or ``s6-svc -d``) and the unmount; the run record lets the next run do it again
   (ADR 0005).

Trusted: the host config and the s6/util-linux tools.  Untrusted: anything the VM wrote, including
its serial log (only an escaped tail is kept).  Failures raise ``FetchError`` (the VM could not be
run or timed out) or ``HostError`` (the VM could not be stopped or the share not unmounted, so the
share must not be inspected).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from airlock import proc
from airlock.backends.fetcher import FetchRequest, FetchResult
from airlock.errors import CommandFailed, CommandTimedOut, ConfigError, FetchError, HostError
from airlock.events import Notice, Reporter, Step
from airlock.settings import ARGV, BOOL, PATH, SECONDS, matching, setting
from airlock.text import display, tail

logger = logging.getLogger(__name__)

SPECTRUM_VM = "sys.appvm-systemd-sysupdate"
_VM_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_TOOL_TIMEOUT_S = 30.0
_SERIAL_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class SpectrumConfig:
    """``[fetcher.spectrum]``: where Spectrum keeps things and which tools to run (absolute)."""

    SECTION: ClassVar[str] = "fetcher.spectrum"

    run_dir: Path = setting(
        Path("/run"), kind=PATH, help="Spectrum's run directory (vm/, fs/, service/ below it)"
    )
    vm_name: str = setting(
        SPECTRUM_VM,
        kind=matching(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}", "must be a VM name", doc="VM name"),
        help="the update VM, resolved through <run_dir>/vm/by-name/",
    )
    vm_start: tuple[str, ...] = setting(
        ("/usr/bin/vm-start",), kind=ARGV, help="boots the VM (its id is appended)"
    )
    vm_stop: tuple[str, ...] = setting(
        ("/usr/bin/vm-stop",), kind=ARGV, help="stops the VM at the timeout (its id is appended)"
    )
    s6_svlisten1: Path = setting(Path("/usr/bin/s6-svlisten1"), kind=PATH, help="s6-svlisten1")
    s6_svc: Path = setting(Path("/usr/bin/s6-svc"), kind=PATH, help="s6-svc")
    s6_svstat: Path = setting(Path("/usr/bin/s6-svstat"), kind=PATH, help="s6-svstat")
    nsenter: Path = setting(Path("/usr/bin/nsenter"), kind=PATH, help="nsenter")
    mount: Path = setting(Path("/usr/bin/mount"), kind=PATH, help="mount")
    umount: Path = setting(Path("/usr/bin/umount"), kind=PATH, help="umount")
    echo: Path = setting(Path("/usr/bin/echo"), kind=PATH, help="echo (tells us s6 subscribed)")
    stop_timeout_s: float = setting(
        60.0, kind=SECONDS, help="how long vm-stop (then s6-svc -d) may take"
    )
    command_timeout_s: float = setting(
        120.0, kind=SECONDS, help="how long vm-start or vm-stop may run (vm-start boots net VMs)"
    )
    restore_vmm: bool = setting(
        True, kind=BOOL, help="after a forced s6-svc -d, bring an idle VMM back up"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class VmPaths:
    """The per-VM paths (design.md#vm-ids to design.md#vm-service)."""

    vm_id: str
    etc: Path
    updates: Path
    ns_mnt: Path
    service: Path
    serial: Path


class SpectrumFetcher:
    """Runs Spectrum's update VM through vm-start/s6; ``fetch`` returns once its VMM is gone."""

    def __init__(self, config: SpectrumConfig | None = None) -> None:
        """Keep ``config`` (Spectrum's defaults when ``None``)."""
        self.config = config or SpectrumConfig()

    def fetch(self, request: FetchRequest, reporter: Reporter) -> FetchResult:
        """Provide config and share, boot the VM, wait until it is really down, unmount.

        ``request.command`` is not used: the VM's own definition decides what it runs.

        Raises:
            FetchError: the VM could not be started or did not power off in time (it was stopped).
            HostError: the VM could not be stopped or the share not unmounted.
            ConfigError: the VM is unknown or its id malformed.
        """
        cfg = self.config
        for exe in (
            cfg.s6_svlisten1,
            cfg.s6_svc,
            cfg.s6_svstat,
            cfg.nsenter,
            cfg.mount,
            cfg.umount,
            cfg.echo,
            Path(cfg.vm_start[0]),
            Path(cfg.vm_stop[0]),
        ):
            proc.check_executable(
                exe,
                hint="the spectrum fetcher needs Spectrum's VM tools; elsewhere use --fetcher qemu",
            )
        vm = resolve(cfg)
        provide_config(request.config_dir, vm.etc)
        vmm_pid = self._vmm_pid(vm)
        start = time.monotonic()
        # If airlock dies from here on (even by SIGKILL), the guard stops the VM and unbinds the
        # share; the run record lets the next run do the same if the guard died too (ADR 0005).
        with proc.teardown_guard(self.teardown(vm)):
            self._nsenter(vm, [cfg.umount, "--", vm.updates], check=False)  # design step 10
            self._nsenter(vm, [cfg.mount, "--bind", "--", request.share, vm.updates])
            try:
                finished = self._listen_down(vm, cfg.vm_start, request.timeout_s, "start")
                if not finished:
                    reporter.emit(
                        Notice(
                            message=f"update VM did not power off within {request.timeout_s:g} "
                            "s; stopping it",
                            step=Step.FETCH,
                        )
                    )
                    self._stop(vm)
                self._check_gone(vm, vmm_pid)
            finally:
                self._nsenter(vm, [cfg.umount, "--", vm.updates])
        duration = time.monotonic() - start
        log_tail = _serial_tail(vm.serial, request.log_path)
        if not finished:
            raise FetchError(
                f"Failed to fetch: the update VM did not power off within {request.timeout_s:g} s "
                "and was stopped",
                code="fetch.timeout",
            )
        return FetchResult(exit_status=None, duration_s=duration, log_tail=log_tail)

    # -- steps ------------------------------------------------------------------------------

    def _nsenter(
        self, vm: VmPaths, argv: Sequence[str | os.PathLike[str]], *, check: bool = True
    ) -> None:
        full: list[str | os.PathLike[str]] = [
            self.config.nsenter,
            f"--mount={vm.ns_mnt}",
            "--",
            *argv,
        ]
        try:
            # In our own mount namespace: the VM's namespace file is a bind mount that the copy
            # a child would otherwise get cannot be entered (setns: EINVAL).
            proc.run(full, timeout=_TOOL_TIMEOUT_S, check=check, share_mounts=True)
        except (CommandFailed, CommandTimedOut) as exc:
            raise HostError(
                f"Failed to run in the VM's mount namespace: {exc.message}", code="host.vm-mount"
            ) from exc

    def teardown(self, vm: VmPaths) -> list[proc.Teardown]:
        """What stops the VM and unbinds the share if airlock dies while it may run.

        ``vm-stop`` under ``s6-svlisten1 -D`` (subscribed first, so it succeeds only once the VMM
        is really down), the supervisor's own ``down`` as the fallback (then an idle VMM back up),
        and the unmount in the VM's mount namespace (lazily if it is busy).
        """
        cfg = self.config
        wait = cfg.stop_timeout_s + cfg.command_timeout_s
        listen = (
            os.fspath(cfg.s6_svlisten1),
            "-D",
            "-t",
            str(max(1, int(cfg.stop_timeout_s * 1000))),
            os.fspath(vm.service),
        )
        ns = (os.fspath(cfg.nsenter), f"--mount={vm.ns_mnt}", "--", os.fspath(cfg.umount))
        steps = [
            proc.Teardown(argv=(*listen, *cfg.vm_stop, vm.vm_id), timeout_s=wait),
            proc.Teardown(
                argv=(*listen, os.fspath(cfg.s6_svc), "-d", os.fspath(vm.service)),
                timeout_s=wait,
                when="failed",
            ),
        ]
        if cfg.restore_vmm:
            steps.append(
                proc.Teardown(
                    argv=(os.fspath(cfg.s6_svc), "-u", os.fspath(vm.service)),
                    timeout_s=_TOOL_TIMEOUT_S,
                    when="ok",
                    critical=False,
                )
            )
        for options, when in (((), "always"), (("--lazy",), "failed")):
            steps.append(
                proc.Teardown(
                    argv=(*ns, *options, "--", os.fspath(vm.updates)),
                    timeout_s=_TOOL_TIMEOUT_S,
                    when=when,
                    critical=False,
                )
            )
        return steps

    def _vmm_pid(self, vm: VmPaths) -> int:
        """The idle VMM must be up before the boot (Spectrum keeps one per VM,
        design.md#vm-service).

        s6 restarts a VMM that just ran a guest (or was stopped) after about a second, so a
        service that is down is given ``stop_timeout_s`` to come back up.
        """
        deadline = time.monotonic() + self.config.stop_timeout_s
        while True:
            try:
                out = proc.run(
                    [self.config.s6_svstat, "-o", "up,pid", vm.service], timeout=_TOOL_TIMEOUT_S
                ).stdout.split()
            except HostError as exc:
                raise FetchError(
                    f"Failed to query the VMM service of VM {vm.vm_id}: {exc.message}",
                    code="fetch.vmm",
                ) from exc
            if (len(out) == 2 and out[0] == b"true") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if len(out) != 2 or out[0] != b"true" or not out[1].isdigit():
            raise FetchError(
                f"Failed to start VM {vm.vm_id}: its VMM service is not up",
                code="fetch.vmm",
                hint="the VMM service must be up (idle) before the update VM is booted",
            )
        return int(out[1])

    def _listen_down(
        self, vm: VmPaths, command: Sequence[str], timeout_s: float, what: str
    ) -> bool:
        """Subscribe to "really down", then run ``command ID``; True when the VM went down.

        Raises:
            FetchError: ``command`` failed (after which the VM is stopped when ``what`` is start).
        """
        cfg = self.config
        r, w = os.pipe2(os.O_CLOEXEC)
        # s6-svlisten1 reads the initial state, subscribes, then spawns its prog: echo writes one
        # line on our pipe, so when we read it the subscription is in place (no race,
        # design.md#vm-wait-race).
        argv: list[str | os.PathLike[str]] = [
            cfg.s6_svlisten1,
            "-D",
            "-t",
            str(max(1, int(timeout_s * 1000))),
            vm.service,
            cfg.echo,
            "subscribed",
        ]
        try:
            with proc.spawn(argv, stdout=w) as listener:
                os.close(w)
                w = -1
                if os.read(r, 64) != b"subscribed\n":
                    raise HostError(
                        "Failed to subscribe to the VMM service's events", code="host.s6"
                    )
                try:
                    proc.run([*command, vm.vm_id], timeout=cfg.command_timeout_s)
                except HostError as exc:
                    raise FetchError(
                        f"Failed to {what} VM {vm.vm_id}: {exc.message}", code=f"fetch.vm-{what}"
                    ) from exc
                status = proc.wait(listener, timeout=timeout_s + cfg.command_timeout_s)
        except FetchError:
            if what == "start":
                self._stop(vm)
            raise
        finally:
            for fd in (r, w):
                if fd >= 0:
                    os.close(fd)
        logger.debug("s6-svlisten1 -D after %s: status %s", what, status)
        if status == 0:
            return True
        if status in (99, None):
            return False
        raise HostError(
            f"Failed to wait for VM {vm.vm_id}: s6-svlisten1 exited with status " f"{status}",
            code="host.s6",
        )

    def _stop(self, vm: VmPaths) -> None:
        """vm-stop, then the supervisor's own ``down`` (and an idle VMM back up) as last resort.

        Raises:
            HostError: the VM is still running; the share must not be inspected.
        """
        cfg = self.config
        try:
            if self._listen_down(vm, cfg.vm_stop, cfg.stop_timeout_s, "stop"):
                return
        except (FetchError, HostError) as exc:
            logger.debug("vm-stop failed: %s", exc.message)
        if not self._listen_down(
            vm,
            (os.fspath(cfg.s6_svc), "-d", os.fspath(vm.service)),
            cfg.stop_timeout_s,
            "force down",
        ):
            raise HostError(
                f"Failed to stop VM {vm.vm_id}: it is still running", code="host.vm-stop"
            )
        if cfg.restore_vmm:
            proc.run([cfg.s6_svc, "-u", vm.service], timeout=_TOOL_TIMEOUT_S, check=False)

    def _check_gone(self, vm: VmPaths, vmm_pid: int) -> None:
        out = proc.run(
            [self.config.s6_svstat, "-o", "up,pid", vm.service],
            timeout=_TOOL_TIMEOUT_S,
            check=False,
        ).stdout.split()
        if len(out) == 2 and out[0] == b"true" and out[1] == str(vmm_pid).encode():
            raise HostError(
                f"Refusing to go on: the VMM of VM {vm.vm_id} (pid {vmm_pid}) is " "still running",
                code="host.vm-stop",
            )


def resolve(cfg: SpectrumConfig) -> VmPaths:
    """The VM id from ``<run>/vm/by-name/<name>`` (design step 7) and the paths derived from it.

    Raises:
        ConfigError: the VM is not imported, or the link's basename is not a plausible id.
    """
    link = cfg.run_dir / "vm" / "by-name" / cfg.vm_name
    try:
        target = os.readlink(link)
    except OSError as exc:
        raise ConfigError(
            f"Failed to resolve VM {display(cfg.vm_name)}: {link}: {exc.strerror}", code="config.vm"
        ) from exc
    vm_id = os.path.basename(target.rstrip("/"))
    if not _VM_ID_RE.fullmatch(vm_id):
        raise ConfigError(f"Refusing VM id {display(vm_id)} from {link}", code="config.vm")
    by_id = cfg.run_dir / "vm" / "by-id" / vm_id
    fs = cfg.run_dir / "fs" / vm_id
    return VmPaths(
        vm_id=vm_id,
        etc=fs / "etc",
        updates=fs / "updates",
        ns_mnt=by_id / "ns" / "mnt",
        service=cfg.run_dir / "service" / "vmm" / "instance" / vm_id,
        serial=by_id / "serial",
    )


def provide_config(config_dir: Path, etc: Path) -> None:
    """Design step 8: replace ``<run>/fs/<id>/etc`` with a copy (dirs 0755, files 0644, links kept).

    Raises:
        ConfigError: the copy failed.
    """
    try:
        if etc.is_dir() and not etc.is_symlink():
            shutil.rmtree(etc)
        elif etc.is_symlink() or etc.exists():
            etc.unlink()
        (etc.parent / "updates").mkdir(mode=0o755, parents=True, exist_ok=True)
        # Symlinks stay symlinks, as with Spectrum's `cp -R` (masked transfers → /dev/null).
        shutil.copytree(config_dir, etc, symlinks=True)
        (etc / "systemd").mkdir(mode=0o755, exist_ok=True)
        for path in (etc, *etc.rglob("*")):
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() else 0o644)
    except (OSError, shutil.Error) as exc:
        raise ConfigError(
            f"Failed to provide the VM's config in {etc}: {exc}", code="config.vm"
        ) from exc


def _serial_tail(serial: Path, log_path: Path | None) -> str:
    """The last bytes of the VM's serial log (untrusted): copied to ``log_path``, escaped tail."""
    try:
        fd = os.open(serial, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        size = os.fstat(fd).st_size
        data = os.pread(fd, _SERIAL_TAIL_BYTES, max(0, size - _SERIAL_TAIL_BYTES))
    finally:
        os.close(fd)
    if log_path is not None:
        try:
            log_path.write_bytes(data)
        except OSError as exc:
            logger.debug("could not write %s: %s", log_path, exc.strerror)
    return tail(data)
