# SPDX-License-Identifier: MIT
"""http:// and https:// for the agent, on the standard library's ``http.client``.

Trusts nothing it receives: bodies are raw (``Accept-Encoding: identity``; an encoded answer is
refused), redirects are followed only to http/https and at most 5 times, a ``206`` must cover
exactly the bytes asked for, a body that ends before its ``Content-Length`` is a cut connection,
and header lines and counts are bounded by ``http.client``.  TLS certificates are checked against
the VM's trust store (or ``--ca-file``) with the host name; a failed check is ``fetch.tls`` and is
not retried.  Proxies from the environment are never used.

One connection is kept alive and read with ``readinto`` into the caller's buffers: measured
(docs/benchmarks.md, ADR 0073) this needs half the CPU per byte of the httpx stack it replaced,
and the VM needs no third-party package.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import http.client
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator

from airlock import __version__
from airlock.agent.transport import Body, RangeError, RestartError, TransientError, join
from airlock.errors import FetchError
from airlock.text import display

MAX_REDIRECTS = 5
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Certificate and host name checked; the VM's trust store, or only ``ca_file``."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise FetchError(
            f"Failed to load the CA file {display(ca_file or '')}: {display(str(exc), limit=120)}",
            code="fetch.tls",
        ) from exc


class HttpSource:
    """http:// and https:// over one kept-alive ``http.client`` connection (no proxies)."""

    def __init__(
        self,
        url: str,
        *,
        stall_s: float,
        deadline: float,
        connect_s: float = 10.0,
        ca_file: str | None = None,
    ) -> None:
        self.url = url
        self._stall_s = stall_s
        self._connect_s = connect_s
        self._deadline = deadline
        self._ca_file = ca_file
        self._tls: ssl.SSLContext | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._conn_key: tuple[str, str] | None = None

    def close(self) -> None:
        """Close the connection."""
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn, self._conn_key = None, None

    def _left(self) -> float:
        return max(self._deadline - time.monotonic(), 0.05)

    def _connection(
        self, parts: urllib.parse.SplitResult
    ) -> tuple[http.client.HTTPConnection, bool]:
        """The connection for ``parts`` (reused when possible) and whether it is fresh."""
        key = (parts.scheme, parts.netloc)
        if self._conn is not None and (self._conn_key != key or self._conn.sock is None):
            self._drop()
        if self._conn is not None:
            self._conn.sock.settimeout(min(self._stall_s, self._left()))
            return self._conn, False
        host, port = parts.hostname or "", parts.port
        timeout = min(self._connect_s, self._left())
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            if self._tls is None:
                self._tls = tls_context(self._ca_file)
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.connect()
        conn.sock.settimeout(min(self._stall_s, self._left()))
        self._conn, self._conn_key = conn, key
        return conn, True

    def _send(self, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        """One GET on the kept connection; a reused connection the server closed is retried."""
        parts = urllib.parse.urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        while True:
            conn, fresh = self._connection(parts)
            try:
                conn.request("GET", target, headers=headers)
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop()
                if fresh:
                    raise

    def _get(self, url: str, headers: dict[str, str], what: str) -> http.client.HTTPResponse:
        """GET ``url``, following at most ``MAX_REDIRECTS`` redirects to http/https."""
        base = {
            "User-Agent": f"airlock-agent/{__version__}",
            "Accept-Encoding": "identity",
            **headers,
        }
        for _ in range(MAX_REDIRECTS + 1):
            if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                raise FetchError(
                    f"Failed to fetch {what}: redirected to an unsupported scheme",
                    code="fetch.http",
                )
            resp = _guarded(what, functools.partial(self._send, url, base))
            if resp.status not in _REDIRECTS:
                return resp
            location = resp.getheader("location")
            self._drop()  # do not read a redirect's body; a new connection is cheap
            if not location:
                raise FetchError(f"Failed to fetch {what}: a redirect without a Location",
                                 code="fetch.http")  # fmt: skip
            url = urllib.parse.urljoin(url, location.strip())
        raise FetchError(f"Failed to fetch {what}: too many redirects", code="fetch.http")

    @contextlib.contextmanager
    def _response(self, name: str, headers: dict[str, str]) -> Iterator[http.client.HTTPResponse]:
        resp = self._get(join(self.url, name), headers, display(name))
        try:
            yield resp
        finally:
            if not resp.isclosed():
                self._drop()  # unread body: the connection cannot be reused

    @contextlib.contextmanager
    def open(
        self, name: str, *, offset: int = 0, validator: str | None = None
    ) -> Iterator[Body | None]:
        """GET ``name``; with ``offset`` > 0 ask for the rest (``Range``, ``If-Range``)."""
        headers = {}
        if offset > 0:
            headers["Range"] = f"bytes={offset}-"
            if validator:
                headers["If-Range"] = validator
        with self._response(name, headers) as resp:
            yield _body(resp, offset=offset, what=display(name))

    @contextlib.contextmanager
    def open_range(
        self, name: str, start: int, end: int, *, validator: str | None = None
    ) -> Iterator[Body]:
        """GET bytes ``[start, end)`` of ``name``; anything but that exact ``206`` is refused."""
        what = display(name)
        headers = {"Range": f"bytes={start}-{end - 1}"}
        if validator:
            headers["If-Range"] = validator
        with self._response(name, headers) as resp:
            if resp.status != 206:
                _status(resp, what)  # 404, 5xx ... keep their meaning
                raise RangeError(
                    f"Failed to fetch a range of {what}: HTTP {resp.status} instead of 206 "
                    "(ranges unsupported, or the file changed)"
                )
            m = _CONTENT_RANGE.fullmatch(resp.getheader("content-range", "").strip())
            if m is None or (int(m.group(1)), int(m.group(2)) + 1) != (start, end):
                raise RangeError(f"Failed to fetch a range of {what}: unexpected Content-Range")
            _check_identity(resp, what)
            size = None if m.group(3) == "*" else int(m.group(3))
            yield Body(
                offset=start,
                length=end - start,
                validator=_validator(resp),
                size=size,
                readinto=_reader(resp, what, end - start),
            )


def _guarded(what: str, call: Callable[[], http.client.HTTPResponse]) -> http.client.HTTPResponse:
    """Run ``call`` and turn network failures into ``FetchError``s."""
    try:
        return call()
    except ssl.SSLCertVerificationError as exc:
        raise FetchError(
            f"Failed to fetch {what}: the server's TLS certificate is not trusted "
            f"({display(exc.verify_message or str(exc), limit=120)})",
            code="fetch.tls",
            hint="the VM checks the certificate against its trust store (or --ca-file)",
        ) from exc
    except ssl.SSLError as exc:
        raise FetchError(
            f"Failed to fetch {what}: TLS failed: {display(str(exc), limit=160)}", code="fetch.tls"
        ) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise TransientError(f"Failed to fetch {what}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out (no data)"
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"{type(exc).__name__}: {display(detail, limit=160)}"


def _reader(
    resp: http.client.HTTPResponse, what: str, length: int | None
) -> Callable[[memoryview], int]:
    """``readinto`` for a response body; a body shorter than announced is a cut connection.

    Each call does at most one read from the socket, so a trickling server cannot keep a call
    from returning and the caller checks its deadline between calls.  A body with a
    ``Content-Length`` is read straight into the caller's buffer (``readinto1`` of the
    response's buffered socket file: no copy); once it is complete the response is finished so
    that ``http.client`` reuses the connection.  A chunked body goes through ``read1``.
    """
    state = {"left": length}
    direct = length is not None and not resp.chunked and resp.fp is not None

    def readinto(view: memoryview) -> int:
        left = state["left"]
        want = len(view) if left is None else min(len(view), left)
        if want == 0:
            return 0
        try:
            if direct:
                n = resp.fp.readinto1(view[:want])
            else:
                data = resp.read1(want)
                n = len(data)
                view[:n] = data
        except ssl.SSLError as exc:
            raise TransientError(f"Failed to fetch {what}: TLS: {_describe(exc)}") from exc
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise TransientError(f"Failed to fetch {what}: {_describe(exc)}") from exc
        if left is not None:
            if n == 0:
                raise TransientError(
                    f"Failed to fetch {what}: connection closed with {left} bytes still to come"
                )
            state["left"] = left - n
            if direct and left == n:
                resp.length = 0  # we read the body ourselves: nothing is left for http.client
                resp.read()  # ... which now marks the response complete (connection reusable)
        return n

    return readinto


def _status(resp: http.client.HTTPResponse, what: str) -> None:
    code = resp.status
    if code in (408, 429) or code >= 500:
        raise TransientError(f"Failed to fetch {what}: HTTP {code}")
    if code in (404, 410):
        raise FetchError(f"Failed to fetch {what}: not found", code="fetch.missing")


def _check_identity(resp: http.client.HTTPResponse, what: str) -> None:
    if (resp.getheader("content-encoding") or "identity").strip().lower() not in ("identity", ""):
        raise FetchError(f"Refusing {what}: the server sent it encoded", code="fetch.http")


def _body(resp: http.client.HTTPResponse, *, offset: int, what: str) -> Body | None:
    code = resp.status
    if code in (404, 410):
        return None
    if code in (408, 429) or code >= 500:
        raise TransientError(f"Failed to fetch {what}: HTTP {code}")
    if code == 416:
        raise RestartError(f"Failed to resume {what}: HTTP 416")
    if code not in (200, 206):
        raise FetchError(f"Failed to fetch {what}: HTTP {code}", code="fetch.http")
    start = 0
    size: int | None = None
    if code == 206:
        m = _CONTENT_RANGE.fullmatch(resp.getheader("content-range", "").strip())
        if m is None or int(m.group(1)) != offset:
            raise RestartError(f"Failed to resume {what}: unexpected Content-Range")
        start = offset
        size = None if m.group(3) == "*" else int(m.group(3))
    length: int | None = None
    raw_length = resp.getheader("content-length")
    if raw_length is not None and raw_length.strip().isdigit():
        length = int(raw_length)
    if code == 200:
        size = length
    _check_identity(resp, what)
    return Body(
        offset=start,
        length=length,
        validator=_validator(resp),
        size=size,
        readinto=_reader(resp, what, length),
    )


def _validator(resp: http.client.HTTPResponse) -> str | None:
    etag = resp.getheader("etag")
    if etag and not etag.startswith("W/") and etag.isascii() and etag.isprintable():
        return etag
    modified = resp.getheader("last-modified")
    if modified and modified.isascii() and modified.isprintable():
        with contextlib.suppress(TypeError, ValueError):
            email.utils.parsedate_to_datetime(modified)
            return modified
    return None
