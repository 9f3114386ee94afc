# SPDX-License-Identifier: MIT
"""Staging backends: where the VM writes (``shared``) and the frozen copy the host judges.

The staging directory belongs to the host (mode 0700).  ``shared`` persists between runs so that a
no-op run re-downloads nothing; everything in it is untrusted.  The snapshot is taken only when the
VM can no longer write, made truly read-only, synced, judged and applied from, then deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class CleanReport:
    """What ``clean_share`` removed, as counts (names are untrusted and not kept).

    ``reset``: ``shared`` held more than regular files and was deleted and recreated empty
    (nothing counted, nothing kept).
    """

    removed: int
    kept: int
    reset: bool = False


class Staging(Protocol):
    """Owns the staging directory, the ``shared`` subvolume and the snapshot."""

    @property
    def share(self) -> Path:
        """The VM-writable ``shared`` subvolume."""

    @property
    def snapshot_path(self) -> Path:
        """Where the snapshot lives while it exists."""

    def prepare(self) -> None:
        """Create or check the staging directory and ``shared`` (and its quota).

        Raises:
            HostError: not btrfs, wrong type or mode, or a btrfs command failed.
        """

    def remove_stale(self) -> int:
        """Remove mounts and a snapshot left by a crashed earlier run; return how many things."""

    def clean_share(self) -> CleanReport:
        """Remove leftovers of earlier VM runs from ``shared`` without following anything."""

    def snapshot(self) -> Path:
        """Take a writable snapshot of ``shared`` (the VM must already be unable to write)."""

    def drop(self, snapshot: Path, names: Sequence[str]) -> int:
        """Unlink the given single-component names from the writable snapshot."""

    def copy_signature(self, snapshot: Path, source: str, target: str, *, max_bytes: int) -> bool:
        """Copy signature file ``source`` to an absent ``target`` in the writable snapshot."""

    def make_read_only(self, snapshot: Path) -> None:
        """Turn the snapshot into a read-only subvolume and check that it is one."""

    def sync(self, snapshot: Path) -> None:
        """``syncfs`` the filesystem holding the snapshot."""

    def delete_snapshot(self) -> bool:
        """Delete the snapshot if it exists (unmounting anything on it first)."""
