# SPDX-License-Identifier: MIT
"""nginx serving a release directory: the lab's, the tests' and the benchmarks' real web server.

A release is a directory of static files, so any static web server or CDN can serve it; nginx
(the Debian package) is the one the tests and ``bench/delta.py`` run the agent against, beside
``airlock serve``.  Each instance gets a private work directory with a generated config (single
process, ``daemon off``, ``sendfile``, no MIME guessing, a JSON access log that records the body
bytes sent, ``Range`` and ``If-Range``), listens on loopback (or inside a network namespace the
caller made) on a port chosen here, optionally over TLS with a lab CA (``lab.tlsca``), and is
stopped by PID (its process group) when the ``with`` block ends.

``max_ranges=0`` makes nginx ignore ``Range`` and answer ``200`` with the whole file, as some
servers and CDNs do.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from airlock import proc
from airlock.errors import HostError
from airlock.text import display

START_TIMEOUT_S = 10.0
_LOG_FORMAT = (
    'escape=json \'{"uri":"$uri","status":$status,"bytes":$body_bytes_sent,'
    '"range_header":"$http_range","if_range":"$http_if_range","connection":$connection}\''
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tls:
    """A server certificate chain and its key (PEM files)."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class NginxConfig:
    """What to serve and how."""

    root: Path
    workdir: Path
    bind: str = "127.0.0.1"
    port: int | None = None  # None: a free port on the bind address
    tls: Tls | None = None
    max_ranges: int | None = None
    netns: str | None = None  # run inside this network namespace (made by the caller)


class _Child(Protocol):
    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...


class Nginx:
    """A running nginx: its URL and what it served (from its access log)."""

    def __init__(self, config: NginxConfig, port: int, pid: int) -> None:
        self.config = config
        self.port = port
        self.pid = pid
        scheme = "https" if config.tls else "http"
        host = f"[{config.bind}]" if ":" in config.bind else config.bind
        self.url = f"{scheme}://{host}:{port}"

    def requests(self) -> list[dict[str, object]]:
        """One entry per answered request, in order (``uri``, ``status``, ``bytes``, ...)."""
        log = self.config.workdir / "access.log"
        # nginx logs a request after sending the response: let the log settle first.
        size, deadline = -1, time.monotonic() + 2.0
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = log.stat().st_size if log.exists() else 0
            if now == size:
                break
            size = now
        if not log.exists():
            return []
        entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        for entry in entries:  # the same keys as ``airlock serve``'s log, where they overlap
            entry["path"] = str(entry["uri"]).rsplit("/", 1)[-1]
            entry["range"] = self._served_range(entry)
        return entries

    def _served_range(self, entry: dict[str, object]) -> list[int] | None:
        """``[first, last]`` of a 206 answer (from the request's single range), else None."""
        header = str(entry.get("range_header", ""))
        if entry.get("status") != 206 or not header.startswith("bytes="):
            return None
        first, _, last = header.removeprefix("bytes=").partition("-")
        if not first.isdigit():
            return None
        end = int(last) if last.isdigit() else None
        if end is None:
            end = (self.config.root / str(entry["path"])).stat().st_size - 1
        return [int(first), end]

    def bytes_served(self) -> dict[str, int]:
        """Body bytes sent per file name (the last path component)."""
        out: dict[str, int] = {}
        for entry in self.requests():
            name = str(entry["uri"]).rsplit("/", 1)[-1]
            out[name] = out.get(name, 0) + int(str(entry["bytes"]))
        return out


def available() -> bool:
    """Whether the nginx binary is installed."""
    return shutil.which("nginx", path="/usr/sbin:/usr/bin:/sbin:/bin") is not None


def _free_port(bind: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET) as s:
        s.bind((bind, 0))
        return int(s.getsockname()[1])


def render(config: NginxConfig, port: int) -> str:
    """The nginx.conf for ``config`` (paths are the caller's; no include of system files)."""
    w = config.workdir
    listen = f"{config.bind}:{port}" if ":" not in config.bind else f"[{config.bind}]:{port}"
    tls = ""
    if config.tls is not None:
        listen += " ssl"
        tls = f"ssl_certificate {config.tls.cert}; ssl_certificate_key {config.tls.key};"
    ranges = "" if config.max_ranges is None else f"max_ranges {config.max_ranges};"
    temp = " ".join(
        f"{kind}_temp_path {w / 'tmp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root (also root in a user namespace, where nobody is unmapped) keep root's ids: the
    # files served and the temporary directories belong to the caller.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}daemon off; master_process off; worker_processes 1;\n"
        f"pid {w / 'nginx.pid'};\nerror_log {w / 'error.log'} warn;\n"
        "events { worker_connections 128; }\n"
        "http {\n"
        f"  log_format airlock {_LOG_FORMAT};\n  access_log {w / 'access.log'} airlock;\n"
        f"  {temp}\n  types {{ }} default_type application/octet-stream;\n"
        "  sendfile on; tcp_nopush on; keepalive_requests 100000; server_tokens off;\n"
        f"  server {{ listen {listen}; {tls} root {config.root}; {ranges}\n"
        "    location / { autoindex off; } }\n"
        "}\n"
    )


def _wait_listening(bind: str, port: int, child: _Child, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            tail = log.read_text(errors="replace")[-400:] if log.exists() else ""
            raise HostError(f"nginx exited at start: {display(tail)}", code="host.command")
        with contextlib.suppress(OSError), socket.create_connection((bind, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise HostError(f"nginx did not listen on port {port} in time", code="host.command")


@contextlib.contextmanager
def serving(config: NginxConfig) -> Iterator[Nginx]:
    """Run nginx for the ``with`` block; it is killed (process group, by PID) at the end.

    Raises:
        HostError: nginx is missing or did not start.
    """
    if not available():
        raise HostError("nginx is not installed", code="host.executable",
                        hint="make test installs it (scripts/install-deps.sh)")  # fmt: skip
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (config.workdir / "tmp" / kind).mkdir(parents=True, exist_ok=True)
    port = config.port or _free_port(config.bind)
    conf = config.workdir / "nginx.conf"
    conf.write_text(render(config, port))
    prefix: list[str | Path] = ["ip", "netns", "exec", config.netns] if config.netns else []
    argv: list[str | Path] = [
        *prefix,
        "nginx",
        "-c",
        conf,
        "-p",
        config.workdir,
        "-e",
        config.workdir / "error.log",
    ]
    with proc.spawn(argv, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}) as child:
        if config.netns is None:
            _wait_listening(config.bind, port, child, config.workdir / "error.log")
        else:
            _wait_pid(config.workdir / "nginx.pid", child)
        yield Nginx(config, port, child.pid)


def _wait_pid(pidfile: Path, child: _Child) -> None:
    """In a namespace we cannot connect to from here: wait for nginx to write its pid file."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise HostError("nginx exited at start", code="host.command")
        if pidfile.exists() and pidfile.read_text().strip():
            return
        time.sleep(0.05)
    raise HostError("nginx did not start in time", code="host.command")


def clear_log(server: Nginx) -> None:
    """Forget the requests logged so far (nginx reopens nothing; truncating is enough)."""
    os.truncate(server.config.workdir / "access.log", 0)
