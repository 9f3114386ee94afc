# SPDX-License-Identifier: MIT
"""The block index (``NAME.blocks``): a strong hash of every 4 KiB block of one published file.

What it trusts: nothing.  The publisher writes an index next to each payload; the agent in the
update VM fetches it to find blocks of a new image that the previous version's files already hold,
and downloads only the rest.  The index is NOT listed in ``SHA256SUMS`` and the host never reads
it: whatever the agent assembles is hashed whole against the signed manifest, by the agent before
the rename and by the host's judge again, so a wrong or hostile index can only waste the VM's time.

Format (version 1; integers big-endian)::

    offset  size  field
    0       8     magic  b"AIRBLKS1"
    8       4     block size in bytes: a power of two from 512 to 1 MiB (the publisher: 4096)
    12      1     digest length L in bytes, 8..32 (the publisher: 16)
    13      1     digest algorithm: 1 = SHA-256 truncated to its first L bytes
    14      2     reserved, zero
    16      8     size of the file in bytes
    24      32    SHA-256 of the whole file (binds the index to one manifest entry)
    56      n*L   digest of each block, in file order; n = ceil(size / block size), and the last
                  block is hashed as it is (short, not padded)

The file is exactly ``56 + n*L`` bytes.  With 4 KiB blocks and 16-byte digests the index is
0.39 % of the image.  ``parse()`` returns a ``BlockIndex`` or raises ``BlockIndexError``; it checks
the size before anything is allocated, so a caller can bound the bytes it reads by the file size
the header announces (``expected_bytes``).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from airlock.errors import BlockIndexError

MAGIC = b"AIRBLKS1"
SUFFIX = ".blocks"
BLOCK_BYTES = 4096
DIGEST_BYTES = 16
ALGORITHM_SHA256 = 1
MIN_BLOCK_BYTES = 512
MAX_BLOCK_BYTES = 1 << 20
MIN_DIGEST_BYTES = 8
_HEADER = struct.Struct(">8sIBBHQ32s")
HEADER_BYTES = _HEADER.size  # 56


def index_name(name: str) -> str:
    """The index's file name next to the payload ``name``."""
    return name + SUFFIX


def block_digest(block: bytes | bytearray | memoryview, digest_bytes: int = DIGEST_BYTES) -> bytes:
    """The index digest of one block (SHA-256, truncated)."""
    return hashlib.sha256(block).digest()[:digest_bytes]


def block_count(file_bytes: int, block_bytes: int) -> int:
    """How many blocks a file of ``file_bytes`` has."""
    return -(-file_bytes // block_bytes)


def expected_bytes(file_bytes: int, block_bytes: int, digest_bytes: int) -> int:
    """The exact size of an index for a file of ``file_bytes``."""
    return HEADER_BYTES + block_count(file_bytes, block_bytes) * digest_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """The fixed part of an index."""

    block_bytes: int
    digest_bytes: int
    file_bytes: int
    sha256: str  # lowercase hex

    @property
    def blocks(self) -> int:
        """Number of blocks of the file."""
        return block_count(self.file_bytes, self.block_bytes)

    @property
    def index_bytes(self) -> int:
        """The exact size of the whole index."""
        return expected_bytes(self.file_bytes, self.block_bytes, self.digest_bytes)


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockIndex:
    """A parsed index: the header and the concatenated block digests."""

    header: Header
    digests: bytes

    def digest(self, i: int) -> bytes:
        """The digest of block ``i``."""
        size = self.header.digest_bytes
        return self.digests[i * size : (i + 1) * size]

    def block_range(self, i: int) -> tuple[int, int]:
        """The byte range ``[start, end)`` of block ``i`` in the file."""
        start = i * self.header.block_bytes
        return start, min(start + self.header.block_bytes, self.header.file_bytes)


def parse_header(raw: bytes, *, max_file_bytes: int) -> Header:
    """Parse and check the first ``HEADER_BYTES`` of an index.

    Raises:
        BlockIndexError: short, wrong magic or algorithm, sizes out of range, reserved bits set.
    """
    if len(raw) < HEADER_BYTES:
        raise BlockIndexError(f"Block index too short: {len(raw)} bytes")
    magic, block, digest, algorithm, reserved, size, sha = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise BlockIndexError("Block index has an unknown format (magic)")
    if algorithm != ALGORITHM_SHA256 or reserved != 0:
        raise BlockIndexError(f"Block index uses unknown algorithm {algorithm} or flags")
    if block & (block - 1) or not MIN_BLOCK_BYTES <= block <= MAX_BLOCK_BYTES:
        raise BlockIndexError(f"Block index has an unusable block size {block}")
    if not MIN_DIGEST_BYTES <= digest <= 32:
        raise BlockIndexError(f"Block index has an unusable digest length {digest}")
    if size > max_file_bytes:
        raise BlockIndexError(f"Block index announces {size} bytes, limit {max_file_bytes}")
    return Header(block_bytes=block, digest_bytes=digest, file_bytes=size, sha256=sha.hex())


def parse(raw: bytes, *, max_file_bytes: int) -> BlockIndex:
    """Parse a whole index.

    Raises:
        BlockIndexError: a bad header, or a size other than the header implies.
    """
    header = parse_header(raw, max_file_bytes=max_file_bytes)
    if len(raw) != header.index_bytes:
        raise BlockIndexError(
            f"Block index is {len(raw)} bytes, its header implies {header.index_bytes}"
        )
    return BlockIndex(header=header, digests=bytes(raw[HEADER_BYTES:]))


class Builder:
    """Builds an index from a file's bytes fed in order (any chunk sizes)."""

    def __init__(self, block_bytes: int = BLOCK_BYTES, digest_bytes: int = DIGEST_BYTES) -> None:
        self._block = block_bytes
        self._digest_bytes = digest_bytes
        self._digests = bytearray()
        self._pending = bytearray()
        self._size = 0
        self._sha = hashlib.sha256()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed the next bytes of the file."""
        view = memoryview(data)
        self._size += len(view)
        self._sha.update(view)
        block, size = self._block, self._digest_bytes
        if self._pending:
            take = min(block - len(self._pending), len(view))
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) < block:
                return
            self._digests += hashlib.sha256(self._pending).digest()[:size]
            self._pending.clear()
        whole = len(view) - len(view) % block
        sha256 = hashlib.sha256
        for start in range(0, whole, block):
            self._digests += sha256(view[start : start + block]).digest()[:size]
        self._pending += view[whole:]

    @property
    def sha256(self) -> str:
        """SHA-256 (hex) of the bytes fed so far."""
        return self._sha.hexdigest()

    def finish(self) -> bytes:
        """The index bytes (the builder is spent afterwards)."""
        if self._pending:
            self._digests += hashlib.sha256(self._pending).digest()[: self._digest_bytes]
            self._pending.clear()
        header = _HEADER.pack(
            MAGIC,
            self._block,
            self._digest_bytes,
            ALGORITHM_SHA256,
            0,
            self._size,
            self._sha.digest(),
        )
        return header + bytes(self._digests)


def build(
    data: bytes, *, block_bytes: int = BLOCK_BYTES, digest_bytes: int = DIGEST_BYTES
) -> bytes:
    """The index of ``data`` (tests and small files)."""
    builder = Builder(block_bytes, digest_bytes)
    builder.update(data)
    return builder.finish()
