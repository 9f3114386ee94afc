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


def _sha(data: bytes, n: int) -> bytes:
    return hashlib.sha256(data).digest()[:n]


@pytest.mark.parametrize("size", [0, 1, 1023, 1025, 4095, 4096, 4097, 17 * 4096, 17 * 4096 + 5])
def test_index_holds_group_block_and_sub_block_digests(size: int) -> None:
    data = os.urandom(size)
    raw = blockindex.build(data)
    index = blockindex.parse(raw, max_file_bytes=LIMIT)
    h = index.header
    assert (h.file_bytes, h.sha256) == (size, hashlib.sha256(data).hexdigest())
    assert (h.block_bytes, h.sub_bytes, h.group_blocks) == (4096, 1024, 16)
    assert (h.blocks, h.subs, h.groups) == (-(-size // 4096), -(-size // 1024), -(-size // 65536))
    assert len(raw) == 64 + (h.groups + h.blocks) * 8 + h.subs * 4 == h.index_bytes
    for i in range(h.blocks):
        start, end = h.block_range(i)
        assert index.block(i) == _sha(data[start:end], 8)
    for k in range(h.subs):
        assert index.sub(k) == _sha(data[k * 1024 : (k + 1) * 1024], 4)
    for g in range(h.groups):
        first, end = h.group_range(g)
        assert index.group(g) == _sha(b"".join(index.block(i) for i in range(first, end)), 8)


_DATA = bytes(range(256)) * 300 + b"tail"
_REFERENCE = blockindex.build(_DATA)


@pytest.mark.parametrize("step", [1, 7, 1023, 4095, 4096, 4097, 10_000])
def test_chunked_feeding_matches_one_call(step: int) -> None:
    builder = blockindex.Builder()
    for i in range(0, len(_DATA), step):
        builder.update(_DATA[i : i + step])
    assert builder.sha256 == hashlib.sha256(_DATA).hexdigest()
    assert builder.finish() == _REFERENCE


def test_index_is_under_one_percent_of_the_file() -> None:
    header = blockindex.parse_header(blockindex.build(b"x" * 4096), max_file_bytes=LIMIT)
    big = blockindex.Header(
        block_bytes=header.block_bytes,
        sub_bytes=header.sub_bytes,
        group_blocks=header.group_blocks,
        digest_bytes=header.digest_bytes,
        sub_digest_bytes=header.sub_digest_bytes,
        file_bytes=1 << 30,
        sha256="",
    )
    assert big.index_bytes / (1 << 30) < 0.0061


def _header(**kw: object) -> bytes:
    fields: dict[str, object] = {
        "magic": blockindex.MAGIC, "block": 4096, "sub": 1024, "group": 16, "dig": 8,
        "subdig": 4, "algorithm": 1, "reserved": bytes(3), "size": 4096, "sha": bytes(32),
    }  # fmt: skip
    fields.update(kw)
    return struct.pack(">8sIIHBBB3sQ32s", *fields.values())


_ONE_BLOCK = 8 + 8 + 4 * 4  # one group, one block, four sub-blocks


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "too short"),
        (_header()[:63], "too short"),
        (_header(magic=b"AIRBLKS2") + bytes(_ONE_BLOCK), "magic"),
        (_header(algorithm=2) + bytes(_ONE_BLOCK), "unknown algorithm"),
        (_header(reserved=b"\0\0\1") + bytes(_ONE_BLOCK), "unknown algorithm"),
        (_header(block=4095) + bytes(_ONE_BLOCK), "block sizes"),
        (_header(block=256) + bytes(_ONE_BLOCK), "block sizes"),
        (_header(block=1 << 21) + bytes(_ONE_BLOCK), "block sizes"),
        (_header(sub=8192) + bytes(_ONE_BLOCK), "block sizes"),
        (_header(sub=32) + bytes(_ONE_BLOCK), "block sizes"),
        (_header(group=0) + bytes(_ONE_BLOCK), "group size or digest"),
        (_header(dig=7) + bytes(_ONE_BLOCK), "group size or digest"),
        (_header(subdig=1) + bytes(_ONE_BLOCK), "group size or digest"),
        (_header(size=LIMIT + 1), "announces"),
        (_header(), "header implies"),
        (_header() + bytes(_ONE_BLOCK + 1), "header implies"),
        (_header() + bytes(_ONE_BLOCK), "wrong digest for group 0"),
    ],
)
def test_malformed_index_is_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(BlockIndexError, match=reason) as info:
        blockindex.parse(raw, max_file_bytes=LIMIT)
    assert info.value.code == "fetch.index"


def test_index_name_appends_the_suffix() -> None:
    assert blockindex.index_name("Spectrum_2.efi") == "Spectrum_2.efi.blocks"
