# SPDX-License-Identifier: MIT
"""Version strings: systemd-sysupdate's charset check and its two orderings.

Owns:

* ``is_valid``/``parse``: the versions every supported sysupdate's ``version_is_valid()``
  accepts — 1..255 bytes of ``[A-Za-z0-9._+-]``: 257–259 also take ``,``
  (design.md#sysupdate-versions), 260+ take ``~`` and ``^`` instead (``formats.dialect``,
  docs/sysupdate-versions.md), so a version airlock accepts means the same to each of them.
* ``compare``: a port of systemd's ``strverscmp_improved()`` (design.md#sysupdate-versions), the
  ordering every "which version is newer" decision uses.  It is total on every string, valid or not,
  exactly as ``systemd-analyze compare-versions`` is.
* ``strverscmp``: a port of glibc's ``strverscmp()`` (design.md#sysupdate-strverscmp), needed by one
  step of version assembly (design.md#sysupdate-assembly).

Trusts nothing: every function accepts any ``str``.  Non-ASCII code points (and surrogate-escaped
bytes) are separators for ``compare``, as every byte >= 0x80 is in C.  Pure: no I/O, stdlib only.
"""

from __future__ import annotations

import functools
import string
from typing import NewType

from airlock.errors import FormatError
from airlock.text import display

Version = NewType("Version", str)

MAX_VERSION_BYTES = 255
_VERSION_CHARS = frozenset(string.ascii_letters + string.digits + "._+-")


def is_valid(v: str) -> bool:
    """Whether ``v`` passes ``version_is_valid()`` of every supported systemd-sysupdate.

    Args:
        v: a candidate version string.

    Returns:
        True for 1..255 bytes drawn from ``[A-Za-z0-9._+-]``.  ``.`` and ``..`` pass, as in C.
    """
    return bool(v) and len(v) <= MAX_VERSION_BYTES and all(c in _VERSION_CHARS for c in v)


def parse(v: str) -> Version:
    """Validate ``v`` as a sysupdate version.

    Args:
        v: a candidate version string.

    Returns:
        ``v`` as a ``Version``.

    Raises:
        FormatError: ``config.version`` when ``v`` fails ``is_valid``.
    """
    if not is_valid(v):
        raise FormatError(
            f"Refusing version {display(v)}: not 1..{MAX_VERSION_BYTES} characters of "
            "[A-Za-z0-9._+-]",
            code="config.version",
        )
    return Version(v)


# --- strverscmp_improved -------------------------------------------------------------------------


def _is_digit(c: str) -> bool:
    return "0" <= c <= "9"


def _is_letter(c: str) -> bool:
    return "a" <= c <= "z" or "A" <= c <= "Z"


def _is_relevant(c: str) -> bool:
    # Everything else (_ , + : and any non-ASCII) is a separator and is skipped.
    return _is_digit(c) or _is_letter(c) or c in "~-^."


def _digits_end(s: str, k: int) -> int:
    while k < len(s) and _is_digit(s[k]):
        k += 1
    return k


