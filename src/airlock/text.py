# SPDX-License-Identifier: MIT
"""The only way untrusted text reaches a terminal, a log record, an exception message or JSON.

``display()`` turns anything (``str`` or ``bytes``) into printable ASCII: C0/C1 controls, DEL,
every non-ASCII code point (bidi overrides and zero-width marks included) and undecodable bytes are
escaped, the result is quoted, and it is cut to a length cap.  It is deterministic, so tests can
assert on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

_ELLIPSIS = "…(+{} chars)"


def display(value: str | bytes, *, limit: int = 96) -> str:
    """Return a quoted, escaped, length-capped, printable-ASCII form of ``value``.

    Args:
        value: untrusted text or bytes.
        limit: maximum number of characters of the escaped form kept before the cut marker.

    Returns:
        A string made only of printable ASCII characters (plus the cut marker).
    """
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="backslashreplace")
    escaped = ascii(value)
    if len(escaped) <= limit:
        return escaped
    # The cut marker is ASCII apart from the ellipsis; keep it ASCII for JSON and old terminals.
    return escaped[:limit] + _ELLIPSIS.format(len(escaped) - limit).replace("…", "...")


def shown(value: str | bytes | os.PathLike[str], *, limit: int = 200) -> str:
    """A path, file name or argument, bare when that is unambiguous, else ``display()``-escaped.

    Plain printable ASCII without spaces or quotes is shown as is (``/etc/sysupdate.d``);
    anything else gets ``display()``'s quotes and escapes, so a reader can always tell where it
    ends and no control character reaches the terminal.
    """
    raw = value if isinstance(value, str) else os.fsdecode(value)
    if raw and raw.isascii() and raw.isprintable() and " " not in raw and "'" not in raw:
        return raw if len(raw) <= limit else display(raw, limit=limit)
    return display(raw, limit=limit)


def display_argv(argv: Iterable[str | bytes | os.PathLike[str]], *, limit: int = 400) -> str:
    """Render an argv list for a message, each element escaped only where it must be."""
    text = " ".join(shown(arg, limit=120) for arg in argv)
    if len(text) > limit:
        text = text[:limit] + f"...(+{len(text) - limit} chars)"
    return text


def tail(data: bytes, *, lines: int = 3, limit: int = 300) -> str:
    """Escaped last few lines of a child's output, for an error message."""
    chunk = data[-4096:].strip().splitlines()[-lines:]
    return " | ".join(display(line, limit=limit)[1:-1] for line in chunk)
