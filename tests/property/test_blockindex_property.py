# SPDX-License-Identifier: MIT
"""Property tests of airlock.formats.blockindex: parsing never crashes, building round-trips."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from airlock.errors import BlockIndexError
from airlock.formats import blockindex


@given(
    st.binary(max_size=6 * 4096 + 100),
    st.sampled_from([(512, 64), (4096, 1024), (4096, 4096)]),
    st.integers(1, 20),
)
def test_build_then_parse_round_trips(data: bytes, sizes: tuple[int, int], group: int) -> None:
    block, sub = sizes
    raw = blockindex.build(data, block_bytes=block, sub_bytes=sub, group_blocks=group)
    index = blockindex.parse(raw, max_file_bytes=1 << 40)
    h = index.header
    assert (h.file_bytes, h.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    pieces = [data[slice(*h.block_range(i))] for i in range(h.blocks)]
    assert b"".join(pieces) == data
    assert all(index.block(i) == blockindex.digest(p, 8) for i, p in enumerate(pieces))


@given(st.binary(max_size=400))
def test_parse_returns_an_index_or_raises_block_index_error(raw: bytes) -> None:
    try:
        index = blockindex.parse(raw, max_file_bytes=1 << 20)
    except BlockIndexError:
        return
    assert len(raw) == index.header.index_bytes


@given(st.binary(min_size=56, max_size=56), st.binary(max_size=200))
def test_parse_of_any_header_never_crashes(header: bytes, rest: bytes) -> None:
    try:
        blockindex.parse(blockindex.MAGIC + header + rest, max_file_bytes=1 << 30)
    except BlockIndexError:
        pass
