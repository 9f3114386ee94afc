# SPDX-License-Identifier: MIT
"""Spectrum's safe-name grammar: the only file names allowed to become host paths.

A safe name is 1..255 bytes, its first byte an ASCII letter, every following byte an ASCII letter,
digit, ``_``, ``.`` or ``-``, and its last byte not ``.`` (Spectrum design, "Name rule").  This
excludes ``/``, NUL, ``.``, ``..``, dot-files, a leading ``-`` (option injection), whitespace,
control characters and every non-ASCII byte.

Trusts nothing: the input is raw bytes or text straight from the VM's tree.  Refuses with
``InspectionError(code="reject.name")`` whose message never echoes the raw name: it names the
first offending position and character, escaped as Spectrum prints it (``'c'`` for printable
ASCII, otherwise ``byte 0xNN``).  Pure: no I/O, stdlib only.
"""

from __future__ import annotations

import string
from typing import NewType

from airlock.errors import InspectionError

SafeName = NewType("SafeName", str)

MAX_NAME_BYTES = 255  # the kernel's NAME_MAX
_FIRST = frozenset(string.ascii_letters.encode())
_REST = frozenset((string.ascii_letters + string.digits + "_.-").encode())


def _as_bytes(raw: bytes | str) -> bytes:
    if isinstance(raw, bytes):
        return raw
    # Surrogate escapes (undecodable bytes from os.listdir) turn back into the raw bytes; any
    # other code point becomes its UTF-8 bytes.  Either way a non-ASCII byte is refused below.
    return raw.encode("utf-8", "surrogateescape")


def _describe(byte: int) -> str:
    return f"'{chr(byte)}'" if 0x20 <= byte <= 0x7E else f"byte 0x{byte:02x}"


def _problem(data: bytes) -> str | None:
    """Why ``data`` is not a safe name, or None if it is."""
    if not data:
        return "empty name"
    if len(data) > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} bytes ({len(data)})"
    if data[0] not in _FIRST:
        return f"must start with an ASCII letter, not {_describe(data[0])}"
    for pos, byte in enumerate(data):
        if byte not in _REST:
            return f"character {_describe(byte)} at byte {pos} is not allowed"
    if data[-1] == ord("."):
        return "must not end with '.'"
    return None


def is_safe(raw: bytes | str) -> bool:
    """Whether ``raw`` is a safe name.

    Args:
        raw: a name from a directory listing (bytes) or text.

    Returns:
        True exactly when ``raw`` matches ``^[A-Za-z][A-Za-z0-9_.-]*$``, does not end in ``.``
        and is at most 255 bytes.
    """
    return _problem(_as_bytes(raw)) is None


def parse(raw: bytes | str) -> SafeName:
    """Validate ``raw`` as a safe name.

    Args:
        raw: a name from a directory listing (bytes) or text.

    Returns:
        The name as a ``SafeName`` (ASCII ``str``).

    Raises:
        InspectionError: ``reject.name`` when ``raw`` is not a safe name; the message names the
            offending position and character but does not quote the name.
    """
    data = _as_bytes(raw)
    why = _problem(data)
    if why is not None:
        raise InspectionError(f"Refusing file name: {why}", code="reject.name")
    return SafeName(data.decode("ascii"))
