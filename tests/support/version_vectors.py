# SPDX-License-Identifier: MIT
"""systemd's own strverscmp_improved() vectors (src/test/test-string-util.c, v257;
design.md#sysupdate-versions).

Shared by the unit tests and the hypothesis ``@example``s.
"""

from __future__ import annotations

import itertools

# Strictly ascending.
ASCENDING: tuple[str, ...] = (
    "~1", "", "ab", "abb", "abc", "0001", "002", "12", "122", "122.9", "123~rc1", "123",
    "123-a", "123-a.1", "123-a1", "123-a1.1", "123-3", "123-3.1", "123^patch1", "123^1",
    "123.a-1", "123.1-1", "123a-1", "124",
)  # fmt: skip

# (older, newer)
LESS: tuple[tuple[str, str], ...] = (
    ("123.45-67.88", "123.45-67.89"),
    ("123.45-67.89", "123.45-67.89a"),
    ("123.45-67.ab", "123.45-67.89"),
    ("123.45-67.9", "123.45-67.89"),
    ("123.45-67", "123.45-67.89"),
    ("123~rc1-99.99", "123^aa2-67.89"),
    ("123-99.99", "123aa2-67.89"),
    ("123^aa2-67.89", "123aa2-67.89"),
    ("123.aa2-67.89", "123.ab2-67.89"),
    ("123", "123."),
    ("12_3", "123"),
    ("12", "12_3"),
    ("12.3", "12_3"),
    ("123", "123.0"),
    ("123", "123_0"),
    ("123..0", "123.0"),
    ("~", ""),
    ("5.5p1", "5.5p10"),
    ("10.1xyz", "10xyz"),  # the reverse of rpm
    ("2.0.1", "2.0.1a"),
)

EQUAL: tuple[tuple[str, str], ...] = (
    ("123_aa2-67.89", "123aa+2-67.89"),
    ("0_", "0"),
    ("_0_", "0"),
    ("", "_"),
    ("1.0", "1.00"),
    ("01", "1"),
)


def all_pairs() -> tuple[tuple[str, str], ...]:
    """Every vector as an (a, b) pair: neighbours of the chain, LESS, and EQUAL."""
    chain = tuple(itertools.pairwise(ASCENDING))
    return chain + LESS + EQUAL
