# SPDX-License-Identifier: MIT
"""The systemd configuration-file dialect used by sysupdate.d: lines, sections, file lists.

This is the generic half of ``airlock.formats.definitions`` (which owns the sysupdate meaning of
each key; value grammars and specifiers are in ``airlock.formats.sdvalues``).  It reproduces
systemd 257's ``config_parse()`` (``src/shared/conf-parser.c``) and ``conf_files_list()``
(``src/basic/conf-files.c``) as far as definition files need them, and is stricter where systemd
only warns (see docs/adr/0020-definitions-strictness.md):

* Refused, where systemd warns and ignores: an assignment outside a section, a line without ``=``,
  an empty key, an unknown section (sections named ``X-…`` are ignored, as systemd ignores them
  silently), a control character other than TAB.
* Refused as systemd refuses: an invalid section header (``[`` without a closing ``]``).

What it trusts: definition files are host configuration (root-owned), but their text still reaches
error messages only through ``airlock.text.display``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from airlock.errors import FormatError
from airlock.text import display, shown

CODE = "config.definition"
MAX_FILE_BYTES = 1 << 20
_DEV_NULL_RDEV = os.makedev(1, 3)


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

    @property
    def slot(self) -> str:
        """``Section.Key``, as transfer and feature tables name it."""
        return f"{self.section}.{self.key}"


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
            Assignment(
                section=section, key=key, value=value.strip(" \t"), origin=origin, line=number
            )
        )
    return Parsed(assignments=tuple(assignments), section_lines=tuple(section_lines.items()))


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
