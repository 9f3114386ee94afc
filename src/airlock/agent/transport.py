# SPDX-License-Identifier: MIT
"""Move bytes from the update server (http/https via httpx) or an offline source (file://).

Trusts nothing it receives: bodies are raw (``Accept-Encoding: identity``, never decompressed),
redirects are followed only to http/https (httpx knows no other scheme) and at most 5 times, a
``206`` must start exactly where it was asked to.  File names are joined to the base URL only
after the caller checked them with ``formats.names``; ``file://`` sources open them relative to
the base directory, without following a final symlink, and only if they are regular files.

Failures are ``FetchError``: ``TransientError`` (connection refused or cut, stall, 5xx, 408, 429)
is worth a retry; anything else is not.  ``None`` means "not found" (404/410, ENOENT).
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import os
import re
import stat
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import httpx

from airlock import __version__
from airlock.errors import FetchError
from airlock.text import display

CHUNK_BYTES = 1 << 20
MAX_REDIRECTS = 5
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class TransientError(FetchError):
    """A failure that may go away: the network is not up yet, the server hiccuped or stalled."""

    default_code = "fetch.network"


class RestartError(FetchError):
    """The server cannot continue a partial download; start it again from byte 0."""

    default_code = "fetch.range"


@dataclass(frozen=True, slots=True, kw_only=True)
class Body:
    """An opened resource: its bytes start at ``offset`` of the file."""

    offset: int
    length: int | None  # bytes still to come, when announced
    validator: str | None  # strong ETag or Last-Modified, for If-Range
    chunks: Iterator[bytes]


class Source(Protocol):
    """Where releases come from."""

    url: str

    def open(
        self, name: str, *, offset: int = 0, validator: str | None = None
    ) -> contextlib.AbstractContextManager[Body | None]:
        """Open ``name`` (from ``offset``, if it still matches ``validator``); None if absent."""

    def close(self) -> None:
        """Release connections."""


def join(url: str, name: str) -> str:
    """``url`` + ``/`` + ``name``, trailing slashes of ``url`` dropped (sysupdate's rule)."""
    return url.rstrip("/") + "/" + urllib.parse.quote(name, safe="")


class HttpSource:
    """http:// and https:// through one httpx client (keep-alive, no proxies from the env)."""

    def __init__(
        self, url: str, *, stall_s: float, deadline: float, connect_s: float = 10.0
    ) -> None:
        self.url = url
        self._stall_s = stall_s
        self._connect_s = connect_s
        self._deadline = deadline
        self._client = httpx.Client(
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            trust_env=False,
            headers={"User-Agent": f"airlock-agent/{__version__}", "Accept-Encoding": "identity"},
        )

    def close(self) -> None:
        """Close the client."""
        self._client.close()

    def _timeout(self) -> httpx.Timeout:
        """Per-request timeouts, never beyond the run's deadline."""
        left = max(self._deadline - time.monotonic(), 0.05)
        connect, stall = min(self._connect_s, left), min(self._stall_s, left)
        return httpx.Timeout(connect=connect, read=stall, write=stall, pool=connect)

    @contextlib.contextmanager
    def open(
        self, name: str, *, offset: int = 0, validator: str | None = None
    ) -> Iterator[Body | None]:
        """GET ``name``; with ``offset`` > 0 ask for the rest (``Range``, ``If-Range``)."""
        url = join(self.url, name)
        headers = {}
        if offset > 0:
            headers["Range"] = f"bytes={offset}-"
            if validator:
                headers["If-Range"] = validator
        what = display(name)
        try:
            with self._client.stream("GET", url, headers=headers, timeout=self._timeout()) as resp:
                yield _body(resp, offset=offset, what=what)
        except httpx.UnsupportedProtocol as exc:
            raise FetchError(
                f"Failed to fetch {what}: redirected to an unsupported scheme", code="fetch.http"
            ) from exc
        except httpx.TransportError as exc:
            raise TransientError(
                f"Failed to fetch {what}: {type(exc).__name__}: {display(str(exc), limit=160)}"
            ) from exc
        except httpx.TooManyRedirects as exc:
            raise FetchError(
                f"Failed to fetch {what}: too many redirects", code="fetch.http"
            ) from exc
        except httpx.HTTPError as exc:
            raise FetchError(
                f"Failed to fetch {what}: {type(exc).__name__}: {display(str(exc), limit=160)}",
                code="fetch.http",
            ) from exc


def _body(resp: httpx.Response, *, offset: int, what: str) -> Body | None:
    code = resp.status_code
    if code in (404, 410):
        return None
    if code in (408, 429) or code >= 500:
        raise TransientError(f"Failed to fetch {what}: HTTP {code}")
    if code == 416:
        raise RestartError(f"Failed to resume {what}: HTTP 416")
    if code not in (200, 206):
        raise FetchError(f"Failed to fetch {what}: HTTP {code}", code="fetch.http")
    start = 0
    if code == 206:
        m = _CONTENT_RANGE.fullmatch(resp.headers.get("content-range", "").strip())
        if m is None or int(m.group(1)) != offset:
            raise RestartError(f"Failed to resume {what}: unexpected Content-Range")
        start = offset
    length: int | None = None
    raw_length = resp.headers.get("content-length")
    if raw_length is not None and raw_length.strip().isdigit():
        length = int(raw_length)
    if resp.headers.get("content-encoding", "identity").lower() not in ("identity", ""):
        raise FetchError(f"Refusing {what}: the server sent it encoded", code="fetch.http")
    return Body(offset=start, length=length, validator=_validator(resp), chunks=resp.iter_raw())


def _validator(resp: httpx.Response) -> str | None:
    etag: str | None = resp.headers.get("etag")
    if etag and not etag.startswith("W/") and etag.isascii() and etag.isprintable():
        return etag
    modified: str | None = resp.headers.get("last-modified")
    if modified and modified.isascii() and modified.isprintable():
        with contextlib.suppress(TypeError, ValueError):
            email.utils.parsedate_to_datetime(modified)
            return modified
    return None


class FileSource:
    """file:// — an offline source such as a USB stick bound read-only into the VM."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._base = urllib.parse.unquote(urllib.parse.urlsplit(url).path)

    def close(self) -> None:
        """Nothing to release."""

    @contextlib.contextmanager
    def open(
        self, name: str, *, offset: int = 0, validator: str | None = None
    ) -> Iterator[Body | None]:
        """Open ``name`` below the base directory (no final symlink, regular files only)."""
        what = display(name)
        try:
            dfd = os.open(self._base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise TransientError(
                f"Failed to open the offline source {display(self._base)}: {exc.strerror}"
            ) from exc
        try:
            fd = os.open(
                name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd
            )
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                yield None
                return
            raise FetchError(
                f"Failed to open {what} in the offline source: {exc.strerror}", code="fetch.file"
            ) from exc
        finally:
            os.close(dfd)
        with os.fdopen(fd, "rb", buffering=0) as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise FetchError(f"Refusing {what}: not a regular file", code="fetch.file")
            current = f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}"
            start = offset if 0 < offset <= st.st_size and validator == current else 0
            f.seek(start)
            yield Body(
                offset=start, length=st.st_size - start, validator=current, chunks=_read_chunks(f)
            )


def _read_chunks(f: object) -> Iterator[bytes]:
    reader = f.read  # type: ignore[attr-defined]  # a raw binary file object
    while chunk := reader(CHUNK_BYTES):
        yield chunk


def source_for(url: str, *, stall_s: float, deadline: float) -> Source:
    """The transport for ``url`` (already validated: http, https or file)."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "file":
        return FileSource(url)
    if scheme in ("http", "https"):
        return HttpSource(url, stall_s=stall_s, deadline=deadline)
    raise FetchError(f"Refusing update URL scheme {display(scheme)}", code="fetch.url")
