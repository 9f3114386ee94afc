# SPDX-License-Identifier: MIT
"""``updates-dir-check cleanup|check DIR``: Spectrum's directory checker, as a drop-in.

Spectrum's host command runs its C tool ``updates-dir-check`` twice (design.md#spectrum-step-5,
design.md#spectrum-step-16): ``cleanup shared`` before the VM starts and ``check snapshot`` after.
This module does the same to one directory, in the same order, with the same results, so an
integrator can swap it in (``airlock updates-dir-check``; docs/spectrum.md):

1. open the directory (never following a symlink, which the C tool would) and ``syncfs`` it;
2. for each entry: a dot-entry is unlinked (a dot-*directory* fails, as ``unlinkat`` without
   ``AT_REMOVEDIR`` does); any other name must start with an ASCII letter, continue with letters,
   digits, ``_``, ``.`` or ``-`` and not end with ``.``; it must be a regular file; a
   ``SHA256SUMS.*`` file is unlinked by ``cleanup`` and counted as "a signature arrived" by
   ``check``.  The first bad entry stops the run;
3. ``fsync`` the directory if anything was unlinked; ``check`` fails when no signature arrived.

Types come from ``lstat`` relative to the directory fd rather than ``d_type`` (the same answer on
btrfs, and no "type unknown" case).  Every name that reaches a message is escaped
(``text.shown``); a refused character is described as the C tool does (``'c'`` or ``byte 0xNN``).
Failures raise ``DirCheckError`` with the C tool's wording; the CLI prints it and exits 1.
"""

from __future__ import annotations

import enum
import os
import stat
from pathlib import Path

from airlock import fsutil
from airlock.text import shown

SIGNATURE_PREFIX = b"SHA256SUMS."
VM_NAME = "sys.appvm-systemd-sysupdate"
_LETTERS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_REST = _LETTERS | frozenset(b"0123456789_-.")


class Mode(enum.StrEnum):
    """What to do with the directory."""

    CLEANUP = "cleanup"
    CHECK = "check"


class DirCheckError(Exception):
    """The directory is refused, or an operation on it failed.

    Attributes:
        lines: what to print, one message per line (already escaped); the last is the error.
    """

    def __init__(self, *lines: str) -> None:
        super().__init__(lines[-1])
        self.lines = lines


def _describe(byte: int) -> str:
    return f"'{chr(byte)}'" if 0x20 <= byte <= 0x7E else f"byte 0x{byte:x}"


def _check_name(raw: bytes) -> None:
    if raw[0] not in _LETTERS:
        raise DirCheckError(f"Forbidden initial character in filename: {_describe(raw[0])}")
    for byte in raw[1:]:
        if byte not in _REST:
            raise DirCheckError(f"Forbidden subsequent character in filename: {_describe(byte)}")
    if raw.endswith(b"."):
        raise DirCheckError(f"Filename {shown(raw)} ends with a '.'")


def _unlink(dir_fd: int, name: str, what: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError as exc:
        raise DirCheckError(f"{what}: {exc.strerror}") from exc


def _entries(dir_fd: int) -> list[tuple[str, os.stat_result | None]]:
    try:
        names = os.listdir(dir_fd)
    except OSError as exc:
        raise DirCheckError(f"readdir: {exc.strerror}") from exc
    out: list[tuple[str, os.stat_result | None]] = []
    for name in names:
        try:
            st: os.stat_result | None = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None  # gone meanwhile (a VM still running): nothing to judge
        out.append((name, st))
    return out


def run(mode: Mode, directory: Path) -> None:
    """Clean up or check ``directory`` (see the module docstring).

    Raises:
        DirCheckError: the first refused entry or failed operation, in the C tool's words.
    """
    try:
        fd = os.open(directory, fsutil.DIR_FLAGS)
    except OSError as exc:
        raise DirCheckError(f"open({shown(directory)}): {exc.strerror}") from exc
    try:
        try:
            fsutil.syncfs(fd)
        except OSError as exc:
            raise DirCheckError(f"syncfs: {exc.strerror}") from exc
        changed = found_signature = False
        for name, st in _entries(fd):
            raw = os.fsencode(name)
            if raw.startswith(b"."):
                _unlink(fd, name, "Failed to unlink temporary file")
                changed = True
                continue
            _check_name(raw)
            if st is None:
                continue
            if not stat.S_ISREG(st.st_mode):
                raise DirCheckError(f"Entry contains non-regular file {shown(raw)}")
            if raw.startswith(SIGNATURE_PREFIX):
                if mode is Mode.CHECK:
                    found_signature = True
                else:
                    _unlink(fd, name, "Unlinking old signature file")
                    changed = True
        if changed:
            try:
                os.fsync(fd)
            except OSError as exc:
                raise DirCheckError(f"fsync: {exc.strerror}") from exc
        if mode is Mode.CHECK and not found_signature:
            raise DirCheckError(
                f"{VM_NAME} didn't send a signature file.",
                "There was probably a problem downloading the update.",
                "Check its logs for more information.",
            )
    finally:
        os.close(fd)
