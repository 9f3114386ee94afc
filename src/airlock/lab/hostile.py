# SPDX-License-Identifier: MIT
"""Hostile update-VM behaviours for the lab (run INSIDE the sandbox as the fetch command).

``python -m airlock.lab.hostile NAME --share /host --evidence DIR`` plays one attack against the
host: it writes into ``<share>/updates`` what a compromised VM could write.  ``DIR`` holds releases
the lab prepared (``next/`` the genuine next release, ``old/`` an older validly signed one,
``expired/`` a validly signed one whose BEST-BEFORE date has passed).  Nothing here is trusted by
the host; the point is to show that the host refuses each attack and leaves the disk unchanged.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from airlock.formats import blockindex

ATTACKS = {
    "symlink": "plant a symlink to a host file under a payload's name",
    "tampered": "flip one byte of the root image after download (same size, same name)",
    "rollback": "replace the release with an older, validly signed one",
    "expired": "serve a validly signed manifest whose BEST-BEFORE date has passed",
    "never-exits": "never power off (the host must kill it at the timeout)",
}


def _clear(updates: Path) -> None:
    for entry in os.scandir(updates):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def _copy_release(src: Path, updates: Path) -> None:
    """Everything a genuine download leaves: the release without its block indexes."""
    _clear(updates)
    for item in sorted(src.iterdir()):
        if not item.name.endswith(blockindex.SUFFIX):
            shutil.copyfile(item, updates / item.name)


def _root_file(updates: Path) -> Path:
    roots = sorted(p for p in updates.iterdir() if p.name.endswith(".root"))
    if not roots:
        raise SystemExit("hostile: no root image to tamper with")
    return roots[-1]


def play(name: str, updates: Path, evidence: Path) -> None:
    """Write attack ``name`` into ``updates``."""
    if name == "never-exits":
        while True:
            time.sleep(3600)
    if name == "rollback":
        _copy_release(evidence / "old", updates)
    elif name == "expired":
        _copy_release(evidence / "expired", updates)
    else:
        _copy_release(evidence / "next", updates)
        root = _root_file(updates)
        if name == "tampered":
            with open(root, "r+b") as fh:
                fh.seek(root.stat().st_size // 2)
                byte = fh.read(1)
                fh.seek(-1, os.SEEK_CUR)
                fh.write(bytes([byte[0] ^ 0xFF]))
        elif name == "symlink":
            root.unlink()
            os.symlink("/etc/passwd", root)
        else:
            raise SystemExit(f"hostile: unknown attack {name!r}")
    os.sync()


def main(argv: list[str] | None = None) -> int:
    """Entry point inside the sandbox."""
    parser = argparse.ArgumentParser(prog="airlock.lab.hostile")
    parser.add_argument("attack", choices=sorted(ATTACKS))
    parser.add_argument("--share", type=Path, default=Path("/host"))
    parser.add_argument("--evidence", type=Path, required=True)
    args = parser.parse_args(argv)
    play(args.attack, args.share / "updates", args.evidence)
    print(f"hostile: played {args.attack}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
