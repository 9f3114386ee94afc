# SPDX-License-Identifier: MIT
"""fsutil.mount_points / mounts_below: the one reader of /proc/self/mountinfo."""

from __future__ import annotations

from pathlib import Path

from airlock import fsutil

MOUNTINFO = (
    b"22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    b"40 22 0:35 / /srv/staging rw - btrfs /dev/loop0 rw\n"
    b"41 40 0:35 /shared /srv/staging/shared rw - btrfs /dev/loop0 rw\n"
    b"42 22 0:36 / /srv/staging\\040two rw - tmpfs tmpfs rw\n"
    b"43 22 0:37 / /srv/a\\134b\\011c\\012d rw - tmpfs tmpfs rw\n"
    b"44 22 0:38 / /srv/caf\xc3\xa9\\777 rw - tmpfs tmpfs rw\n"
)


def test_octal_escapes_are_decoded() -> None:
    points = fsutil.mount_points(MOUNTINFO)
    assert "/srv/staging two" in points
    assert "/srv/a\\b\tc\nd" in points
    assert "/srv/café\\777" in points  # not an octal escape of a byte: kept as written


def test_mounts_below_is_deepest_first_and_does_not_match_a_mere_prefix() -> None:
    found = fsutil.mounts_below(Path("/srv/staging"), mountinfo=MOUNTINFO)
    assert found == ["/srv/staging/shared", "/srv/staging"]


def test_this_namespace_has_a_root_mount() -> None:
    assert "/" in fsutil.mount_points()
