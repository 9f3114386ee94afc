# SPDX-License-Identifier: MIT
"""``SHA256SUMS``: parse the untrusted manifest bytes, and write one.

What it trusts: nothing.  ``parse()`` takes the raw bytes exactly as the VM left them (they are only
trusted later, once ``trusted/verify`` has checked a signature over these very bytes) and returns a
``Manifest`` or raises ``ManifestError``; it never returns a half-parsed result.

Accepted grammar (systemd 257's ``resource_load_from_web()``, design.md#sysupdate-manifest), one
entry per line::

    LINE   = DIGEST " " MARKER NAME "\\n"
    DIGEST = 64 hex digits (either case; stored lowercase)
    MARKER = "*" (binary) | " " (text)
    NAME   = 1..255 bytes of UTF-8, not "." or "..", no "/", no control character (< 0x20, 0x7F),
             not starting with "\\" (sha256sum's escaped-name form, unsupported by systemd)

Refused, as systemd 257 refuses it: embedded NUL, invalid UTF-8, a line shorter than 67 bytes, a
bad digest, a missing separator or marker, a missing final newline, an empty name, a name with
``/`` or a control character (so no CR, no CRLF, no comments, no blank lines).  An empty
manifest (0 bytes) is valid and has no entries.

Refused in addition (airlock is stricter than systemd 257):

* a name with ``%``, on which 262 refuses the whole manifest (``formats.dialect``: airlock accepts
  only what every supported sysupdate reads alike; 262 accepts ``dir/file`` names, 257 does not);
* the same file name twice (systemd adds both and picks one unpredictably);
* more than ``max_bytes`` bytes (code ``reject.size``) or more than ``max_lines`` lines
  (code ``reject.count``), checked before any parsing;
* a malformed or repeated ``BEST-BEFORE-`` entry (see below).

The ``BEST-BEFORE-YYYY-MM-DD`` pseudo-entry (systemd after 259, PR #40393,
design.md#sysupdate-best-before): a line whose name starts with ``BEST-BEFORE-`` is not a file.  Its
digest is the SHA-256 of the empty file (``EMPTY_SHA256``), which is what later systemd expects;
airlock also accepts 64 zeros (an older draft of this format) and refuses any other digest.  The
rest of the name must be a valid ISO date, ``YYYY-MM-DD``, else the manifest is refused (later
systemd would only warn and treat the line as a file; a publisher that meant a freshness bound must
not silently lose it).  At most one marker is allowed.  The marker is returned as
``Manifest.best_before`` and is not among ``entries``.  Later systemd refuses the manifest once the
current time is past midnight at the start of that day; the freshness decision itself belongs to
``trusted/policy``, not to this module.  systemd 257 treats the line as an ordinary file name that
no pattern matches, so it is harmless there.

``format()`` writes the marker first, then the entries sorted by name, each
``"{sha256} *{name}\\n"`` (or two spaces for a text-mode entry), and
``parse(format(es, best_before=d))`` gives back the same entries and date.

Messages name the line number and the problem, never the line's content.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from airlock.errors import ManifestError

MIB = 1 << 20
DEFAULT_MAX_BYTES = 1 * MIB
DEFAULT_MAX_LINES = 4096

BEST_BEFORE_PREFIX = "BEST-BEFORE-"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
_ZERO_SHA256 = "0" * 64
_BEST_BEFORE_DIGESTS = frozenset({EMPTY_SHA256, _ZERO_SHA256})

_MIN_LINE = 64 + 1 + 1 + 1  # digest, space, marker, one name byte (systemd: < 67 → corrupt)
_MAX_NAME_BYTES = 255
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_HEX_RE = re.compile(rb"[0-9a-fA-F]{64}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One file listed in the manifest.

    ``name`` is a plain file name (never a path); ``sha256`` is 64 lowercase hex digits.
    """

    name: str
    sha256: str
    binary: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """A parsed manifest: the file entries in file order, and the optional best-before date."""

    entries: tuple[Entry, ...]
    best_before: datetime.date | None = None

    _by_name: dict[str, Entry] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        # A frozen dataclass sets derived fields through object.__setattr__.
        object.__setattr__(self, "_by_name", {e.name: e for e in reversed(self.entries)})

    def get(self, name: str) -> Entry | None:
        """Return the entry for ``name``, or ``None`` if the manifest does not list it."""
        return self._by_name.get(name)


def _fail(line: int | None, problem: str, *, code: str = "reject.manifest") -> ManifestError:
    where = f"manifest line {line}" if line is not None else "manifest"
    return ManifestError(f"{where}: {problem}, refusing", line=line, code=code)


