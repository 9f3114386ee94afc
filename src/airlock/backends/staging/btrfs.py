# SPDX-License-Identifier: MIT
"""BtrfsStaging: the staging directory on btrfs, the persistent ``shared`` subvolume, the snapshot.

Trusts: the staging path from the host config and the btrfs CLI.  Refuses: a staging directory not
on btrfs, a symlink or non-directory where ``shared``/the staging directory should be, a ``shared``
that is not a subvolume.  Everything inside ``shared`` is untrusted: it is touched only relative to
a directory fd, with ``unlinkat`` on one level, never following a link nor walking into a
directory (a ``shared`` holding more than regular files is deleted and recreated in the kernel),
and names are never echoed without ``text.display``.  The snapshot is made a true btrfs read-only
subvolume (the ``ro`` property), not only mounted read-only (design.md#weakness-9).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from airlock import fsutil, proc, settings
from airlock.backends.staging import CleanReport
from airlock.errors import CommandFailed, HostError
from airlock.formats import names
from airlock.settings import setting
from airlock.text import display

logger = logging.getLogger(__name__)

BTRFS_SUPER_MAGIC = 0x9123683E
SUBVOL_INO = 256
BTRFS = "/usr/bin/btrfs"
UMOUNT = "/usr/bin/umount"
_TIMEOUT_S = 120.0
#: Entries of ``shared`` looked at before giving up and recreating it (the judge's default
#: ``Limits.max_entries``: a share holding more would be refused anyway).
MAX_SHARE_ENTRIES = 4096
# "ID 257 gen 9 parent 5 top level 5 path shared" (btrfs subvolume list -p)
_LIST_LINE = re.compile(r"^ID (\d+) gen \d+ parent (\d+) ")
_libc = ctypes.CDLL(None, use_errno=True)
_MIB = 1 << 20
_SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX


def _quota(value: object) -> int | None:
    if value in (0, None):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < _MIB:
        raise settings.Invalid("must be a byte count of at least 1 MiB (0 for none)")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class StagingConfig:
    """``[staging]``: how the staging directory is set up."""

    SECTION: ClassVar[str] = "staging"

    qgroup_limit_bytes: int | None = setting(
        None,
        kind=settings.Kind(
            parse=_quota, dump=lambda v: v, metavar="BYTES", doc="byte count ≥ 1 MiB"
        ),
        help="btrfs qgroup cap on what the VM can write into shared (0 or unset: none)",
    )


def _fs_type(path: Path) -> int:
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on x86-64
    if _libc.statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise HostError(
            f"Failed to statfs {os.fspath(path)}: {os.strerror(err)}", code="host.staging"
        )
    return int(ctypes.c_long.from_buffer(buf).value) & 0xFFFFFFFF


def is_safe_name(name: str) -> bool:
    """Spectrum's name rule (``formats.names``), on the raw bytes of a directory entry."""
    return names.is_safe(os.fsencode(name))


def _is_manifest_or_signature(name: str) -> bool:
    return name == "SHA256SUMS" or name.startswith("SHA256SUMS.")


