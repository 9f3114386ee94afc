# SPDX-License-Identifier: MIT
"""SandboxFetcher: run the untrusted downloader under bubblewrap instead of a VM.

The sandbox gets its own user, mount, PID, network, IPC, UTS and cgroup namespaces (and may not
create further user namespaces), an empty environment, no capabilities and — when airlock runs as
root — a real unprivileged host uid: the guard drops to the configured ``uid``/``gid`` before it
starts bubblewrap, which then builds the sandbox with an unprivileged user namespace (ADR 0170; a
bubblewrap started by root would map its "uid 65534" back to host root).  A private tmpfs root
that is remounted read-only, read-only binds of the system directories (not the whole host
``/``, so no secrets under ``/root``, ``/home``, ``/etc/shadow`` or ``/etc/ssl/private``), the
config directory read-only at ``<root>/etc`` and the share writable at ``<root>/updates`` — the
only writable host path (owned by that uid, mounted ``nosuid``).  With ``netns`` set it runs
inside that existing network namespace, so a test server on its loopback is reachable; otherwise
it has no network at all.

bubblewrap runs under ``proc``'s guard, in a PID namespace that ends before ``spawn`` returns and
that dies with airlock, even on SIGKILL (ADR 0005): at the timeout, or when airlock is killed, every
process of the sandbox is gone, so when ``fetch`` returns nothing can write into the share any more.
Only for an unprivileged caller (no PID namespace of proc's) are the processes of bubblewrap's own
PID namespace looked up and killed afterwards. The payload's output is untrusted: only an escaped,
bounded tail is kept.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from airlock import pids, proc, settings
from airlock.backends.fetcher import FetchRequest, FetchResult, unprivileged
from airlock.drain import Drain
from airlock.errors import ConfigError, FetchError, HostError
from airlock.events import Notice, Reporter, Step
from airlock.settings import PATH, integer, list_of, matching, optional, setting
from airlock.text import display, tail

logger = logging.getLogger(__name__)

BWRAP = "/usr/bin/bwrap"
IP = "/usr/sbin/ip"
NETNS_DIR = Path("/run/netns")
SYSTEM_RO = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/lib32",
    "/libx32",
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl/certs",  # not /etc/ssl: /etc/ssl/private holds keys
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/localtime",
)
MAX_LOG_BYTES = 1 << 20
_TAIL_BYTES = 16 * 1024
_REAP_S = 5.0


def _root_ok(root: str) -> bool:
    return root.startswith("/") and root != "/" and ".." not in root.split("/")


def _root(value: object) -> str:
    if not isinstance(value, str) or not value.isprintable() or not _root_ok(value):
        raise settings.Invalid("must be an absolute directory other than /")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxConfig:
    """``[fetcher.sandbox]``: the bubblewrap sandbox (development, tests and the demo)."""

    SECTION: ClassVar[str] = "fetcher.sandbox"

    root: str = setting(
        "/host",
        kind=settings.Kind(parse=_root, dump=lambda v: v, metavar="DIR", doc="absolute path"),
        help="where the payload sees its share inside the sandbox (etc/ and updates/ below it)",
    )
    netns: str | None = setting(
        None,
        kind=optional(
            matching(r"[A-Za-z0-9_-]+", "must be a network namespace name", doc="netns name")
        ),
        help="run inside this existing network namespace (unset: no network at all)",
    )
    ro_binds: tuple[Path, ...] = setting(
        (), kind=list_of(PATH), help="host paths made visible read-only at the same place"
    )
    uid: int = setting(
        65534,
        kind=integer(1, 2**32 - 2),
        help="host uid the payload runs as when airlock is root (best: one no other process"
        " uses; it owns shared)",
    )
    gid: int = setting(65534, kind=integer(1, 2**32 - 2), help="host gid the payload runs as")


def _pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _alive(pid: int) -> bool:
    """False for zombies (they hold no fds and cannot write) and vanished pids."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat_line[stat_line.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


