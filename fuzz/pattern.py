# SPDX-License-Identifier: MIT
"""Target ``pattern``: ``formats.pattern`` compile, match and format on arbitrary text.

``compile`` may raise only ``PatternError`` (``config.pattern``); ``classify``/``match_agreed``
never raise, with every systemd-sysupdate dialect; an EXACT match is a 257 SYSUPDATE match with
the same fields (the module's claim); ``format`` of matched fields raises only ``PatternError`` and
otherwise gives a name that matches back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from airlock.formats import dialect, pattern
from fuzz.common import Reader, check, refusals

_DIALECTS = (dialect.V257, dialect.V258, dialect.V259, dialect.V260, dialect.V262)
_SPECTRUM = (
    "Spectrum_@v.efi",
    "Spectrum_@v_@u.root",
    "Spectrum_@v_@u.verity",
    "Spectrum_@v",
    "foo_@v+@l-@d.raw",
    "dir/@v/file_@t_@s_@m_@a_@r_@g_@h_@f",
)


def test_one(data: bytes) -> None:
    """The first ``n`` bytes (``n`` from the first byte) are the pattern, the rest the name."""
    r = Reader(data)
    text = r.take(r.below(96)).decode("utf-8", errors="replace")
    name = os.fsdecode(r.rest())  # listed names are fsdecoded (surrogate escapes)
    with refusals((pattern.PatternError,), "config.pattern"):
        compiled = pattern.compile(text)
        exact = compiled.classify(name, pattern.Mode.EXACT)
        for rules in _DIALECTS:
            compiled.classify(name, pattern.Mode.SYSUPDATE, rules)
        loose = compiled.classify(name, pattern.Mode.SYSUPDATE, dialect.V257)
        if exact[0] is pattern.MatchResult.YES:
            check(loose == exact, f"EXACT match of {name!r} is not a 257 match with same fields")
        pattern.match_agreed((compiled,), name)
        fields = exact[1]
        if fields is not None:
            formatted = compiled.format(fields)
            check(
                compiled.match(formatted) is not None, "format() gives a name that does not match"
            )


def seeds() -> Iterator[bytes]:
    """Spectrum's patterns with matching, prefix-only and hostile names."""
    names = (
        "Spectrum_2.efi",
        "Spectrum_2.efi.old",
        "Spectrum_3~rc1.efi",
        "Spectrum_2_00000000-0000-0000-0000-000000000001.root",
        "Spectrum_2_0123456789abcdef0123456789abcdef.verity",
        "foo_1+3-0.raw",
        "dir/1/file_0x10_0b1_0755_yes_no_on_" + "ab" * 32 + "_0x8000",
        "Spectrum_3\x1b[2J.efi",
    )
    for text in (*_SPECTRUM, "@v@v", "a@", "@x", "@v/", "@@v@v", "a$b@v", "Spectrum_@v\u202e"):
        raw = text.encode()
        for name in names:
            yield bytes([len(raw)]) + raw + name.encode()
