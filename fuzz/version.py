# SPDX-License-Identifier: MIT
"""Target ``version``: ``formats.version`` on arbitrary strings (file names carry versions).

``parse`` may raise only ``FormatError`` (``config.version``) and must agree with ``is_valid``;
``compare`` (systemd's ``strverscmp_improved``) and ``strverscmp`` never raise and order:
``-1``/``0``/``1``, reflexive, antisymmetric and transitive on the three strings of an input.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator

from airlock.errors import FormatError
from airlock.formats import version
from fuzz.common import check, refusals

#: Largest input libFuzzer generates: three strings of at most 255 bytes and two separators.
MAX_LEN = 800


def _strings(data: bytes) -> tuple[str, str, str]:
    parts = [*data.split(b"\x00", 2), b"", b""]
    a, b, c = (os.fsdecode(p) for p in parts[:3])  # names from the walk are fsdecoded
    return a, b, c


def _total_order(f: Callable[[str, str], int], a: str, b: str, c: str, what: str) -> None:
    ab, ba, ac, bc = f(a, b), f(b, a), f(a, c), f(b, c)
    check(ab in (-1, 0, 1) or what == "strverscmp", f"{what}: result {ab}")
    check(f(a, a) == 0, f"{what}: not reflexive on {a!r}")
    check((ab > 0) - (ab < 0) == -((ba > 0) - (ba < 0)), f"{what}: not antisymmetric")
    if ab <= 0 and bc <= 0:
        check(ac <= 0, f"{what}: not transitive on {a!r} <= {b!r} <= {c!r}")
    if ab >= 0 and bc >= 0:
        check(ac >= 0, f"{what}: not transitive on {a!r} >= {b!r} >= {c!r}")


def test_one(data: bytes) -> None:
    """Parse the first string; order all three with both comparisons."""
    a, b, c = _strings(data)
    with refusals((FormatError,), "config.version"):
        check(version.parse(a) == a, "parse() changed the version")
        check(version.is_valid(a), "parse() accepted what is_valid() refuses")
    _total_order(version.compare, a, b, c, "compare")
    _total_order(version.strverscmp, a, b, c, "strverscmp")


def seeds() -> Iterator[bytes]:
    """systemd's own comparison vectors (tests/support/version_vectors.py) and hostile strings."""
    from tests.support import version_vectors

    pairs = [*version_vectors.LESS, *version_vectors.EQUAL]
    pairs += list(itertools.pairwise(version_vectors.ASCENDING))
    pairs += [("1.0~rc1", "1.0"), ("1.0^", "1.0"), ("2,1", "2.1"), ("", "."), ("\udcff", "a")]
    for x, y in pairs:
        yield os.fsencode(x) + b"\x00" + os.fsencode(y) + b"\x00" + os.fsencode(x + "1")