def pids_in_ns(ns: str) -> list[int]:
    """Live pids (seen from here) whose PID namespace is ``ns`` (``pid:[inode]``)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _pid_ns(int(entry)) == ns and _alive(int(entry)):
            found.append(int(entry))
    return found


class SandboxFetcher:
    """Runs ``request.command`` in a bubblewrap sandbox (see the module docstring)."""

    def __init__(self, config: SandboxConfig | None = None, *, bwrap: str = BWRAP) -> None:
        cfg = config or SandboxConfig()
        if not _root_ok(cfg.root):
            raise ConfigError(
                f"Sandbox root must be an absolute directory, not {display(cfg.root)}",
                code="config.sandbox",
            )
        self._root = cfg.root.rstrip("/")
        self._netns = cfg.netns
        self._ro_binds = cfg.ro_binds
        self._bwrap = bwrap
        self._ids = (cfg.uid, cfg.gid)

    def argv(
        self, request: FetchRequest, info_fd: int, *, sources: Mapping[Path, Path] | None = None
    ) -> list[str]:
        """The full command line (bubblewrap and the payload).

        ``sources`` maps a host path bubblewrap binds (the config directory, the share, the
        ``ro_binds``) to where bubblewrap finds it (``_run_as``); ``None``: airlock is not root,
        each at its own path, and a network namespace is joined by an ``ip netns exec`` prefix.
        """
        prefix = [IP, "netns", "exec", self._netns] if self._netns and sources is None else []
        found = sources or {}

        def src(path: Path) -> str:
            return os.fspath(found.get(path, path))

        config_dir, share = src(request.config_dir), src(request.share)
        binds: list[str] = []
        for path in SYSTEM_RO:
            binds += ["--ro-bind-try", path, path]
        extras: list[str] = []  # after the /tmp and /run tmpfs, which would hide them
        for extra in self._ro_binds:
            extras += ["--ro-bind", src(extra), os.fspath(extra)]
        return [
            *prefix,
            self._bwrap,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--clearenv",
            *(["--share-net"] if self._netns else []),
            "--die-with-parent",
            "--new-session",
            "--info-fd", str(info_fd),
            "--uid", "65534",
            "--gid", "65534",
            "--hostname", "updatevm",
            "--tmpfs", "/",
            *binds,
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", "/tmp",  # noqa: S108 - a private tmpfs inside the sandbox
            "--tmpfs", "/run",
            *extras,
            "--dir", self._root,
            "--ro-bind", config_dir, f"{self._root}/etc",
            "--bind", share, f"{self._root}/updates",  # bubblewrap adds nosuid
            "--remount-ro", "/",
            "--chdir", "/",
            "--setenv", "PATH", proc.BASE_PATH,
            "--",
            *request.command,
        ]  # fmt: skip

    def fetch(self, request: FetchRequest, reporter: Reporter) -> FetchResult:
        """Run the payload; return only once no process of the sandbox is left.

        Raises:
            FetchError: the sandbox could not start, timed out (it was killed) or exited non-zero.
            HostError: a sandbox process survived killing (the share may still be written).
        """
        if not request.command:
            raise FetchError("No fetch command configured", code="fetch.config")
        scratch = unprivileged.make_scratch(unprivileged.SANDBOX_PREFIX, request.share)
        try:
            run_as, sources = self._run_as(request, scratch)
            return self._fetch(request, reporter, run_as, sources, scratch)
        finally:
            # The guard removes it (also if airlock died); the binds were never visible here,
            # but nothing recursive runs on it from this side anyway.
            unprivileged.remove_flat(scratch)

    def _run_as(
        self, request: FetchRequest, scratch: Path
    ) -> tuple[proc.RunAs | None, dict[Path, Path] | None]:
        """As root: whom the payload runs as, and where bubblewrap finds what it binds (ADR 0170).

        ``shared`` becomes the payload uid's (only its top directory: what an earlier run left
        below it is that uid's already, or ``clean`` removed it).  The uid may not enter the
        directories above ``shared`` and the config directory (the staging directory is 0700),
        nor perhaps those above a ``ro_binds`` path; so the guard, still root, binds each onto
        an empty entry of ``scratch`` in a mount namespace of the payload's own, and bubblewrap
        binds from there.

        Raises:
            HostError: ``shared`` could not be given to the uid, or the scratch entries made.
            ConfigError: a path the guard cannot carry (``:`` or ``=`` in it).
        """
        if os.geteuid() != 0:
            return None, None  # an unprivileged caller: the payload runs as the caller
        uid, gid = self._ids
        unprivileged.give_share(request.share, uid, gid)
        sources = unprivileged.bind_through(
            scratch, (request.config_dir, request.share, *self._ro_binds)
        )
        netns = NETNS_DIR / self._netns if self._netns else None
        return unprivileged.run_as(uid, gid, sources, netns=netns), sources

    def _fetch(
        self,
        request: FetchRequest,
        reporter: Reporter,
        run_as: proc.RunAs | None,
        sources: Mapping[Path, Path] | None,
        scratch: Path,
    ) -> FetchResult:
        info_r, info_w = os.pipe()
        out_r, out_w = os.pipe()
        output = Drain(out_r, tail=_TAIL_BYTES, log_path=request.log_path, log_limit=MAX_LOG_BYTES)
        start = time.monotonic()
        ns: str | None = None
        pin = -1  # an fd on that namespace: its inode number cannot go to another meanwhile
        status: int | None = None
        try:
            with proc.spawn(
                self.argv(request, info_w, sources=sources),
                stdout=out_w,
                stderr=out_w,
                pass_fds=(info_w,),
                run_as=run_as,
                scratch=(scratch,),
            ) as child:
                os.close(info_w)
                info_w = -1
                os.close(out_w)
                out_w = -1
                ns, pin = self._read_info(info_r)
                if child.contained:
                    # bubblewrap runs inside proc's PID namespace (its pids are not ours to
                    # look up), and that namespace ends, with every sandbox process, before
                    # spawn() returns.
                    ns = None
                status = proc.wait(child, timeout=max(0.0, request.timeout_s))
                if status is None:
                    reporter.emit(
                        Notice(
                            step=Step.FETCH,
                            message=f"fetcher timed out after {request.timeout_s:g} s;"
                            " killing it",
                        )
                    )
                    proc.kill(child)
        finally:
            for fd in (info_w, out_w, info_r):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            try:
                if ns is not None:
                    self._ensure_gone(ns)
            finally:
                if pin >= 0:
                    os.close(pin)
            output.close(timeout=_REAP_S)
        duration = time.monotonic() - start
        log_tail = tail(output.tail)
        if status is None:
            raise FetchError(
                f"The fetcher did not finish within {request.timeout_s:g} s and was" " killed",
                code="fetch.timeout",
            )
        if status != 0:
            raise FetchError(
                f"The fetcher failed (exit status {status})"
                + (f": {log_tail}" if log_tail else ""),
                code="fetch.failed",
            )
        return FetchResult(exit_status=status, duration_s=duration, log_tail=log_tail)

    @staticmethod
    def _read_info(fd: int) -> tuple[str | None, int]:
        """bubblewrap's PID namespace (``pid:[INODE]``) and an fd that holds it open (-1: none).

        The namespace is reaped by its inode number after the sandbox ends; a freed namespace's
        number soon goes to a new one (any process on the machine that makes a PID namespace),
        whose processes would be killed as the sandbox's — so it is pinned until then."""
        raw = bytearray()
        with contextlib.suppress(OSError):
            while chunk := os.read(fd, 4096):
                raw += chunk
                if b"}" in raw or len(raw) > 4096:
                    break
        try:
            pid = int(json.loads(bytes(raw).decode())["child-pid"])
        except (ValueError, KeyError, TypeError):
            return None, -1
        try:
            pin = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None, -1  # already gone: nothing left to reap by it
        ns = os.readlink(f"/proc/self/fd/{pin}")
        if ns != _pid_ns(pid):  # the pid ended and was reused between the two looks
            os.close(pin)
            return None, -1
        return ns, pin

    @staticmethod
    def _ensure_gone(ns: str) -> None:
        if pids.frame() is None or ns == _pid_ns(os.getpid()):
            # /proc is not ours to read pids from, or bubblewrap named our own namespace
            # (that would be everyone): never reap on such a basis.
            raise HostError(
                "Refusing to reap by pids this /proc does not show", code="host.sandbox"
            )
        deadline = time.monotonic() + _REAP_S
        while left := pids_in_ns(ns):
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise HostError(f"Sandbox processes survived killing: {left}", code="host.sandbox")
            time.sleep(0.05)
        logger.debug("sandbox pid namespace %s is empty", ns)
