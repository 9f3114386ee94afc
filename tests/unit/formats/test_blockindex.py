# SPDX-License-Identifier: MIT
"""airlock.formats.blockindex: the per-image block index the agent uses for delta downloads."""

from __future__ import annotations

import hashlib
import os
import struct

import pytest

from airlock.errors import BlockIndexError
from airlock.formats import blockindex

LIMIT = 1 << 40


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096, 3 * 4096 + 17])
def test_index_holds_one_truncated_sha256_per_block(size: int) -> None:
    data = os.urandom(size)
    raw = blockindex.build(data)
    index = blockindex.parse(raw, max_file_bytes=LIMIT)
    assert index.header.file_bytes == size
    assert index.header.sha256 == hashlib.sha256(data).hexdigest()
    assert index.header.blocks == -(-size // 4096)
    assert len(raw) == blockindex.HEADER_BYTES + 16 * index.header.blocks
    for i in range(index.header.blocks):
        start, end = index.block_range(i)
        assert index.digest(i) == hashlib.sha256(data[start:end]).digest()[:16]


_DATA = bytes(range(256)) * 90 + b"tail"
_REFERENCE = blockindex.build(_DATA)


def test_chunked_feeding_matches_one_call() -> None:
    for step in (1, 7, 4095, 4096, 4097, 10_000):
        builder = blockindex.Builder()
        for i in range(0, len(_DATA), step):
            builder.update(_DATA[i : i + step])
        assert builder.finish() == _REFERENCE, step


def test_overhead_is_under_half_a_percent_of_the_file() -> None:
    assert blockindex.expected_bytes(1 << 30, 4096, 16) / (1 << 30) < 0.005


def _header(**kw: int | bytes) -> bytes:
    fields = {
        "magic": blockindex.MAGIC,
        "block": 4096,
        "digest": 16,
        "algorithm": 1,
        "reserved": 0,
        "size": 4096,
        "sha": bytes(32),
    }
    fields.update(kw)
    return struct.pack(">8sIBBHQ32s", *fields.values())


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "too short"),
        (_header()[:55], "too short"),
        (_header(magic=b"AIRBLKS2") + bytes(16), "magic"),
        (_header(algorithm=2) + bytes(16), "unknown algorithm"),
        (_header(reserved=1) + bytes(16), "unknown algorithm"),
        (_header(block=4095) + bytes(16), "block size"),
        (_header(block=256) + bytes(16), "block size"),
        (_header(block=1 << 21) + bytes(16), "block size"),
        (_header(digest=7) + bytes(7), "digest length"),
        (_header(digest=33) + bytes(33), "digest length"),
        (_header(size=LIMIT + 1), "announces"),
        (_header(), "header implies"),  # one digest missing
        (_header() + bytes(17), "header implies"),  # one byte too many
    ],
)
def test_malformed_index_is_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(BlockIndexError, match=reason) as info:
        blockindex.parse(raw, max_file_bytes=LIMIT)
    assert info.value.code == "fetch.index"


def test_index_name_appends_the_suffix() -> None:
    assert blockindex.index_name("Spectrum_2.efi") == "Spectrum_2.efi.blocks"
