# SPDX-License-Identifier: MIT
"""``MatchPattern=``: compile, match and format sysupdate patterns (design.md#sysupdate-patterns).

A pattern is literals, ``/`` and field markers: ``@v`` version (mandatory), ``@u`` partition UUID,
``@f`` partition flags, ``@t`` mtime (µs), ``@m`` mode, ``@s`` size, ``@d`` tries done, ``@l``
tries left, ``@a`` NoAuto, ``@r`` ReadOnly, ``@g`` GrowFileSystem, ``@h`` SHA-256; ``@@`` is a
literal ``@``.  A field extends to the *first* occurrence of the literal that follows it.

Two matching modes:

* ``Mode.EXACT`` — the whole name must be consumed.  Every security decision uses this.
* ``Mode.SYSUPDATE`` — systemd's ``pattern_match()`` of a given version (``formats.dialect``,
  default 257).  257 never checks that the name was consumed: ``foo_@v.raw`` matches
  ``foo_2.raw.bak``; 262 matches whole names but with its own version charset (``~``, ``^`` in,
  ``,`` out) and numeric parsing.  Used only to predict what sysupdate picks.  With 257's rules an
  EXACT match is always a SYSUPDATE match with the same fields (tested).

``compile`` refuses what 257 refuses (unknown marker, repeated marker, adjacent markers, trailing
``@``, missing ``@v``, characters outside printable ASCII or in ``$*?[]!\\|``) and, unlike 257, a
field directly followed by ``/``, on which 257 aborts with an assertion (exit 134).

Trusts the pattern text only as much as a definition file; trusts nothing about matched names.
Field values are parsed with the C parsers' exact rules (``safe_atou64``, ``parse_mode``,
``sd_id128_from_string``, ``parse_boolean``), ported below.  Pure: no I/O, stdlib only.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
from collections.abc import Callable, Sequence

from airlock.errors import FormatError
from airlock.formats import dialect, version
from airlock.text import display

__all__ = [
    "Fields", "MatchResult", "Mode", "Pattern", "PatternError", "compile", "match_agreed",
    "match_any",
]  # fmt: skip

_MARKERS = frozenset("vuftmsdlargh")
_RESERVED = frozenset("$*?[]!\\|")
_SLASH = "/"
_U64_MAX = (1 << 64) - 1
_U32_MAX = (1 << 32) - 1
_C_SPACE = " \t\n\v\f\r"  # isspace() in the C locale, skipped by strtoull
_SD_WHITESPACE = " \t\n\r"  # systemd's WHITESPACE, skipped by safe_atollu_full
_HEX = frozenset("0123456789abcdefABCDEF")
_TRUE = frozenset({"1", "yes", "y", "true", "t", "on"})
_FALSE = frozenset({"0", "no", "n", "false", "f", "off"})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Fields:
    """Values a name carries in its fields; None where the pattern has no such marker."""

    version: str | None = None
    uuid: str | None = None  # 32 lowercase hex digits
    flags: int | None = None
    tries_done: int | None = None
    tries_left: int | None = None
    mtime: int | None = None  # µs since the epoch
    mode: int | None = None
    size: int | None = None
    no_auto: bool | None = None
    read_only: bool | None = None
    growfs: bool | None = None
    sha256: str | None = None  # 64 lowercase hex digits


# --- the C field parsers (design.md#sysupdate-patterns, design.md#sysupdate-numbers) ------------


def _strtoull(s: str, base: int, *, c23: bool = True) -> tuple[int, bool, int] | None:
    """glibc's ``strtoull`` (C23 unless ``c23`` is False): (value mod 2**64, overflowed, used)."""
    k = 0
    while k < len(s) and s[k] in _C_SPACE:
        k += 1
    negative = k < len(s) and s[k] == "-"
    if k < len(s) and s[k] in "+-":
        k += 1
    head = s[k : k + 2].lower()
    # C23 (glibc >= 2.38, what 257 links against): 0x/0b prefixes only before a valid digit.
    if base in (0, 16) and head == "0x" and s[k + 2 : k + 3] in _HEX and s[k + 2 : k + 3]:
        base, k = 16, k + 2
    elif c23 and base in (0, 2) and head == "0b" and s[k + 2 : k + 3] in ("0", "1"):
        base, k = 2, k + 2
    elif base == 0:
        base = 8 if s[k : k + 1] == "0" else 10
    digits = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}[base]
    start = k
    while k < len(s) and s[k] in digits:
        k += 1
    if k == start:
        return None
    value = int(s[start:k], base)
    if value > _U64_MAX:
        return _U64_MAX, True, k
    return (-value) % (1 << 64) if negative else value, False, k


