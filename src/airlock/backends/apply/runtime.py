# SPDX-License-Identifier: MIT
"""Locate a systemd-sysupdate and run it in a throwaway private mount namespace.

``locate`` picks the host's own systemd-sysupdate (≥ 257) or a runtime root — one per name in
``layout.env``: 257 (Debian trixie), 262 (Debian testing) — as ``[apply] runtime`` says
(docs/sysupdate-versions.md).  Trusts: the runtime roots (under ``$AIRLOCK_CACHE``, built by
``scripts/make-runtime.sh``), the caller's ``Bind`` list and environment.

Every run gets a fresh mount namespace (``unshare --mount --propagation private``, inside the PID
namespace proc gives every child) in which ``enter.py`` mounts ``/proc``, ``/sys`` and ``/dev``
(rbind), tmpfs ``/run``, ``/tmp`` and ``/var/tmp``, the caller's binds (read-only ones
``ro,nosuid,nodev,noexec``; writable ones ``nosuid,nodev``) and the notify socket's directory,
then chroots and execs sysupdate. The chroot is an overlay whose lower layer is the runtime root
and whose upper layer is a tmpfs: mount points for the binds (and anything sysupdate writes to its
own root) live only for the run, so the shared root is never modified and concurrent runs cannot
see each other. Nothing is mounted on the host: when the namespace's last process exits, its
mounts go with it.

sd_notify messages (``X_SYSUPDATE_PROGRESS=``, ``STATUS=``, …) arrive on a host-side AF_UNIX
datagram socket and are handed to ``notify`` as ``dict[str, str]``.  Their values can quote
versions and paths derived from untrusted names: consumers must pass them through
``airlock.text.display()``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from airlock import proc
from airlock.backends.apply import runtime_choices
from airlock.errors import AirlockError, ConfigError, HostError
from airlock.layout import Layout
from airlock.text import tail

logger = logging.getLogger(__name__)

SYSUPDATE = "/usr/lib/systemd/systemd-sysupdate"
CHROOT = "/usr/sbin/chroot"
UNSHARE = "/usr/bin/unshare"
MIN_VERSION = 257
NOTIFY_DIR = "/run/airlock-notify"
MAX_NOTIFY_BYTES = 4096
ENTER = Path(__file__).with_name("enter.py")
_VERSION = re.compile(rb"^systemd (\d+)")

Notify = Callable[[dict[str, str]], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Bind:
    """Make host ``source`` visible at ``target`` (absolute, inside the runtime root)."""

    source: Path
    target: str
    read_only: bool


def _major(binary: Path, *, chroot: Path | None) -> int | None:
    argv: list[str | os.PathLike[str]] = [binary, "--version"]
    if chroot is not None:
        argv = [CHROOT, chroot, SYSUPDATE, "--version"]
    try:
        res = proc.run(argv, timeout=30)
    except AirlockError:
        return None
    m = _VERSION.match(res.stdout)
    return int(m.group(1)) if m else None


AUTO = "auto"
HOST = "host"


def _host() -> Runtime | None:
    host = Path(SYSUPDATE)
    if host.exists() and (v := _major(host, chroot=None)) is not None and v >= MIN_VERSION:
        return Runtime(root=Path("/"), version=v, name=HOST)
    return None


def locate(cache: Path | None = None, *, choice: str | None = None) -> Runtime:
    """The systemd-sysupdate to run: the host's own when it fits, else a runtime root.

    ``choice`` (``--runtime``, ``[apply] runtime``): ``auto`` (the default) takes the host's
    systemd-sysupdate if it is ≥ 257, else the default runtime (``RUNTIME_DEFAULT``); ``host``
    only the host's; a runtime name (``257``, ``262``) the host's if it is that very major version,
    else that runtime's root under ``cache``.

    Raises:
        HostError: ``host.sysupdate`` when the chosen one is not usable.
        ConfigError: ``config.runtime`` for a name no runtime has.
    """
    wanted = choice or AUTO
    layout = Layout.load(cache)
    if wanted not in (AUTO, HOST) and wanted not in (b.name for b in layout.runtimes):
        raise ConfigError(
            f"Unknown systemd-sysupdate runtime {wanted!r}",
            code="config.runtime",
            hint=f"choose one of {', '.join(runtime_choices())}",
        )
    host = _host()
    if host is not None and (wanted in (AUTO, HOST) or str(host.version) == wanted):
        return host
    if wanted == HOST:
        raise HostError(
            f"The host has no systemd-sysupdate >= {MIN_VERSION} at {SYSUPDATE}",
            code="host.sysupdate",
            hint="choose a runtime with --runtime (make runtime builds them)",
        )
    build = layout.runtime(None if wanted == AUTO else wanted)
    root = build.root
    if any(c in os.fspath(root) for c in ",:\\\n"):
        raise HostError(f"Unusable runtime path {root!r} (overlay options)", code="host.sysupdate")
    if not build.stamp.exists() or not (root / SYSUPDATE.lstrip("/")).exists():
        raise HostError(
            f"No systemd-sysupdate {build.name}: the runtime {root} is not built",
            code="host.sysupdate",
            hint=f"run scripts/make-runtime.sh {build.name} (make runtime)",
        )
    v = _major(root, chroot=root)
    if v is None or v != build.major:
        raise HostError(
            f"The runtime in {root} has no working systemd-sysupdate {build.name}",
            code="host.sysupdate",
        )
    return Runtime(root=root, version=v, name=build.name)


def _check_target(target: str) -> str:
    p = PurePosixPath(target)
    if not p.is_absolute() or ".." in p.parts or str(p) != target or target == "/":
        raise HostError(f"Bad bind target {target!r}", code="host.sysupdate")
    return target


def parse_notify(raw: bytes) -> dict[str, str]:
    """``KEY=VALUE`` lines of one sd_notify datagram; malformed lines are dropped."""
    out: dict[str, str] = {}
    for line in raw[:MAX_NOTIFY_BYTES].decode("utf-8", errors="replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            out[key] = value
    return out


def _bind_anywhere(sock: socket.socket, directory: Path, name: str) -> None:
    """Bind ``sock`` to ``directory/name`` even if that path is longer than ``sun_path`` allows
    (a run's temporary directory is under the staging directory): through ``/proc/self/fd``."""
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock.bind(f"/proc/self/fd/{fd}/{name}")
    finally:
        os.close(fd)


@contextlib.contextmanager
def _notify_socket(notify: Notify | None) -> Iterator[Path]:
    """A bound datagram socket in a private directory; a thread forwards messages to ``notify``."""
    sock_dir = Path(tempfile.mkdtemp(prefix="airlock-notify-"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    stop = threading.Event()

    def pump() -> None:
        while True:
            try:
                data = sock.recv(MAX_NOTIFY_BYTES)
            except TimeoutError:
                if stop.is_set():  # the queue is drained and the run is over
                    return
                continue
            except OSError:
                return
            msg = parse_notify(data)
            if msg and notify is not None:
                try:
                    notify(msg)
                except Exception:  # a reporter bug must not kill the apply
                    logger.exception("notify callback failed")

    thread = threading.Thread(target=pump, name="sysupdate-notify", daemon=True)
    try:
        _bind_anywhere(sock, sock_dir, "notify")
        sock.settimeout(0.1)
        thread.start()
        yield sock_dir
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=2)
        sock.close()
        shutil.rmtree(sock_dir, ignore_errors=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """A usable systemd-sysupdate ≥ 257: ``root`` is ``/`` (host) or a runtime root (chroot).

    ``name`` is ``host`` or the runtime's name in ``layout.env`` (``257``, ``262``).
    """

    root: Path
    version: int
    name: str = HOST

    @property
    def chrooted(self) -> bool:
        """True for a runtime root (run chrooted), False for the host's own."""
        return self.root != Path("/")

    def _check_binds(self, binds: Sequence[Bind]) -> None:
        for b in binds:
            _check_target(b.target)
            if not os.path.exists(b.source):
                raise HostError(f"Bind source {b.source} does not exist", code="host.sysupdate")

    def run(
        self,
        args: Sequence[str],
        *,
        binds: Sequence[Bind] = (),
        env: Mapping[str, str] | None = None,
        timeout: float,
        notify: Notify | None = None,
        check: bool = False,
    ) -> proc.Completed:
        """Run ``systemd-sysupdate --no-pager ARGS`` in a private mount namespace.

        Returns the completed process (``check=False``: the caller interprets the exit status).

        Raises:
            HostError: bad binds, setup failure, timeout (``CommandTimedOut``).
        """
        self._check_binds(binds)
        scratch = Path(tempfile.mkdtemp(prefix="airlock-sysupdate-"))
        try:
            with _notify_socket(notify) as sock_dir:
                # In the runtime the socket is bound at a short path; on a host with
                # sysupdate >= 257 its real path must fit sun_path (108 bytes) or sysupdate
                # reports no progress (it ignores the failure and installs all the same).
                notify_dir = NOTIFY_DIR if self.chrooted else os.fspath(sock_dir)
                notify_path = notify_dir + "/notify"
                spec = {
                    "root": os.fspath(self.root),
                    "binary": SYSUPDATE,
                    "args": ["--no-pager", *args],
                    # In a PID namespace systemd may log to /dev/kmsg by default: the host's
                    # kernel log, and nothing on the stderr we report.
                    "env": proc.base_env(
                        {
                            "SYSTEMD_LOG_TARGET": "console",
                            **(env or {}),
                            "NOTIFY_SOCKET": notify_path,
                        }
                    ),
                    "notify_dir": notify_dir,
                    "notify_host_dir": os.fspath(sock_dir),
                    "scratch": os.fspath(scratch),
                    "binds": [
                        {
                            "source": os.fspath(b.source.absolute()),
                            "target": b.target,
                            "read_only": b.read_only,
                        }
                        for b in binds
                    ],
                }
                res = proc.run(
                    # proc's guard gives the run its own PID namespace that dies with airlock
                    # (even on SIGKILL), so sysupdate and its callouts (systemd-pull,
                    # systemd-import) never outlive the lock (ADR 0003, ADR 0005).
                    [
                        UNSHARE,
                        "--mount",
                        "--propagation",
                        "private",
                        "--",
                        sys.executable,
                        "-I",
                        "-S",
                        ENTER,
                        json.dumps(spec),
                    ],
                    timeout=timeout,
                    check=False,
                    max_output=4 << 20,
                    scratch=(scratch, sock_dir),  # removed even if airlock is killed
                )
        finally:
            # only ever a mount point inside the dead namespace: empty on the host
            shutil.rmtree(scratch, ignore_errors=True)
        if res.returncode == 125:
            raise HostError(
                f"Setting up the sysupdate namespace failed: {tail(res.stderr)}",
                code="host.sysupdate",
            )
        if check and res.returncode != 0:
            raise HostError(
                f"systemd-sysupdate {' '.join(args)} failed ({res.returncode})",
                code="host.sysupdate",
            )
        return res