def _regular_entries(dir_fd: int, bound: int) -> list[tuple[str, os.stat_result]] | None:
    """The entries of ``dir_fd`` if all are regular files and at most ``bound``, else ``None``."""
    out: list[tuple[str, os.stat_result]] = []
    with os.scandir(dir_fd) as it:
        for entry in it:
            if len(out) >= bound:
                return None
            st = os.stat(entry.name, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                return None
            out.append((entry.name, st))
    return out


def _btrfs(*args: str | os.PathLike[str], max_output: int = _MIB) -> proc.Completed:
    try:
        return proc.run([BTRFS, *args], timeout=_TIMEOUT_S, max_output=max_output)
    except CommandFailed as exc:
        raise HostError(f"Failed to run btrfs: {exc.message}", code="host.btrfs") from exc


class BtrfsStaging:
    """The staging directory on btrfs.  Host paths only; see the module docstring."""

    def __init__(self, staging_dir: Path, config: StagingConfig | None = None) -> None:
        self._dir = staging_dir
        self._config = config or StagingConfig()

    @property
    def share(self) -> Path:
        """The VM-writable ``shared`` subvolume."""
        return self._dir / "shared"

    @property
    def snapshot_path(self) -> Path:
        """The snapshot's path."""
        return self._dir / "snapshot"

    # -- prepare ----------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create or check the staging directory and ``shared``; apply the quota if configured.

        Raises:
            HostError: not btrfs, a symlink or wrong type, or a btrfs command failed.
        """
        d = self._dir
        try:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = os.lstat(d)
        except OSError as exc:
            raise HostError(
                f"Failed to create staging directory {os.fspath(d)}: {exc.strerror}",
                code="host.staging",
            ) from exc
        if not stat.S_ISDIR(st.st_mode):
            raise HostError(
                f"Refusing staging directory {os.fspath(d)}: not a directory", code="host.staging"
            )
        if st.st_uid != os.geteuid():
            raise HostError(
                f"Refusing staging directory {os.fspath(d)}: not owned by us", code="host.staging"
            )
        if _fs_type(d) != BTRFS_SUPER_MAGIC:
            raise HostError(
                f"Refusing staging directory {os.fspath(d)}: not on btrfs",
                code="host.not-btrfs",
                hint="the staging directory must be on a btrfs filesystem (snapshots are needed)",
            )
        os.chmod(d, 0o700)
        try:
            sst = os.lstat(self.share)
        except FileNotFoundError:
            _btrfs("subvolume", "create", "--", self.share)
            logger.debug("created subvolume %s", self.share)
        else:
            if not stat.S_ISDIR(sst.st_mode) or sst.st_ino != SUBVOL_INO:
                raise HostError(
                    f"Refusing {os.fspath(self.share)}: exists but is not a btrfs subvolume",
                    code="host.staging",
                    hint="remove it; it is recreated on the next run",
                )
        os.chmod(self.share, 0o755)  # noqa: S103 - the sandbox uid must enter it
        if self._config.qgroup_limit_bytes is not None:
            _btrfs("quota", "enable", d)
            _btrfs("qgroup", "limit", str(self._config.qgroup_limit_bytes), self.share)

    # -- stale state ------------------------------------------------------------------------------

    def _umount_below(self, path: Path) -> int:
        count = 0
        for target in fsutil.mounts_below(path):
            try:
                proc.run([UMOUNT, "--", target], timeout=_TIMEOUT_S, share_mounts=True)
            except CommandFailed:
                proc.run([UMOUNT, "--lazy", "--", target], timeout=_TIMEOUT_S, share_mounts=True)
            count += 1
        return count

    def remove_stale(self) -> int:
        """Unmount anything on ``shared``/the snapshot and delete a leftover snapshot."""
        count = self._umount_below(self.share) + self._umount_below(self.snapshot_path)
        return count + int(self.delete_snapshot())

    def delete_snapshot(self) -> bool:
        """Delete the snapshot (subvolume, plain file or plain directory) if present."""
        snap = self.snapshot_path
        try:
            st = os.lstat(snap)
        except FileNotFoundError:
            return False
        self._umount_below(snap)
        if stat.S_ISDIR(st.st_mode) and st.st_ino == SUBVOL_INO:
            _btrfs("subvolume", "delete", "--", snap)
        elif stat.S_ISDIR(st.st_mode):
            shutil.rmtree(snap)
        else:
            os.unlink(snap)
        logger.debug("deleted stale snapshot %s", snap)
        return True

    # -- cleaning the share -----------------------------------------------------------------------

    def clean_share(self) -> CleanReport:
        """Keep only regular, singly linked files with safe names that are not manifests/signatures
        and have no set-user-ID, set-group-ID or sticky bit.

        A bounded look first: at most ``MAX_SHARE_ENTRIES`` entries, each ``lstat``-ed relative to
        the directory fd.  When all are regular files, the unwanted ones (dot-temporaries, old
        ``SHA256SUMS*``, hard links, unsafe names) are unlinked, one level, nothing followed.
        Anything else — a directory, symlink, FIFO, socket, device, nested subvolume, or more
        entries than the bound — and ``shared`` is deleted and recreated empty in the kernel
        (``_reset_share``): no walk into what the VM built, so no depth or count can crash or
        stall the host (issue #15 item 5).  The cached downloads are lost then, only after a VM
        left such things.
        """
        with fsutil.open_dir_nofollow(self.share) as fd:
            fsutil.syncfs(fd)
            # Decide on one consistent view first, so removing one hard link cannot make its
            # sibling look singly linked.
            entries = _regular_entries(fd, MAX_SHARE_ENTRIES)
            if entries is not None:
                removed = kept = 0
                for name, st in entries:
                    keep = (
                        st.st_nlink == 1
                        and not st.st_mode & _SPECIAL_BITS  # set-id bits: the judge would refuse it
                        and is_safe_name(name)
                        and not _is_manifest_or_signature(name)
                    )
                    if keep:
                        kept += 1
                        continue
                    logger.debug("cleaning %s from shared", display(name))
                    os.unlink(name, dir_fd=fd)
                    removed += 1
                os.fsync(fd)
                return CleanReport(removed=removed, kept=kept)
        self._reset_share()
        return CleanReport(removed=0, kept=0, reset=True)

    def _reset_share(self) -> None:
        """Delete ``shared`` (nested subvolumes first, by id) and create it again, empty."""
        logger.info("shared holds more than regular files: deleting and recreating it")
        for subvol_id in self._nested_subvolumes():
            _btrfs("subvolume", "delete", "--subvolid", str(subvol_id), self.share)
        _btrfs("subvolume", "delete", "--", self.share)
        _btrfs("subvolume", "create", "--", self.share)
        os.chmod(self.share, 0o755)  # noqa: S103 - the sandbox uid must enter it
        if self._config.qgroup_limit_bytes is not None:
            _btrfs("qgroup", "limit", str(self._config.qgroup_limit_bytes), self.share)

    def _nested_subvolumes(self) -> list[int]:
        """Ids of the subvolumes below ``shared``, children before parents (btrfs refuses to
        delete a subvolume that holds another).  From the kernel's list, never by a path."""
        own = int(_btrfs("inspect-internal", "rootid", "--", self.share).stdout.strip())
        parent: dict[int, int] = {}
        listing = _btrfs("subvolume", "list", "-p", self.share, max_output=16 * _MIB)
        for line in listing.stdout.decode("ascii", errors="replace").splitlines():
            m = _LIST_LINE.match(line)
            if m is not None:
                parent[int(m.group(1))] = int(m.group(2))

        def depth(subvol: int) -> int | None:
            hops = 0
            while subvol != own:
                if subvol not in parent or hops > len(parent):
                    return None
                subvol, hops = parent[subvol], hops + 1
            return hops

        below = [(d, s) for s in parent if s != own and (d := depth(s)) is not None]
        return [s for _, s in sorted(below, reverse=True)]

    # -- the snapshot -----------------------------------------------------------------------------

    def snapshot(self) -> Path:
        """Take a writable snapshot of ``shared`` at ``snapshot_path``."""
        if os.path.lexists(self.snapshot_path):
            raise RuntimeError("snapshot exists; remove_stale() was not called")
        _btrfs("subvolume", "snapshot", "--", self.share, self.snapshot_path)
        return self.snapshot_path

    def drop(self, snapshot: Path, names: Sequence[str]) -> int:
        """Unlink single-component ``names`` from the writable snapshot (never following)."""
        count = 0
        with fsutil.open_dir_nofollow(snapshot) as fd:
            for name in names:
                if not name or "/" in name or name in (".", "..") or "\0" in name:
                    raise HostError(
                        f"Refusing to drop {display(name)}: not a single name", code="host.staging"
                    )
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):  # the walk refuses directories; never walk into one
                    raise HostError(
                        f"Refusing to drop {display(name)}: a directory", code="host.staging"
                    )
                os.unlink(name, dir_fd=fd)
                count += 1
            os.fsync(fd)
        return count

    def copy_signature(self, snapshot: Path, source: str, target: str, *, max_bytes: int) -> bool:
        """Copy the signature file ``source`` to ``target`` in the writable snapshot.

        Only when ``target`` is absent and ``source`` is a regular, singly linked file of at most
        ``max_bytes``: the judge then verifies both (the same bytes), and systemd-sysupdate finds
        the name it reads.  Both names are the host's constants; nothing is followed.

        Returns:
            True when the copy was made.
        """
        with fsutil.open_dir_nofollow(snapshot) as dir_fd:
            try:
                os.stat(target, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                return False
            try:
                fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
            except OSError:
                return False
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size > max_bytes:
                    return False
                data = os.pread(fd, max_bytes + 1, 0)
            finally:
                os.close(fd)
            if len(data) > max_bytes:
                return False
            out = os.open(
                target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd
            )
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(out, view) :]
                os.fsync(out)
            finally:
                os.close(out)
        return True

    def make_read_only(self, snapshot: Path) -> None:
        """Set the btrfs ``ro`` property and read it back.

        Raises:
            HostError: the property could not be set or does not read back as true.
        """
        _btrfs("property", "set", "-ts", "--", snapshot, "ro", "true")
        out = _btrfs("property", "get", "-ts", "--", snapshot, "ro").stdout.strip()
        if out != b"ro=true":
            raise HostError(f"Failed to make {os.fspath(snapshot)} read-only", code="host.btrfs")

    def sync(self, snapshot: Path) -> None:
        """``syncfs`` the filesystem of the snapshot (dirty-page loss, threat A9)."""
        with contextlib.ExitStack() as stack:
            fd = stack.enter_context(fsutil.open_dir_nofollow(snapshot))
            fsutil.syncfs(fd)