def _safe_atou(
    s: str, base: int, *, limit: int = _U64_MAX, refuse_sign: bool = False, c23: bool = True
) -> int | None:
    """systemd's ``safe_atollu_full``/``safe_atou_full`` (base 0 adds ``0b``/``0o``)."""
    k = 0
    while k < len(s) and s[k] in _SD_WHITESPACE:
        k += 1
    s = s[k:]
    if refuse_sign and s[:1] in ("+", "-"):
        return None
    if base == 0 and s[:2].lower() == "0b":
        s, base = s[2:], 2
    elif base == 0 and s[:2].lower() == "0o":
        s, base = s[2:], 8
    parsed = _strtoull(s, base, c23=c23)
    if parsed is None:
        return None
    value, overflow, used = parsed
    if overflow or used != len(s) or (value != 0 and s[:1] == "-") or value > limit:
        return None
    return value


def _u64_not_max(s: str, *, c23: bool = True) -> int | None:
    value = _safe_atou(s, 0, c23=c23)
    return None if value is None or value == _U64_MAX else value


def _mode(s: str) -> int | None:
    value = _safe_atou(s, 8, limit=_U32_MAX, refuse_sign=True)
    if value is None or value > 0o7777 or value & ~0o775:
        return None  # 257 refuses world-writable and set-id modes from names
    return value


