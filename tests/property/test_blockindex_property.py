# SPDX-License-Identifier: MIT
"""Property tests of airlock.formats.blockindex: parsing never crashes, building round-trips."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from airlock.errors import BlockIndexError
from airlock.formats import blockindex


@given(st.binary(max_size=3 * 4096 + 100), st.sampled_from([512, 4096]), st.integers(8, 32))
def test_build_then_parse_round_trips(data: bytes, block: int, digest: int) -> None:
    raw = blockindex.build(data, block_bytes=block, digest_bytes=digest)
    index = blockindex.parse(raw, max_file_bytes=1 << 40)
    assert index.header.file_bytes == len(data)
    assert index.header.sha256 == hashlib.sha256(data).hexdigest()
    pieces = [data[slice(*index.block_range(i))] for i in range(index.header.blocks)]
    assert b"".join(pieces) == data
    assert all(index.digest(i) == hashlib.sha256(p).digest()[:digest] for i, p in enumerate(pieces))


@given(st.binary(max_size=400))
def test_parse_returns_an_index_or_raises_block_index_error(raw: bytes) -> None:
    try:
        index = blockindex.parse(raw, max_file_bytes=1 << 20)
    except BlockIndexError:
        return
    assert len(raw) == index.header.index_bytes


@given(st.binary(min_size=56, max_size=56), st.binary(max_size=200))
def test_parse_of_any_header_never_crashes(header: bytes, rest: bytes) -> None:
    raw = blockindex.MAGIC + header[8:] + rest
    try:
        blockindex.parse(raw, max_file_bytes=1 << 30)
    except BlockIndexError:
        pass
