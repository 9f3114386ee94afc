# SPDX-License-Identifier: MIT
"""The programs ``proc`` starts: one fixed search path, checks for configured executables, and the
minimal environment every child gets."""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from airlock.errors import HostError
from airlock.text import display

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def check_executable(path: Path, *, hint: str | None = None) -> None:
    """An executable from config: absolute, a regular file, root-owned, not writable by others.

    Raises:
        HostError: ``host.executable``.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise HostError(
            f"Failed to find {path}: {exc.strerror}", code="host.executable", hint=hint
        ) from exc
    if not path.is_absolute() or not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        raise HostError(f"Refusing {path}: not an absolute executable file", code="host.executable")
    if st.st_uid != 0 or st.st_mode & 0o022:
        raise HostError(
            f"Refusing {path}: not owned by root or writable by others", code="host.executable"
        )


@functools.cache
def tool(name: str) -> str:
    """The absolute path of system tool ``name``, looked up once in ``BASE_PATH``.

    Raises:
        HostError: ``host.command`` when no directory of ``BASE_PATH`` has it.
    """
    if "/" in name:
        raise HostError(f"Refusing program {display(name)}: not a bare name", code="host.command")
    for directory in BASE_PATH.split(":"):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise HostError(f"Failed to find {display(name)} in {BASE_PATH}", code="host.command")


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment: fixed PATH, C.UTF-8, plus ``extra``."""
    env = {"PATH": BASE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    if extra:
        env.update(extra)
    return env
