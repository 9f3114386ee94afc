# SPDX-License-Identifier: MIT
"""Where the agent's bytes come from: the ``Source`` interface, its ``Body`` and its failures.

Two sources implement it: ``web.HttpSource`` (http/https, standard library) and
``offline.FileSource`` (file://, e.g. a USB stick).  A ``Body`` is read with ``readinto`` into the
caller's buffers, so a payload is copied once from the socket to the file.  File names are joined
to the base URL only after the caller checked them with ``formats.names``.

Failures are ``FetchError``: ``TransientError`` (connection refused or cut, stall, 5xx, 408, 429)
is worth a retry; ``RestartError`` means a resume must start again at byte 0; ``RangeError`` means
a byte range did not come back as asked (a delta download then falls back to the whole file);
anything else is not retried.  ``None`` means "not found" (404/410, ENOENT).
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from airlock.errors import FetchError
from airlock.text import display

CHUNK_BYTES = 1 << 20


class TransientError(FetchError):
    """A failure that may go away: the network is not up yet, the server hiccuped or stalled."""

    default_code = "fetch.network"


class RestartError(FetchError):
    """The server cannot continue a partial download; start it again from byte 0."""

    default_code = "fetch.range"


class RangeError(FetchError):
    """The server did not answer a byte range with exactly that range (delta falls back)."""

    default_code = "fetch.range"


@dataclass(frozen=True, slots=True, kw_only=True)
class Body:
    """An opened resource: its bytes start at ``offset`` of the file.

    ``readinto`` fills the start of a buffer and returns the count; 0 means the end.
    """

    offset: int
    length: int | None  # bytes still to come, when announced
    validator: str | None  # strong ETag or Last-Modified, for If-Range
    size: int | None  # the whole file's size, when the server said it
    readinto: Callable[[memoryview], int]


def body_from_bytes(data: bytes, *, offset: int = 0, validator: str | None = None) -> Body:
    """A ``Body`` over bytes in memory (tests, small sources)."""
    state = {"pos": 0}

    def readinto(view: memoryview) -> int:
        pos = state["pos"]
        n = min(len(view), len(data) - pos)
        view[:n] = data[pos : pos + n]
        state["pos"] = pos + n
        return n

    return Body(
        offset=offset,
        length=len(data),
        validator=validator,
        size=offset + len(data),
        readinto=readinto,
    )


def iter_chunks(body: Body, chunk_bytes: int = 64 * 1024) -> Iterator[bytes]:
    """The body as a sequence of byte strings (for small files)."""
    buf = bytearray(chunk_bytes)
    view = memoryview(buf)
    while n := body.readinto(view):
        yield bytes(view[:n])


class Source(Protocol):
    """Where releases come from."""

    url: str

    def open(
        self, name: str, *, offset: int = 0, validator: str | None = None
    ) -> contextlib.AbstractContextManager[Body | None]:
        """Open ``name`` (from ``offset``, if it still matches ``validator``); None if absent."""

    def open_range(
        self, name: str, start: int, end: int, *, validator: str | None = None
    ) -> contextlib.AbstractContextManager[Body]:
        """Open bytes ``[start, end)`` of ``name``; ``RangeError`` unless the server sends them."""

    def close(self) -> None:
        """Release connections."""


def join(url: str, name: str) -> str:
    """``url`` + ``/`` + ``name``, trailing slashes of ``url`` dropped (sysupdate's rule)."""
    return url.rstrip("/") + "/" + urllib.parse.quote(name, safe="")


def source_for(url: str, *, stall_s: float, deadline: float, ca_file: str | None = None) -> Source:
    """The transport for ``url`` (already validated: http, https or file)."""
    # Imported here: both modules build on the types above.
    from airlock.agent.offline import FileSource
    from airlock.agent.web import HttpSource

    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "file":
        return FileSource(url)
    if scheme in ("http", "https"):
        return HttpSource(url, stall_s=stall_s, deadline=deadline, ca_file=ca_file)
    raise FetchError(f"Refusing update URL scheme {display(scheme)}", code="fetch.url")
