# SPDX-License-Identifier: MIT
"""The systemd configuration-file dialect used by sysupdate.d: lines, specifiers, file lists.

This is the generic half of ``airlock.formats.definitions`` (which owns the sysupdate meaning of
each key).  It reproduces systemd 257's ``config_parse()`` (``src/shared/conf-parser.c``),
``specifier_printf()`` (``src/shared/specifier.c``) and ``conf_files_list()``
(``src/basic/conf-files.c``) as far as definition files need them, and is stricter where systemd
only warns (see docs/adr/0020-definitions-strictness.md):

* Refused, where systemd warns and ignores: an assignment outside a section, a line without ``=``,
  an empty key, an unknown section (sections named ``X-…`` are ignored, as systemd ignores them
  silently), a control character other than TAB, a stray ``%`` at the end of a value, an unknown
  or unavailable specifier.
* Refused as systemd refuses: an invalid section header (``[`` without a closing ``]``).

What it trusts: definition files are host configuration (root-owned), but their text still reaches
error messages only through ``airlock.text.display``.  Specifier values come from the caller.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from airlock.errors import FormatError
from airlock.text import display

CODE = "config.definition"
MAX_FILE_BYTES = 1 << 20
_DEV_NULL_RDEV = os.makedev(1, 3)
UINT64_MAX = (1 << 64) - 1


def shown(text: str) -> str:
    """A file name or other mostly-trusted text, escaped only if it must be."""
    if text and text.isascii() and text.isprintable() and " " not in text and "'" not in text:
        return text
    return display(text, limit=200)


def fail(origin: str, line: int | None, problem: str, *, key: str | None = None) -> FormatError:
    """Build the one error type of definition parsing: ``FILE:LINE: Key=: problem``."""
    where = shown(origin) if line is None else f"{shown(origin)}:{line}"
    what = f" {key}=:" if key else ""
    return FormatError(f"{where}:{what} {problem}", code=CODE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignment:
    """One ``Key=value`` line (continuations joined), with where it was written."""

    section: str
    key: str
    value: str
    origin: str
    line: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Parsed:
    """A file's assignments in order, and the first line of each section header."""

    assignments: tuple[Assignment, ...]
    section_lines: tuple[tuple[str, int], ...]


