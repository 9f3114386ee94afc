# SPDX-License-Identifier: MIT
"""Analysis for bench/delta.py: lower bounds and zsync's byte count for one (old, new) file pair.

Nothing here is product code.  Figures, per new file:

* **aligned bound** — bytes of the new file's 4 KiB blocks whose content is not any 4 KiB-aligned
  block of the old file (the issue's lower bound: "new blocks absent from the old image");
* **any-offset bound** — the same, but a block counts as present if its bytes occur at ANY byte
  offset of the old file (what an ideal rolling-hash matcher with 4 KiB blocks could reuse);
* **zsync** — the bytes zsync's algorithm would fetch: its control file plus every block it cannot
  take from the old file.  zsync (0.6.x, ``zsyncmake`` defaults) uses 2048-byte blocks for files
  under 100 MB and 4096 above, ``seq_matches = 2`` (a block is taken from the seed only together
  with a neighbour: target blocks j and j+1 must occur back to back at some byte offset of the old
  file), and per block ``rsum_len + checksum_len`` bytes of control data (``zsyncmake``'s formulas).
  This is a model, computed exactly on content, and it is generous to zsync: real zsync also
  skips past a match (missing some overlapping ones) and sends HTTP headers per range.

"Occurs at any byte offset" is decided exactly: the old file's 64-byte chunks at 64-aligned
offsets are indexed; a window of >= 127 bytes that occurs at offset x contains the aligned chunk
at the next multiple of 64, so each window is looked up under its 64 possible phases and every
candidate is compared byte for byte (chunks seen too often fall back to ``bytes.find``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

BLOCK = 4096
_ANCHOR = 64
_CAP = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class PairFigures:
    """Byte counts for one (old, new) pair."""

    new_bytes: int
    aligned_bound: int
    any_offset_bound: int
    zsync_bytes: int
    zsync_block: int
    zsync_control: int


class _Finder:
    """Exact "does this window occur anywhere in old?" queries."""

    def __init__(self, old: bytes) -> None:
        self.old = old
        index: dict[bytes, list[int]] = {}
        for p in range(0, len(old) - _ANCHOR + 1, _ANCHOR):
            key = old[p : p + _ANCHOR]
            hits = index.get(key)
            if hits is None:
                index[key] = [p]
            elif len(hits) <= _CAP:
                hits.append(p)
        self.index = index

    def occurs(self, window: bytes) -> bool:
        old, size = self.old, len(window)
        if size < 2 * _ANCHOR:
            return old.find(window) >= 0
        crowded = False
        for phase in range(_ANCHOR):
            hits = self.index.get(window[phase : phase + _ANCHOR], ())
            if len(hits) > _CAP:
                crowded = True
            for p in hits[:_CAP]:
                x = p - phase
                if x >= 0 and old[x : x + size] == window:
                    return True
        return crowded and old.find(window) >= 0


def _aligned_bound(old: bytes, new: bytes) -> int:
    have = {hashlib.sha256(old[i : i + BLOCK]).digest() for i in range(0, len(old), BLOCK)}
    return sum(
        len(new[i : i + BLOCK])
        for i in range(0, len(new), BLOCK)
        if hashlib.sha256(new[i : i + BLOCK]).digest() not in have
    )


def _any_offset_bound(finder: _Finder, old: bytes, new: bytes) -> int:
    have = {old[i : i + BLOCK] for i in range(0, len(old), BLOCK)}
    missing = 0
    for i in range(0, len(new), BLOCK):
        block = new[i : i + BLOCK]
        if block not in have and not finder.occurs(block):
            missing += len(block)
    return missing


def zsync_parameters(length: int) -> tuple[int, int, int]:
    """(block size, rsum bytes, checksum bytes) as ``zsyncmake`` picks them (seq_matches 2)."""
    block = 2048 if length < 100_000_000 else 4096
    seq = 2
    log_len = math.log2(max(length, 1))
    rsum = int((7.9 + ((log_len + math.log2(block)) - 8.6) / seq) / 8)
    rsum = min(max(rsum, 2), 4)
    blocks_log = math.log2(1 + length // block)
    checksum = int((7.9 + (20 + log_len + blocks_log) / seq) / 8)
    checksum = max(checksum, int((7.9 + (20 + blocks_log)) / 8))
    return block, rsum, checksum


def _zsync_bytes(finder: _Finder, new: bytes) -> tuple[int, int, int]:
    block, rsum, checksum = zsync_parameters(len(new))
    count = -(-len(new) // block)
    padded = new + bytes(count * block - len(new))  # zsync pads the last block with zeros
    pair_found = [
        finder.occurs(padded[j * block : (j + 2) * block]) if j + 1 < count else False
        for j in range(count)
    ]
    fetched = 0
    for j in range(count):
        reused = pair_found[j] or (j > 0 and pair_found[j - 1])
        if not reused:
            fetched += min(block, len(new) - j * block)
    control = 200 + count * (rsum + checksum)  # headers (name, length, SHA-1, URL) + block sums
    return fetched + control, block, control


def figures(old: bytes, new: bytes) -> PairFigures:
    """All figures for one pair."""
    finder = _Finder(old)
    zsync, zblock, zcontrol = _zsync_bytes(finder, new)
    return PairFigures(
        new_bytes=len(new),
        aligned_bound=_aligned_bound(old, new),
        any_offset_bound=_any_offset_bound(finder, old, new),
        zsync_bytes=zsync,
        zsync_block=zblock,
        zsync_control=zcontrol,
    )
