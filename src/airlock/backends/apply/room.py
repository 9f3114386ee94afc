# SPDX-License-Identifier: MIT
"""How large a payload each host transfer's target can take, measured before the judge hashes.

A payload larger than its target can never be installed, so hashing it is wasted work the VM
chose for the host (issue 15 point 6, docs/adr/0160).  This module measures, with the host's own
(trusted) definitions, disk and ``$BOOT``:

* a ``partition`` target: the size of the **largest** partition on the target disk whose type is
  ``MatchPartitionType=`` (``Path=`` names the disk or image; ``auto`` is the whole disk behind
  ``/``, as sysupdate finds it).  sysupdate picks the slot it writes among those partitions; with
  Spectrum's equal A/B slots the largest is the inactive slot's size, and never refusing what fits
  some candidate slot keeps the check from refusing an installable release.
* a ``regular-file`` target: the free space (``statvfs`` ``f_bfree``: sysupdate runs as root,
  which may use reserved blocks) of its directory, plus the bytes of the instances already
  there that sysupdate may vacuum to make room (files matching its target patterns).

A target that cannot be measured (``Path=auto`` on a root that is not on a GPT disk, a partition
type name without a known GUID, no ``[apply] esp_path`` for a ``$BOOT`` target) gets no ``Room``,
with a warning in the log: it stays bounded by ``[limits] max_file_bytes``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import struct
from collections.abc import Sequence
from pathlib import Path

from airlock.errors import HostError
from airlock.formats import gpt
from airlock.formats.definitions import PathRelativeTo, ResourceType, Transfer
from airlock.text import display
from airlock.trusted.policy import Room

logger = logging.getLogger(__name__)

BLKSSZGET = 0x1268  # <linux/fs.h>: logical sector size of a block device
FILE_SECTOR = 512  # a disk image file: the sector size sfdisk and sysupdate assume


def _sector(fd: int, st: os.stat_result) -> int:
    if not stat.S_ISBLK(st.st_mode):
        return FILE_SECTOR
    raw = fcntl.ioctl(fd, BLKSSZGET, struct.pack("i", 0))
    return int(struct.unpack("i", raw)[0])


def read_partitions(disk: Path) -> tuple[gpt.Partition, ...]:
    """The used GPT entries of ``disk`` (a block device or an image file).

    Raises:
        HostError: ``host.gpt`` (no readable GPT) or ``host.read``.
    """
    try:
        fd = os.open(disk, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise HostError(
            f"Failed to open {display(os.fspath(disk))}: {exc.strerror}", code="host.read"
        ) from exc
    try:
        sector = _sector(fd, os.fstat(fd))
        head = gpt.header(os.pread(fd, sector, sector))
        table = os.pread(fd, head.table_bytes, head.entries_lba * sector)
        return gpt.partitions(head, table, sector=sector)
    except OSError as exc:
        raise HostError(
            f"Failed to read the partition table of {display(os.fspath(disk))}: {exc.strerror}",
            code="host.read",
        ) from exc
    finally:
        os.close(fd)


def root_disk(sysfs: Path = Path("/sys")) -> Path | None:
    """The whole disk behind ``/`` (then ``/usr``), through device-mapper layers; else ``None``."""
    for mount in ("/", "/usr"):
        dev = os.stat(mount).st_dev
        node = sysfs / "dev/block" / f"{os.major(dev)}:{os.minor(dev)}"
        for _ in range(8):  # dm-verity over a partition is two levels; stop on anything odd
            slaves = sorted((node / "slaves").glob("*")) if (node / "slaves").is_dir() else []
            if len(slaves) != 1:
                break
            node = sysfs / "class/block" / slaves[0].name
        if not node.exists():
            continue
        real = node.resolve()
        disk = real.parent if (real / "partition").exists() else real
        if (disk / "dev").exists():
            return Path("/dev") / disk.name
    return None


def _partition_room(t: Transfer, machine: str) -> Room | None:
    ptype = t.target.match_partition_type
    guid = gpt.type_guid(ptype, machine=machine) if ptype else None
    if guid is None:
        logger.warning("room of %s unknown: partition type %s has no known GUID", t.name, ptype)
        return None
    disk = root_disk() if t.target.path == "auto" else Path(t.target.path)
    if disk is None:
        logger.warning("room of %s unknown: / is not on a whole disk", t.name)
        return None
    try:
        sizes = [p.size for p in read_partitions(disk) if p.type_guid == guid]
    except HostError as exc:
        logger.warning("room of %s unknown: %s", t.name, exc.message)
        return None
    if not sizes:
        logger.warning("room of %s unknown: no %s partition on %s", t.name, ptype, disk)
        return None
    where = f"the largest {ptype} partition of {display(os.fspath(disk))}"
    return Room(transfer=t.name, bytes=max(sizes), where=where)


def _file_room(t: Transfer, esp: Path | None) -> Room | None:
    relative = t.target.path_relative_to
    if relative is PathRelativeTo.ROOT:
        directory = Path(t.target.path)
    elif esp is not None:
        directory = esp / t.target.path.lstrip("/")
    else:
        logger.warning("room of %s unknown: [apply] esp_path is not set", t.name)
        return None
    try:
        vfs = os.statvfs(directory)
        old = 0
        with os.scandir(directory) as entries:
            for e in entries:
                if e.is_file(follow_symlinks=False) and any(
                    p.match(e.name) is not None for p in t.target.match_patterns
                ):
                    old += e.stat(follow_symlinks=False).st_size
    except OSError as exc:
        logger.warning("room of %s unknown: %s: %s", t.name, directory, exc.strerror)
        return None
    free = vfs.f_bfree * vfs.f_frsize
    where = f"free space in {display(os.fspath(directory))} ({free} bytes) and its {old} bytes of"
    where += " older instances"
    return Room(transfer=t.name, bytes=free + old, where=where)


def measure(
    transfers: Sequence[Transfer], *, esp: Path | None, machine: str | None = None
) -> tuple[Room, ...]:
    """The ``Room`` of every enabled transfer whose target can be measured (module docstring)."""
    arch = machine if machine is not None else os.uname().machine
    out = []
    for t in transfers:
        if not t.enabled:
            continue
        room = None
        if t.target.type is ResourceType.PARTITION:
            room = _partition_room(t, arch)
        elif t.target.type is ResourceType.REGULAR_FILE:
            room = _file_room(t, esp)
        if room is not None:
            out.append(room)
    return tuple(out)
