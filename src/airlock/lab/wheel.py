# SPDX-License-Identifier: MIT
"""Install a wheel into a root tree the way a distribution package lays it out (no pip, no venv).

The lab's Spectrum-shaped host runs airlock as an OS image would ship it: the package in
``/usr/lib/python3/dist-packages`` (where Debian's ``python3`` finds it, next to its ``httpx`` and
``rich``), one script in ``/usr/bin`` per console entry point, run by ``/usr/bin/python3``, and
the wheel's data files (``NAME.data/data/…``: the man pages and shell completions) under the
prefix ``/usr``.  This is what an installer does with a wheel (unpack ``purelib`` and the ``data``
scheme, write the entry-point scripts); nothing runs at install time and nothing is compiled.

Trusts the wheel the project just built.  Refuses one whose members would land outside the tree
or that is not a pure-Python wheel.
"""

from __future__ import annotations

import configparser
import os
import re
import zipfile
from pathlib import Path, PurePosixPath

from airlock.errors import HostError

SITE = PurePosixPath("usr/lib/python3/dist-packages")
BIN = PurePosixPath("usr/bin")
PREFIX = PurePosixPath("usr")  # the wheel's "data" scheme: share/man/… -> /usr/share/man/…
_ENTRY = re.compile(r"([A-Za-z_][\w.]*):([A-Za-z_]\w*)")


def _script(module: str, function: str) -> str:
    return (
        "#!/usr/bin/python3\n"
        f"import sys\nfrom {module} import {function}\n"
        f"sys.exit({function}())\n"
    )


def _where(path: PurePosixPath, wheel: Path) -> PurePosixPath:
    """Where a wheel member goes below the root: the package, or a data file under ``/usr``."""
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise HostError(f"Refusing {wheel}: member {str(path)!r}", code="host.wheel")
    if not path.parts[0].endswith(".data"):
        return SITE / path
    if len(path.parts) < 3 or path.parts[1] != "data":  # scripts, headers, platlib: none here
        raise HostError(f"Refusing {wheel}: member {str(path)!r}", code="host.wheel")
    return PREFIX.joinpath(*path.parts[2:])


def install(wheel: Path, root: Path) -> tuple[str, ...]:
    """Unpack ``wheel`` below ``root`` and write its console scripts; return their names.

    Raises:
        HostError: ``host.wheel`` for an unreadable, impure or unsafe wheel.
    """
    try:
        archive = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise HostError(f"Failed to open the wheel {wheel}: {exc}", code="host.wheel") from exc
    with archive:
        members = archive.namelist()
        info = next((m for m in members if m.endswith(".dist-info/WHEEL")), None)
        if info is None or "Root-Is-Purelib: true" not in archive.read(info).decode():
            raise HostError(f"Refusing {wheel}: not a pure-Python wheel", code="host.wheel")
        for name in members:
            path = PurePosixPath(name)
            if name.endswith("/"):
                continue
            target = root / _where(path, wheel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(name))
            # Package data keeps its executable bit (the lab's stand-in scripts).
            mode = (archive.getinfo(name).external_attr >> 16) & 0o777
            target.chmod(0o755 if mode & 0o111 else 0o644)
        entry_points = info.replace("/WHEEL", "/entry_points.txt")
        parser = configparser.ConfigParser()
        if entry_points in members:
            parser.read_string(archive.read(entry_points).decode())
    scripts = dict(parser["console_scripts"]) if parser.has_section("console_scripts") else {}
    (root / BIN).mkdir(parents=True, exist_ok=True)
    for name, spec in scripts.items():
        m = _ENTRY.fullmatch(spec.strip())
        if m is None or "/" in name:
            raise HostError(f"Refusing entry point {name!r} = {spec!r}", code="host.wheel")
        script = root / BIN / name
        script.write_text(_script(m.group(1), m.group(2)))
        os.chmod(script, 0o755)  # noqa: S103 - a program in /usr/bin
    return tuple(sorted(scripts))
