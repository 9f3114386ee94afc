# SPDX-License-Identifier: MIT
"""The update VM's side of pipeline tests: a tree planted in the share while the fetcher runs.

``update(world, plant)`` runs the real ``airlock update --json`` CLI with the sandbox fetcher, whose
command (``WAIT_COMMAND``) marks itself ready in its share and waits for the test's go-ahead.
Meanwhile the test, as the host's root, empties the share and builds the tree there with
``plant(share)`` — so it can make what a VM on virtio-fs can make but an unprivileged sandbox
cannot (device nodes, setuid files of another owner).  This is STYLE's "FakeFetcher that plants a
tree", except that everything around it is real: the lock, the btrfs staging, the sandbox and its
kill, the freeze, the judge, systemd-sysupdate and the state file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support import schemas

from .world import World

READY = ".airlock-test-ready"
GO = ".airlock-test-go"
WAIT_COMMAND = (
    "/bin/sh",
    "-c",
    f"touch /host/updates/{READY} && "
    f"while [ ! -e /host/updates/{GO} ]; do sleep 0.02; done; "
    f"rm -f /host/updates/{READY} /host/updates/{GO}",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One finished ``airlock update --json`` run."""

    returncode: int
    stdout: str
    stderr: str
    events: list[dict[str, object]]
    planted: bool

    @property
    def final(self) -> dict[str, object]:
        """The last JSON event (``result`` or ``error``)."""
        return self.events[-1] if self.events else {}

    def steps(self) -> list[object]:
        """The steps that started, in order."""
        return [e["step"] for e in self.events if e.get("event") == "step-started"]


def empty(share: Path) -> None:
    """Remove everything in ``share`` (what a VM may do to its own share)."""
    for entry in os.scandir(share):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def update(world: World, plant: Callable[[Path], object], *args: str, timeout: float = 180) -> Run:
    """Run ``airlock update --json ARGS``; plant the share's contents while the fetcher waits.

    ``world``'s config must run ``WAIT_COMMAND`` (``World.write_config(WAIT_COMMAND, ...)``).
    """
    share = world.staging / "shared"
    child = subprocess.Popen(
        [sys.executable, "-m", "airlock", "update", str(world.staging), "--json",
         "--config", str(world.config), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    planted = False
    try:
        deadline = time.monotonic() + 60
        while child.poll() is None and time.monotonic() < deadline:
            if os.path.lexists(share / READY):
                empty(share)
                plant(share)
                (share / GO).touch()
                planted = True
                break
            time.sleep(0.01)
        stdout, stderr = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    events = schemas.check_output(("update", "--json"), stdout)
    return Run(
        returncode=child.returncode, stdout=stdout, stderr=stderr, events=events, planted=planted
    )