def _uuid(s: str) -> str | None:
    if len(s) == 36 and all(s[i] == "-" for i in (8, 13, 18, 23)):
        s = s[:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
    if len(s) != 32 or not all(c in _HEX for c in s):
        return None
    return s.lower()


def _boolean(s: str) -> bool | None:
    low = s.lower() if s.isascii() else s
    return True if low in _TRUE else False if low in _FALSE else None


def _sha256(s: str) -> str | None:
    return s.lower() if len(s) == 64 and all(c in _HEX for c in s) else None


def _version(s: str) -> str | None:
    return s if version.is_valid(s) else None


_Parser = Callable[[str], object]
FIELD_PARSERS: dict[str, tuple[str, _Parser]] = {
    "v": ("version", _version),
    "u": ("uuid", _uuid),
    "f": ("flags", lambda s: _safe_atou(s, 16)),
    "t": ("mtime", _u64_not_max),  # µs/1e6 always fits time_t once below UINT64_MAX
    "m": ("mode", _mode),
    "s": ("size", _u64_not_max),
    "d": ("tries_done", _u64_not_max),
    "l": ("tries_left", _u64_not_max),
    "a": ("no_auto", _boolean),
    "r": ("read_only", _boolean),
    "g": ("growfs", _boolean),
    "h": ("sha256", _sha256),
}


def _parse_as(rules: dialect.Dialect, marker: str, text: str) -> object:
    """A field value as sysupdate ``rules`` parse it (its version charset and ``strtoull``)."""
    if marker == "v":
        return text if rules.version_is_valid(text) else None
    if marker in "tsdl":
        return _u64_not_max(text, c23=rules.strtoull_c23)
    return FIELD_PARSERS[marker][1](text)


def _format_field(marker: str, fields: Fields) -> str | None:
    """257's ``pattern_format`` for one field, or None if the value is missing or invalid."""
    attr = FIELD_PARSERS[marker][0]
    value = getattr(fields, attr)
    if value is None:
        return None
    if marker == "v":
        return value if isinstance(value, str) and version.is_valid(value) else None
    if marker in "uh":
        if not isinstance(value, str):
            return None
        return _uuid(value) if marker == "u" else _sha256(value)
    if marker in "arg":
        return ("1" if value else "0") if isinstance(value, bool) else None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _U64_MAX:
        return None
    if marker == "f":
        return f"{value:x}"
    if marker == "m":
        return f"{value:03o}" if not value & ~0o775 else None
    return str(value) if value != _U64_MAX else None


class PatternError(FormatError):
    """A ``MatchPattern=`` expression is invalid, or a name cannot be formatted from it."""

    default_code = "config.pattern"


class Mode(enum.StrEnum):
    """How much of a name a pattern must consume."""

    EXACT = "exact"
    SYSUPDATE = "sysupdate"


class MatchResult(enum.Enum):
    """``pattern_match()``'s three answers."""

    NO = "no"
    YES = "yes"
    RETRY = "retry"  # the name is a directory prefix of a possible match: descend into it


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _Element:
    kind: str  # "literal", "slash", or a marker letter
    text: str = ""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Pattern:
    """A compiled ``MatchPattern=`` expression.  Build it with ``compile()``."""

    text: str
    elements: tuple[_Element, ...]

    @property
    def markers(self) -> frozenset[str]:
        """The field markers (letters) this pattern contains."""
        return frozenset(e.kind for e in self.elements if e.kind in _MARKERS)

    def classify(
        self, name: str, mode: Mode = Mode.EXACT, rules: dialect.Dialect | None = None
    ) -> tuple[MatchResult, Fields | None]:
        """Match ``name`` and say whether it matched, failed, or is a directory to descend into.

        Args:
            name: a relative name (``dir/file`` for patterns with ``/``), untrusted.
            mode: ``EXACT`` or ``SYSUPDATE``.
            rules: for ``SYSUPDATE``, the sysupdate version to predict (default 257): its prefix
                matching, version charset and numeric parsing (``formats.dialect``).

        Returns:
            ``(YES, fields)``, ``(NO, None)`` or ``(RETRY, None)``.
        """
        loose = Mode(mode) is Mode.SYSUPDATE
        view = (rules or dialect.V257) if loose else None
        found: dict[str, object] = {}
        p = 0
        n_name = len(name)
        elements = self.elements
        for idx, e in enumerate(elements):
            if e.kind == "slash":
                if p < n_name and name[p] == _SLASH:
                    p += 1
                    continue
                if p == n_name:
                    return MatchResult.RETRY, None
                return MatchResult.NO, None
            if e.kind == "literal":
                if not name.startswith(e.text, p):
                    return MatchResult.NO, None
                p += len(e.text)
                continue
            if idx + 1 < len(elements):
                # compile() guarantees a literal follows a field; the field is non-greedy.
                end = name.find(elements[idx + 1].text, p)
                if end < 0:
                    return MatchResult.NO, None
            else:
                end = n_name
            attr, parse_field = FIELD_PARSERS[e.kind]
            parsed = _parse_as(view, e.kind, name[p:end]) if view else parse_field(name[p:end])
            if parsed is None:
                return MatchResult.NO, None
            found[attr] = parsed
            p = end
        # Fail closed: anything but an explicit SYSUPDATE (a plain "sysupdate" str included, via
        # the StrEnum) of a version that prefix-matches gets the whole-name check.
        if not (view is not None and view.prefix_match) and p != n_name:
            return MatchResult.NO, None
        # Each value came from its attribute's parser, so the types are right.
        return MatchResult.YES, Fields(**found)  # type: ignore[arg-type]  # values typed by parser

    def match(
        self, name: str, mode: Mode = Mode.EXACT, rules: dialect.Dialect | None = None
    ) -> Fields | None:
        """The fields of ``name`` if it matches, else None (RETRY counts as no match).

        Args:
            name: an untrusted name.
            mode: ``EXACT`` (whole name) or ``SYSUPDATE`` (what sysupdate would read).
            rules: for ``SYSUPDATE``, the sysupdate version (default 257).

        Returns:
            The extracted ``Fields`` or None.
        """
        result, fields = self.classify(name, mode, rules)
        return fields if result is MatchResult.YES else None

    def format(self, fields: Fields) -> str:
        """Render a name from ``fields`` (sysupdate's ``pattern_format``).

        The result is checked to match back (EXACT) to the same fields, so a value that contains
        the literal following its field, which would be read back differently, is refused.

        Args:
            fields: values for at least every marker of the pattern; others are ignored.

        Returns:
            The formatted name.

        Raises:
            PatternError: a marker has no value, a value is invalid, or the name would not read
                back to the same fields.
        """
        parts: list[str] = []
        for e in self.elements:
            if e.kind == "slash":
                parts.append(_SLASH)
            elif e.kind == "literal":
                parts.append(e.text)
            else:
                text = _format_field(e.kind, fields)
                if text is None:
                    raise PatternError(
                        f"Failed to format pattern {display(self.text)}: "
                        f"no valid value for field @{e.kind}"
                    )
                parts.append(text)
        name = "".join(parts)
        wanted = {FIELD_PARSERS[m][0] for m in self.markers}
        expected = dataclasses.replace(
            Fields(),
            **{k: getattr(fields, k) for k in wanted},
        )
        back = self.match(name, Mode.EXACT)
        if back is None or _normalised(back) != _normalised(expected):
            raise PatternError(
                f"Failed to format pattern {display(self.text)}: the name {display(name)} "
                "would not read back to the same fields"
            )
        return name


def _normalised(fields: Fields) -> Fields:
    return dataclasses.replace(
        fields,
        uuid=fields.uuid.replace("-", "").lower() if fields.uuid is not None else None,
        sha256=fields.sha256.lower() if fields.sha256 is not None else None,
    )


def _fail(text: str, why: str) -> PatternError:
    return PatternError(f"Invalid MatchPattern= expression {display(text)}: {why}")


def compile(text: str) -> Pattern:
    """Parse a ``MatchPattern=`` expression (257's ``pattern_split``, plus the ``@X/`` check).

    Args:
        text: one pattern word, after specifier expansion.

    Returns:
        The compiled ``Pattern``.

    Raises:
        PatternError: ``config.pattern`` for any expression 257 refuses or would abort on.
    """
    elements: list[_Element] = []
    literal: list[str] = []
    seen: set[str] = set()
    at = False

    def flush() -> None:
        if literal:
            elements.append(_Element(kind="literal", text="".join(literal)))
            literal.clear()

    for pos, c in enumerate(text):
        if at:
            at = False
            if c == "@":
                literal.append("@")
                continue
            if c not in _MARKERS:
                raise _fail(text, f"unknown field marker {display('@' + c)} at {pos - 1}")
            if c in seen:
                raise _fail(text, f"field marker @{c} appears twice")
            if not literal and elements and elements[-1].kind in _MARKERS:
                raise _fail(text, "two field markers without a separating literal")
            flush()
            seen.add(c)
            elements.append(_Element(kind=c))
            continue
        if c == "@":
            at = True
        elif c == _SLASH:
            flush()
            elements.append(_Element(kind="slash"))
        elif not (" " <= c <= "~") or c in _RESERVED:
            raise _fail(text, f"invalid character {display(c)} at {pos}")
        else:
            literal.append(c)
    if at:
        raise _fail(text, "trailing '@'")
    flush()
    if "v" not in seen:
        raise _fail(text, "version field marker @v not specified")
    for e, nxt in itertools.pairwise(elements):
        if e.kind in _MARKERS and nxt.kind == "slash":
            # 257 asserts here (exit 134) as soon as a candidate exists; refuse up front.
            raise _fail(text, f"field @{e.kind} directly followed by '/'")
    return Pattern(text=text, elements=tuple(elements))


def match_any(
    patterns: Sequence[Pattern],
    name: str,
    mode: Mode = Mode.EXACT,
    rules: dialect.Dialect | None = None,
) -> Fields | None:
    """The fields from the first pattern that matches ``name`` (``pattern_match_many``).

    Args:
        patterns: compiled patterns, most specific first.
        name: an untrusted name.
        mode: ``EXACT`` or ``SYSUPDATE``.
        rules: for ``SYSUPDATE``, the sysupdate version (default 257).

    Returns:
        The first match's ``Fields``, or None.
    """
    result, fields = classify_any(patterns, name, mode, rules)
    return fields if result is MatchResult.YES else None


def classify_any(
    patterns: Sequence[Pattern],
    name: str,
    mode: Mode = Mode.EXACT,
    rules: dialect.Dialect | None = None,
) -> tuple[MatchResult, Fields | None]:
    """``pattern_match_many``: the first pattern whose answer is not NO decides (RETRY too).

    Args:
        patterns: compiled patterns, most specific first.
        name: an untrusted name.
        mode: ``EXACT`` or ``SYSUPDATE``.
        rules: for ``SYSUPDATE``, the sysupdate version (default 257).

    Returns:
        ``(YES, fields)``, ``(RETRY, None)`` or ``(NO, None)``.
    """
    for pat in patterns:
        result, fields = pat.classify(name, mode, rules)
        if result is not MatchResult.NO:
            return result, fields
    return MatchResult.NO, None


def match_agreed(patterns: Sequence[Pattern], name: str) -> Fields | None:
    """Fields only if EXACT and SYSUPDATE matching agree on ``name``.

    With several patterns an earlier one may prefix-match in 257 where only a later one matches
    exactly (possibly with other fields); a name like that is judged one way and installed another.
    Security decisions that must equal sysupdate's choice use this.

    Args:
        patterns: compiled patterns, most specific first.
        name: an untrusted name.

    Returns:
        The fields both modes agree on, or None.
    """
    exact = classify_any(patterns, name, Mode.EXACT)
    loose = classify_any(patterns, name, Mode.SYSUPDATE)
    return exact[1] if exact[0] is MatchResult.YES and exact == loose else None