def _letters_end(s: str, k: int) -> int:
    while k < len(s) and _is_letter(s[k]):
        k += 1
    return k


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def compare(a: str, b: str) -> int:
    """Compare two version strings as systemd's ``strverscmp_improved()`` does.

    Args:
        a: any string (validity is not required; ``""`` is the C NULL/empty string).
        b: any string.

    Returns:
        -1 if ``a`` is older, 0 if equal (``1.0`` == ``1.00``), 1 if ``a`` is newer.
    """
    i = j = 0
    na, nb = len(a), len(b)
    while True:
        # 1. skip separators on both sides
        while i < na and not _is_relevant(a[i]):
            i += 1
        while j < nb and not _is_relevant(b[j]):
            j += 1
        ca = a[i] if i < na else ""
        cb = b[j] if j < nb else ""

        # 2. '~' marks a pre-release: older than anything, even the end of the string
        if ca == "~" or cb == "~":
            if ca != "~":
                return 1
            if cb != "~":
                return -1
            i += 1
            j += 1
            ca = a[i] if i < na else ""
            cb = b[j] if j < nb else ""

        # 3. at the end of either string, the side with something left is newer
        if not ca or not cb:
            return (ca != "") - (cb != "")

        # 4.-6. '-', then '^', then '.': the side that has it is older; each is checked once
        for sep in "-^.":
            if ca == sep or cb == sep:
                if ca != sep:
                    return 1
                if cb != sep:
                    return -1
                i += 1
                j += 1
                ca = a[i] if i < na else ""
                cb = b[j] if j < nb else ""

        # 7. one segment: a digit run if either side has one, else a letter run
        if _is_digit(ca) or _is_digit(cb):
            ea, eb = _digits_end(a, i), _digits_end(b, j)
            if (ea > i) != (eb > j):
                return 1 if ea > i else -1
            while i < ea and a[i] == "0":
                i += 1
            while j < eb and b[j] == "0":
                j += 1
            if ea - i != eb - j:
                return 1 if ea - i > eb - j else -1
            if a[i:ea] != b[j:eb]:
                return 1 if a[i:ea] > b[j:eb] else -1
        else:
            ea, eb = _letters_end(a, i), _letters_end(b, j)
            common = min(ea - i, eb - j)
            if a[i : i + common] != b[j : j + common]:
                # ASCII letters only: code-point order is C's unsigned byte order ('B' < 'a')
                return 1 if a[i : i + common] > b[j : j + common] else -1
            if ea - i != eb - j:
                return 1 if ea - i > eb - j else -1
        i, j = ea, eb


# --- glibc strverscmp ----------------------------------------------------------------------------

# glibc's state machine: states S_N (normal), S_I (integral part), S_F (fractional part), S_Z (only
# leading zeros so far); byte classes 0 = other, 1 = digit 1-9, 2 = '0'.
_S_N, _S_I, _S_F, _S_Z = 0, 3, 6, 9
_CMP, _LEN = 2, 3
_NEXT_STATE = (
    _S_N, _S_I, _S_Z,  # from S_N on other/digit/zero
    _S_N, _S_I, _S_I,  # from S_I
    _S_N, _S_F, _S_F,  # from S_F
    _S_N, _S_F, _S_Z,  # from S_Z
)  # fmt: skip
# Indexed by (state + class(c1)) * 3 + class(c2).
_RESULT = (
    _CMP, _CMP, _CMP, _CMP, _LEN, _CMP, _CMP, _CMP, _CMP,  # S_N
    _CMP, -1, -1, 1, _LEN, _LEN, 1, _LEN, _LEN,  # S_I
    _CMP, _CMP, _CMP, _CMP, _CMP, _CMP, _CMP, _CMP, _CMP,  # S_F
    _CMP, 1, 1, -1, _CMP, _CMP, -1, _CMP, _CMP,  # S_Z
)  # fmt: skip


def _byte_class(c: int) -> int:
    return (c == 0x30) + (0x30 <= c <= 0x39)


def strverscmp(a: str, b: str) -> int:
    """Compare two strings as glibc's ``strverscmp()`` does (sign only).

    The strings are compared as their UTF-8 bytes (surrogate escapes turn back into the original
    bytes), up to the first NUL, as C would see them.

    Args:
        a: any string.
        b: any string.

    Returns:
        -1, 0 or 1.
    """
    s1 = a.encode("utf-8", "surrogateescape").split(b"\0", 1)[0] + b"\0"
    s2 = b.encode("utf-8", "surrogateescape").split(b"\0", 1)[0] + b"\0"
    p1 = p2 = 0
    c1, c2 = s1[0], s2[0]
    state = _S_N + _byte_class(c1)
    while c1 == c2:
        if c1 == 0:
            return 0
        state = _NEXT_STATE[state]
        p1 += 1
        p2 += 1
        c1, c2 = s1[p1], s2[p2]
        state += _byte_class(c1)
    diff = _sign(c1 - c2)
    result = _RESULT[state * 3 + _byte_class(c2)]
    if result == _CMP:
        return diff
    if result == _LEN:
        # The longer run of digits is the larger number.
        p1 += 1
        p2 += 1
        while 0x30 <= s1[p1] <= 0x39:
            p1 += 1
            if not 0x30 <= s2[p2] <= 0x39:
                return 1
            p2 += 1
        return -1 if 0x30 <= s2[p2] <= 0x39 else diff
    return result


key = functools.cmp_to_key(compare)
"""Sort key: ``sorted(versions, key=version.key)`` is oldest first."""
