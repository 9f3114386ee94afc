# SPDX-License-Identifier: MIT
"""A small HTTP/1.1 file server for the lab and for tests (``airlock serve``).

Trusts: the operator's choice of root directory and bind address.  Refuses: anything outside the
root (each path component is opened relative to the previous directory fd with ``O_NOFOLLOW``, so
neither ``..`` nor a symlink, inside or outside the root, is ever followed), anything that is not a
regular file (no directory listings), methods other than GET/HEAD, and more than
``max_connections`` concurrent connections (the extra connection is closed unanswered).

Supports ``Range`` (one range; several ranges get the whole file, which RFC 9110 allows),
``If-Range`` (strong ETag or exact Last-Modified), ``If-None-Match``, ``ETag`` and
``Last-Modified``.  Every response is logged as one JSON line (``bytes`` actually written) and
counted per file.  Fault switches for tests: cut a file's response after N body bytes (the
connection is then closed), delay a response, or answer a fixed status (404/500) for a name.

Default bind is 127.0.0.1: this is a lab tool, not a production web server.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import http.server
import json
import logging
import os
import socket
import stat
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from airlock import fsutil
from airlock.errors import HostError, UsageError
from airlock.text import display

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
MAX_PATH_COMPONENTS = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class Faults:
    """Fault switches, keyed by file name (the last path component).

    ``cut_after_bytes``: send at most N body bytes of that file, then close the connection.
    ``delay_s``: sleep this long before answering for that file (key ``"*"``: every request).
    ``status``: answer this status (e.g. 404 or 500) with an empty body for that file.
    """

    cut_after_bytes: Mapping[str, int] = field(default_factory=dict)
    delay_s: Mapping[str, float] = field(default_factory=dict)
    status: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeConfig:
    """What ``serve`` serves and how."""

    root: Path
    bind: str = "127.0.0.1"
    port: int = 0
    log_path: Path | None = None
    faults: Faults = field(default_factory=Faults)
    max_connections: int = 32
    idle_timeout_s: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class _Target:
    fd: int
    size: int
    etag: str
    last_modified: str


class _NotFoundError(Exception):
    """The request names nothing we serve."""


class FileServer(http.server.ThreadingHTTPServer):
    """The threaded server; one per ``Server``."""

    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that went away (or any other failure of one request) is one log line, never
        socketserver's traceback on stderr."""
        exc = sys.exc_info()[1]
        logger.info(
            "request from %s ended: %s",
            display(str(client_address)),
            display(f"{type(exc).__name__}: {exc}"),
        )

    def __init__(self, config: ServeConfig, root_fd: int) -> None:
        self.config = config
        self.root_fd = root_fd
        self.slots = threading.BoundedSemaphore(config.max_connections)
        self.stats_lock = threading.Lock()
        self.bytes_per_file: dict[str, int] = {}
        self.requests: list[dict[str, object]] = []
        self.recorded = threading.Condition(self.stats_lock)
        self.log_file: IO[str] | None = None
        family = socket.AF_INET6 if ":" in config.bind else socket.AF_INET
        self.address_family = family
        super().__init__((config.bind, config.port), _Handler)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        """Refuse a connection beyond ``max_connections`` by closing it unanswered."""
        if not self.slots.acquire(blocking=False):
            logger.debug("connection limit reached; closing a new connection")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def record(self, entry: dict[str, object]) -> None:
        """Count bytes per file and append the entry to the JSON-lines log."""
        with self.stats_lock:
            name = str(entry["path"])
            self.bytes_per_file[name] = self.bytes_per_file.get(name, 0) + int(
                entry["bytes"]  # type: ignore[call-overload]  # always an int, set by _Handler
            )
            self.requests.append(entry)
            if self.log_file is not None:
                self.log_file.write(json.dumps(entry, sort_keys=True) + "\n")
                self.log_file.flush()
            self.recorded.notify_all()