def _logical_lines(text: str, origin: str) -> list[tuple[int, str]]:
    """Join continuation lines (odd number of trailing backslashes), skipping comment lines."""
    out: list[tuple[int, str]] = []
    pending: str | None = None
    start = 0
    for number, line in enumerate(text.split("\n"), start=1):
        bad = next((c for c in line if (ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F), None)
        if bad is not None:
            raise fail(origin, number, f"control character {ord(bad):#04x} in definition file")
        if line.lstrip(" \t")[:1] in ("#", ";"):
            continue  # comment lines are skipped, also inside a continuation (systemd ≥ 245)
        trailing = len(line) - len(line.rstrip("\\"))
        if pending is None:
            start = number
        if trailing % 2 == 1:
            pending = (pending or "") + line[:-1] + " "
            continue
        out.append((start, (pending or "") + line))
        pending = None
    if pending is not None:
        out.append((start, pending))
    return out


def read_assignments(text: str, *, origin: str, sections: frozenset[str]) -> Parsed:
    """Split a definition file into assignments.

    Args:
        text: the whole file, already decoded.
        origin: the file name used in messages.
        sections: the section names this file kind knows.

    Returns:
        Every assignment in a known section, in file order (``X-`` sections dropped).

    Raises:
        FormatError: code ``config.definition``, naming ``origin:line``.
    """
    text = text.removeprefix("\ufeff")
    assignments: list[Assignment] = []
    section_lines: dict[str, int] = {}
    section: str | None = None
    for number, raw_line in _logical_lines(text, origin):
        line = raw_line.strip(" \t")
        if not line:
            continue
        if line.startswith("["):
            if len(line) < 2 or not line.endswith("]"):
                raise fail(origin, number, f"invalid section header {display(line)}")
            name = line[1:-1]
            if name.startswith("X-"):
                section = name
                continue
            if name not in sections:
                raise fail(origin, number, f"unknown section {display(name)}")
            section = name
            section_lines.setdefault(name, number)
            continue
        if section is None:
            raise fail(origin, number, "assignment outside of any section")
        key, eq, value = line.partition("=")
        if not eq:
            raise fail(origin, number, "missing '=' in line")
        key = key.strip(" \t")
        if not key:
            raise fail(origin, number, "missing key name before '='")
        if section.startswith("X-"):
            continue
        assignments.append(
            Assignment(section=section, key=key, value=value.strip(" \t"), origin=origin,
                       line=number)
        )
    return Parsed(assignments=tuple(assignments), section_lines=tuple(section_lines.items()))


# --- values -----------------------------------------------------------------------------------

_TRUE = frozenset({"1", "yes", "y", "true", "t", "on"})
_FALSE = frozenset({"0", "no", "n", "false", "f", "off"})


def parse_boolean(value: str) -> bool | None:
    """systemd's ``parse_boolean()``: ``None`` if ``value`` is not a boolean."""
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


def parse_u64(value: str) -> int | None:
    """systemd's ``safe_atou64()`` (base 0 plus ``0b``/``0o``), ``None`` if it fails (§4.4)."""
    s = value.lstrip(" \t\n\r\v\f")
    negative = False
    if s[:1] in ("+", "-"):
        negative = s[0] == "-"
        s = s[1:]
    base = 10
    if s[:2].lower() == "0b":
        base, s = 2, s[2:]
    elif s[:2].lower() == "0o":
        base, s = 8, s[2:]
    elif s[:2].lower() == "0x":
        base, s = 16, s[2:]
    elif s.startswith("0") and len(s) > 1:
        base, s = 8, s[1:]
    digits = "0123456789abcdef"[:base]
    if not s or any(c not in digits for c in s.lower()):
        return None
    number = int(s, base)
    if number > UINT64_MAX or (negative and number != 0):
        return None
    return number


def split_words(value: str, *, origin: str, line: int, key: str) -> tuple[str, ...]:
    """Whitespace-separated words; quotes and backslash escapes are refused, not interpreted."""
    if any(c in value for c in "\"'\\"):
        raise fail(origin, line, "quotes and backslash escapes are not supported", key=key)
    return tuple(value.split())


# --- files ------------------------------------------------------------------------------------


def _classify(path: Path) -> str:
    """``file``, ``masked`` (symlink to /dev/null or empty file) or ``skip``."""
    try:
        st = path.stat()
    except OSError:
        return "skip"
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == _DEV_NULL_RDEV:
        return "masked"
    if stat.S_ISREG(st.st_mode):
        return "masked" if st.st_size == 0 else "file"
    return "skip"


def list_files(directories: Sequence[Path], suffix: str) -> tuple[Path, ...]:
    """``conf_files_list()``: files ending in ``suffix``, by basename, first directory wins.

    A basename found first as a mask hides it in every later directory.  Hidden files (leading
    ``.``) and anything that is not a regular file are ignored.  Sorted by basename.
    """
    chosen: dict[str, Path | None] = {}
    for directory in directories:
        try:
            names = sorted(os.listdir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            problem = f"cannot list directory: {exc.strerror}"
            raise fail(os.fspath(directory), None, problem) from None
        for name in names:
            if name in chosen or name.startswith(".") or not name.endswith(suffix):
                continue
            if name == suffix:
                continue
            kind = _classify(directory / name)
            if kind == "masked":
                chosen[name] = None
            elif kind == "file":
                chosen[name] = directory / name
    return tuple(path for _, path in sorted(chosen.items()) if path is not None)


def read_text(path: Path) -> str:
    """Read a definition file: at most ``MAX_FILE_BYTES``, strict UTF-8."""
    origin = os.fspath(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise fail(origin, None, f"cannot read file: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise fail(origin, None, f"file larger than {MAX_FILE_BYTES} bytes")
    try:
        return raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise fail(origin, line, "not valid UTF-8") from None


# --- specifiers (§1.5) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Specifiers:
    """Values for the specifiers of ``system_and_tmp_specifier_table`` (semantics §1.5).

    os-release values default to ``""``, which is what systemd expands an unset field to.  Host
    values (``%a %b %H %l %q %m %v``) default to ``None``: expanding one that the caller did not
    supply is an error rather than a silent empty string.  ``%l`` falls back to ``hostname`` up to
    its first dot.
    """

    architecture: str | None = None  # %a, systemd's name (x86-64, arm64, …)
    image_version: str = ""  # %A  IMAGE_VERSION
    boot_id: str | None = None  # %b
    build_id: str = ""  # %B  BUILD_ID
    hostname: str | None = None  # %H
    short_hostname: str | None = None  # %l
    pretty_hostname: str | None = None  # %q
    machine_id: str | None = None  # %m
    image_id: str = ""  # %M  IMAGE_ID
    os_id: str = ""  # %o  ID
    kernel_release: str | None = None  # %v
    version_id: str = ""  # %w  VERSION_ID
    variant_id: str = ""  # %W  VARIANT_ID
    tmp_dir: str = "/tmp"  # %T  # noqa: S108 - systemd's default, only expanded into text
    var_tmp_dir: str = "/var/tmp"  # %V  # noqa: S108 - as above

    @classmethod
    def from_os_release(cls, text: str, **host: str | None) -> Specifiers:
        """Build specifiers from os-release text plus host values given as keywords.

        Args:
            text: the content of ``os-release`` (``KEY=value`` lines, optional quotes).
            **host: any other field of this class, e.g. ``architecture="x86-64"``.

        Returns:
            The specifier values.

        Raises:
            TypeError: an unknown keyword (a programming error).
        """
        env = parse_os_release(text)
        fields = {
            "image_version": env.get("IMAGE_VERSION", ""),
            "build_id": env.get("BUILD_ID", ""),
            "image_id": env.get("IMAGE_ID", ""),
            "os_id": env.get("ID", ""),
            "version_id": env.get("VERSION_ID", ""),
            "variant_id": env.get("VARIANT_ID", ""),
        }
        return cls(**fields, **host)  # type: ignore[arg-type]  # keyword types checked by the class

    def value(self, letter: str) -> str | None:
        """The expansion of ``%letter``, ``None`` if unavailable; ``KeyError`` if unknown."""
        if letter == "l" and self.short_hostname is None and self.hostname is not None:
            return self.hostname.split(".", 1)[0]
        return {
            "a": self.architecture, "A": self.image_version, "b": self.boot_id,
            "B": self.build_id, "H": self.hostname, "l": self.short_hostname,
            "q": self.pretty_hostname, "m": self.machine_id, "M": self.image_id,
            "o": self.os_id, "v": self.kernel_release, "w": self.version_id,
            "W": self.variant_id, "T": self.tmp_dir, "V": self.var_tmp_dir,
        }[letter]


def expand(value: str, specifiers: Specifiers, *, origin: str, line: int, key: str) -> str:
    """``specifier_printf()``: replace ``%X`` and ``%%``.

    Raises:
        FormatError: an unknown specifier, one whose value the caller did not supply, or a stray
            ``%`` at the end (systemd keeps it; airlock refuses the ambiguity).
    """
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(value):
            raise fail(origin, line, "stray '%' at the end of the value (write '%%')", key=key)
        letter = value[i + 1]
        if letter == "%":
            out.append("%")
        else:
            try:
                expansion = specifiers.value(letter)
            except KeyError:
                raise fail(origin, line, f"unknown specifier {display('%' + letter)}",
                           key=key) from None
            if expansion is None:
                raise fail(origin, line, f"specifier %{letter} has no value on this host", key=key)
            out.append(expansion)
        i += 2
    return "".join(out)


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release's ``KEY=value`` lines (shell-style quotes, ``#`` comments).

    Malformed lines are skipped, as systemd's ``parse_env_file()`` skips them.
    """
    env: dict[str, str] = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not eq or not key.replace("_", "").isalnum():
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            quote, value = value[0], value[1:-1]
            if quote == '"':
                value = (value.replace('\\"', '"').replace("\\$", "$").replace("\\`", "`")
                         .replace("\\\\", "\\"))
        env[key] = value
    return env
