# SPDX-License-Identifier: MIT
"""Target ``manifest``: ``formats.manifest.parse`` on arbitrary bytes (the VM writes them).

Only ``ManifestError`` (``reject.manifest``, ``reject.size``, ``reject.count``) may escape.  An
accepted manifest must hold only names the module's rule allows and lowercase digests, and
``format()`` of it must parse back to the same entries and date.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator

from airlock.errors import ManifestError
from airlock.formats import manifest
from fuzz.common import Reader, check, refusals

_DIGEST = "0123456789abcdef" * 4
_HEX64 = re.compile("[0-9a-f]{64}")


def test_one(data: bytes) -> None:
    """Parse ``data`` (after one byte that picks tight or default caps); check the result."""
    r = Reader(data)
    tight = r.byte()
    raw = r.rest()
    caps = {}
    if tight & 1:
        caps = {"max_bytes": 64 + 16 * (tight >> 1), "max_lines": 1 + (tight >> 5)}
    with refusals((ManifestError,), "reject.manifest", "reject.size", "reject.count"):
        parsed = manifest.parse(raw, **caps)
        for entry in parsed.entries:
            check(manifest.name_problem(entry.name) is None, f"bad name kept: {entry.name!r}")
            check(_HEX64.fullmatch(entry.sha256) is not None, f"digest kept: {entry.sha256!r}")
        again = manifest.parse(manifest.format(parsed.entries, best_before=parsed.best_before))
        check(
            sorted(again.entries, key=lambda e: e.name)
            == sorted(parsed.entries, key=lambda e: e.name),
            "format() does not parse back to the same entries",
        )
        check(again.best_before == parsed.best_before, "format() loses BEST-BEFORE")


def seeds() -> Iterator[bytes]:
    """Valid manifests and the hostile corpus's manifest tricks (tests/support/corpus.py)."""
    names = ("Spectrum_2.efi", "Spectrum_2_00000000000000000000000000000001.root", "a")
    good = b"".join(f"{_DIGEST} *{n}\n".encode() for n in names)
    marker = f"{manifest.EMPTY_SHA256} *BEST-BEFORE-{datetime.date(2030, 1, 2)}\n".encode()
    for raw in (
        good,
        marker + good,
        good.replace(b" *", b"  ", 1),  # a text-mode entry
        good.replace(b" *", b" ", 1),  # single-space separator
        good[:-1],  # missing final newline
        good.replace(b"\n", b"\r\n"),
        b"# release 2\n" + good,
        good + b"\n",
        b"\xef\xbb\xbf" + good,
        good[:-1] + b"\x00\n",
        good + f"{_DIGEST} *x\xff\n".encode("latin-1"),
        b"\\" + good,
        good + f"{_DIGEST} *../etc/passwd\n".encode(),
        good + f"{_DIGEST} *a/b\n".encode(),
        good + good.splitlines(keepends=True)[0],
        good + f"{_DIGEST} *x\x1b[2J\n".encode(),
        good + f"{_DIGEST} *100%\n".encode(),
        marker + marker + good,
        marker.replace(b"2030-01-02", b"2030-02-30") + good,
        b"",
    ):
        yield b"\x00" + raw
    yield b"\x01" + good