def _line_of(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a manifest file name (for every supported sysupdate), or ``None``."""
    if not name:
        return "empty file name"
    if name.startswith("\\"):
        return "file names with escapes are not supported"
    if "\0" in name:
        return "file name contains a NUL byte"
    if _CONTROL_RE.search(name):
        return "file name contains control characters"
    if "/" in name:
        return "file name contains '/' (subdirectories are not supported)"
    if "%" in name:  # 260+ refuse the whole manifest (curl would percent-decode the name)
        return "file name contains '%'"
    if name in (".", ".."):
        return "file name is '.' or '..'"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "file name is not valid UTF-8"
    if size > _MAX_NAME_BYTES:
        return f"file name longer than {_MAX_NAME_BYTES} bytes"
    return None


def _check_bounds(raw: bytes, max_bytes: int, max_lines: int) -> None:
    if len(raw) > max_bytes:
        raise _fail(None, f"larger than {max_bytes} bytes", code="reject.size")
    lines = raw.count(b"\n") + (0 if raw.endswith(b"\n") or not raw else 1)
    if lines > max_lines:
        raise _fail(None, f"more than {max_lines} lines", code="reject.count")
    nul = raw.find(b"\0")
    if nul >= 0:
        raise _fail(_line_of(raw, nul), "embedded NUL byte")
    cr = raw.find(b"\r")
    if cr >= 0:
        raise _fail(_line_of(raw, cr), "carriage return (CRLF line ends are not allowed)")
    try:
        raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise _fail(_line_of(raw, exc.start), "not valid UTF-8") from None


def _parse_line(raw: bytes, p: int, line: int) -> tuple[Entry, int]:
    """Parse the line starting at ``p``; return the entry and the offset after its newline."""
    if len(raw) - p < _MIN_LINE:
        raise _fail(line, "line too short (corrupt manifest)")
    if raw[p] == ord("\\"):
        raise _fail(line, "file names with escapes are not supported")
    digest = raw[p : p + 64]
    if not _HEX_RE.fullmatch(digest):
        raise _fail(line, "cannot parse the SHA-256 digest (64 hex digits expected)")
    p += 64
    if raw[p] != ord(" "):
        raise _fail(line, "missing space separator after the digest")
    p += 1
    if raw[p] not in b"* ":
        raise _fail(line, "missing binary/text input marker ('*' or ' ')")
    binary = raw[p] == ord("*")
    p += 1
    end = raw.find(b"\n", p)
    if end < 0:
        raise _fail(line, "truncated (no final newline)")
    if end == p:
        raise _fail(line, "empty file name")
    name = raw[p:end].decode("utf-8", errors="strict")  # whole buffer already checked
    problem = name_problem(name)
    if problem is not None:
        raise _fail(line, problem)
    return Entry(name=name, sha256=digest.decode("ascii").lower(), binary=binary), end + 1


def _best_before(entry: Entry, line: int) -> datetime.date:
    text = entry.name[len(BEST_BEFORE_PREFIX) :]
    if not _DATE_RE.fullmatch(text):
        raise _fail(line, "BEST-BEFORE entry does not end in a YYYY-MM-DD date")
    try:
        date = datetime.date.fromisoformat(text)
    except ValueError:
        raise _fail(line, "BEST-BEFORE entry names an impossible date") from None
    if entry.sha256 not in _BEST_BEFORE_DIGESTS:
        raise _fail(line, "BEST-BEFORE entry must carry the SHA-256 of the empty file")
    return date


def parse(
    raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_lines: int = DEFAULT_MAX_LINES
) -> Manifest:
    """Parse untrusted manifest bytes.

    Args:
        raw: the complete, undecoded ``SHA256SUMS`` file.
        max_bytes: refuse a larger file before looking at it.
        max_lines: refuse a file with more lines before parsing any.

    Returns:
        The entries in file order and the best-before date, if the manifest carries one.

    Raises:
        ManifestError: any rule above is broken.  ``line`` is the 1-based line (``None`` for the
            size and line-count caps); ``code`` is ``reject.manifest``, ``reject.size`` or
            ``reject.count``.
    """
    _check_bounds(raw, max_bytes, max_lines)
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    best_before: datetime.date | None = None
    best_before_line = 0
    p = 0
    line = 1
    while p < len(raw):
        entry, p = _parse_line(raw, p, line)
        if entry.name in seen:
            raise _fail(line, f"file name listed twice (first on line {seen[entry.name]})")
        seen[entry.name] = line
        if entry.name.startswith(BEST_BEFORE_PREFIX):
            if best_before is not None:
                raise _fail(line, f"second BEST-BEFORE entry (first on line {best_before_line})")
            best_before, best_before_line = _best_before(entry, line), line
        else:
            entries.append(entry)
        line += 1
    return Manifest(entries=tuple(entries), best_before=best_before)


def format(entries: Iterable[Entry], *, best_before: datetime.date | None = None) -> bytes:
    """Write a manifest that ``parse()`` (and systemd 257) accepts.

    Args:
        entries: the files; written sorted by name.
        best_before: written as the first line ``EMPTY_SHA256 *BEST-BEFORE-YYYY-MM-DD``.

    Returns:
        The manifest bytes, ending in a newline (empty if there is nothing to write).

    Raises:
        ManifestError: an entry has an invalid name or digest, a name appears twice, or a name
            starts with ``BEST-BEFORE-`` (code ``reject.manifest``, ``line`` is ``None``).
    """
    lines: list[str] = []
    if best_before is not None:
        lines.append(f"{EMPTY_SHA256} *{BEST_BEFORE_PREFIX}{best_before.isoformat()}\n")
    names: set[str] = set()
    for entry in sorted(entries, key=lambda e: e.name.encode("utf-8", errors="surrogatepass")):
        problem = name_problem(entry.name)
        if problem is not None:
            raise _fail(None, f"cannot write entry: {problem}")
        if entry.name.startswith(BEST_BEFORE_PREFIX):
            raise _fail(None, "cannot write entry: BEST-BEFORE- is reserved for the date marker")
        if not _SHA256_RE.fullmatch(entry.sha256):
            raise _fail(None, "cannot write entry: digest is not 64 lowercase hex digits")
        if entry.name in names:
            raise _fail(None, "cannot write entry: file name listed twice")
        names.add(entry.name)
        lines.append(f"{entry.sha256} {'*' if entry.binary else ' '}{entry.name}\n")
    return "".join(lines).encode("utf-8")