def _open_target(root_fd: int, url_path: str) -> _Target:
    """Open ``url_path`` below ``root_fd`` without following anything; regular files only."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(url_path).path, errors="strict")
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > MAX_PATH_COMPONENTS:
        raise _NotFoundError
    if any(p in (".", "..") or "\0" in p or len(p.encode()) > 255 for p in parts):
        raise _NotFoundError
    dir_fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            try:
                nxt = os.open(part, fsutil.DIR_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                raise _NotFoundError from exc
            os.close(dir_fd)
            dir_fd = nxt
        try:
            fd = os.open(parts[-1], fsutil.FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            raise _NotFoundError from exc
    finally:
        os.close(dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _NotFoundError
    os.set_blocking(fd, True)
    return _Target(
        fd=fd,
        size=st.st_size,
        etag=f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"',
        last_modified=email.utils.formatdate(st.st_mtime, usegmt=True),
    )


def parse_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """One ``bytes=`` range → (first, last) inclusive.

    ``None``: ignore the header (serve the whole file); ``False``: unsatisfiable (416).
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    if not dash or not all(x.isdigit() or x == "" for x in (first_s, last_s)):
        return None
    if first_s == "":
        if last_s == "":
            return None
        suffix = int(last_s)
        if suffix == 0 or size == 0:
            return False
        return (max(0, size - suffix), size - 1)
    first = int(first_s)
    last = int(last_s) if last_s else None
    if last is not None and last < first:
        return None
    if first >= size:
        return False
    if last is None:
        last = size - 1
    return (first, min(last, size - 1))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "airlock-serve"
    sys_version = ""
    server: FileServer
    # Headers and body go out in two writes; without TCP_NODELAY every kept-alive answer waited
    # for the client's delayed ACK (about 40 ms: a delta of 300 ranges took 14 s instead of 0.2).
    disable_nagle_algorithm = True

    def setup(self) -> None:
        self.request.settimeout(self.server.config.idle_timeout_s)
        super().setup()

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("serve: " + format, *args)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _simple(self, status: int, *, extra: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, *, body: bool) -> None:
        faults = self.server.config.faults
        name = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
        name = urllib.parse.unquote(name)
        delay = faults.delay_s.get(name, faults.delay_s.get("*", 0.0))
        if delay:
            time.sleep(delay)
        entry: dict[str, object] = {
            "time": round(time.time(), 3),
            "client": self.client_address[0],
            "method": self.command,
            "path": display(name, limit=200)[1:-1],
            "status": 0,
            "bytes": 0,
            "range": None,
        }
        try:
            if name in faults.status:
                entry["status"] = faults.status[name]
                self._simple(faults.status[name])
                return
            try:
                target = _open_target(self.server.root_fd, self.path)
            except (_NotFoundError, UnicodeDecodeError):
                entry["status"] = 404
                self._simple(404)
                return
            try:
                self._send_file(target, name, entry, body=body)
            finally:
                os.close(target.fd)
        finally:
            self.server.record(entry)

    def _send_file(
        self, target: _Target, name: str, entry: dict[str, object], *, body: bool
    ) -> None:
        validators = {
            "ETag": target.etag,
            "Last-Modified": target.last_modified,
            "Accept-Ranges": "bytes",
        }
        inm = self.headers.get("If-None-Match")
        if inm is not None and target.etag in [t.strip() for t in inm.split(",")]:
            entry["status"] = 304
            self._simple(304, extra=validators)
            return
        span: tuple[int, int] | None = None
        range_header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        honour = if_range is None or if_range.strip() in (target.etag, target.last_modified)
        if range_header is not None and honour:
            parsed = parse_range(range_header, target.size)
            if parsed is False:
                entry["status"] = 416
                self._simple(416, extra={"Content-Range": f"bytes */{target.size}", **validators})
                return
            if isinstance(parsed, tuple):
                span = parsed
        first, last = span if span is not None else (0, target.size - 1)
        length = last - first + 1 if target.size else 0
        status = 206 if span is not None else 200
        entry["status"] = status
        entry["range"] = [first, last] if span is not None else None
        self.send_response(status)
        for key, value in validators.items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        if span is not None:
            self.send_header("Content-Range", f"bytes {first}-{last}/{target.size}")
        self.end_headers()
        if not body:
            return
        cut = self.server.config.faults.cut_after_bytes.get(name)
        budget = length if cut is None else min(length, cut)
        entry["bytes"] = self._copy(target.fd, first, budget, entry)
        if budget < length:
            entry["cut"] = True
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)

    def _copy(self, fd: int, offset: int, budget: int, entry: dict[str, object]) -> int:
        sent = 0
        while sent < budget:
            chunk = os.pread(fd, min(CHUNK_BYTES, budget - sent), offset + sent)
            if not chunk:
                break  # the file shrank under us; the client sees a short body
            try:
                self.wfile.write(chunk)
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                    raise
                entry["aborted"] = True
                self.close_connection = True
                return sent
            sent += len(chunk)
        return sent


class Server:
    """A running ``FileServer`` in a background thread; use as a context manager.

    ``url`` is the base URL (no trailing slash), ``bytes_served()`` the bytes written per file.
    """

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        try:
            self._root_fd = os.open(config.root, fsutil.DIR_FLAGS)
        except OSError as exc:
            raise UsageError(
                f"Failed to open {display(os.fspath(config.root))}: {exc.strerror}",
                code="usage.serve-root",
            ) from exc
        try:
            self.httpd = FileServer(config, self._root_fd)
        except OSError as exc:
            os.close(self._root_fd)
            raise HostError(
                f"Failed to bind {display(config.bind)} port {config.port}: {exc.strerror}",
                code="host.bind",
            ) from exc
        if config.log_path is not None:
            try:
                # Closed in close().
                self.httpd.log_file = open(config.log_path, "a", encoding="utf-8")
            except OSError as exc:
                self.httpd.server_close()
                os.close(self._root_fd)
                raise UsageError(
                    f"Failed to open log {display(os.fspath(config.log_path))}: " f"{exc.strerror}",
                    code="usage.serve-log",
                ) from exc
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.config.bind
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def bytes_served(self) -> dict[str, int]:
        with self.httpd.stats_lock:
            return dict(self.httpd.bytes_per_file)

    def requests(self) -> list[dict[str, object]]:
        with self.httpd.stats_lock:
            return list(self.httpd.requests)

    def wait_requests(self, count: int, *, timeout: float = 10.0) -> list[dict[str, object]]:
        """Wait until ``count`` requests have been logged (responses are logged after sending)."""
        with self.httpd.recorded:
            self.httpd.recorded.wait_for(lambda: len(self.httpd.requests) >= count, timeout)
            return list(self.httpd.requests)

    def serve_forever(self) -> None:
        """Serve in the calling thread until ``shutdown()`` or KeyboardInterrupt."""
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> Server:
        self._thread = threading.Thread(
            target=self.serve_forever, name="airlock-serve", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.httpd.server_close()
        if self.httpd.log_file is not None:
            self.httpd.log_file.close()
            self.httpd.log_file = None
        with contextlib.suppress(OSError):
            os.close(self._root_fd)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def serving(config: ServeConfig) -> Iterator[Server]:
    """Run a server in the background for the duration of the ``with`` block."""
    with Server(config) as server:
        yield server
