# SPDX-License-Identifier: MIT
"""formats.pattern properties: round trip, total compile, EXACT within SYSUPDATE, no crashes."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from airlock.formats import pattern
from airlock.formats.pattern import Fields, MatchResult, Mode, PatternError

MARKERS = "vuftmsdlargh"
MARKER_SET = frozenset(MARKERS)
ATTR = {
    "v": "version", "u": "uuid", "f": "flags", "t": "mtime", "m": "mode", "s": "size",
    "d": "tries_done", "l": "tries_left", "a": "no_auto", "r": "read_only", "g": "growfs",
    "h": "sha256",
}  # fmt: skip
U64_BELOW_MAX = st.integers(0, (1 << 64) - 2)
HEX = "0123456789abcdef"
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "v": st.text(alphabet="abcXYZ0123456789._+-", min_size=1, max_size=20),  # "," not in 262
    "u": st.text(alphabet=HEX, min_size=32, max_size=32),
    "f": st.integers(0, (1 << 64) - 1),
    "t": U64_BELOW_MAX,
    "m": st.integers(0, 0o775).filter(lambda m: not m & ~0o775),
    "s": U64_BELOW_MAX,
    "d": U64_BELOW_MAX,
    "l": U64_BELOW_MAX,
    "a": st.booleans(),
    "r": st.booleans(),
    "g": st.booleans(),
    "h": st.text(alphabet=HEX, min_size=64, max_size=64),
}
# Separators that no field value can contain, so a formatted name always reads back.
SEPARATORS = st.text(alphabet="#=%:;&~^ @", min_size=1, max_size=3)
# Any literal text 257 allows (printable ASCII minus $*?[]!\| ; '@' is written '@@').
LITERALS = st.text(
    alphabet=[c for c in map(chr, range(0x20, 0x7F)) if c not in "$*?[]!\\|/"], max_size=4
)


def _escape(literal: str) -> str:
    return literal.replace("@", "@@")


@st.composite
def patterns_with_fields(
    draw: st.DrawFn, separators: st.SearchStrategy[str] = SEPARATORS
) -> tuple[str, Fields]:
    markers = draw(st.lists(st.sampled_from(MARKERS), unique=True, max_size=5))
    if "v" not in markers:
        markers.insert(draw(st.integers(0, len(markers))), "v")
    parts = [_escape(draw(st.sampled_from(["", "img_", "a/b_", "x"])))]
    for i, m in enumerate(markers):
        parts.append("@" + m)
        last = i == len(markers) - 1
        sep = draw(separators) if not last else draw(st.sampled_from(["", ".raw", ".d/x.efi"]))
        if not last and not sep:
            sep = "#"
        if draw(st.booleans()) and not last:
            sep += "/"  # a slash after a literal is fine; directly after a field it is not
        parts.append(_escape(sep))
    values: dict[str, Any] = {ATTR[m]: draw(VALUES[m]) for m in markers}
    return "".join(parts), Fields(**values)


@given(patterns_with_fields())
@example(("uki_@v+@l-@d.efi", Fields(version="1.2", tries_left=3, tries_done=0)))
def test_match_of_format_returns_the_fields(case: tuple[str, Fields]) -> None:
    text, fields = case
    pat = pattern.compile(text)
    name = pat.format(fields)
    assert pat.match(name, Mode.EXACT) == fields
    assert pat.match(name, Mode.SYSUPDATE) == fields


@given(patterns_with_fields(separators=LITERALS.filter(bool)))
def test_format_either_round_trips_or_refuses(case: tuple[str, Fields]) -> None:
    text, fields = case
    try:
        pat = pattern.compile(text)
    except PatternError:
        return  # e.g. a literal made only of characters that merge with the next marker
    try:
        name = pat.format(fields)
    except PatternError:
        return
    assert pat.match(name) == fields


@given(patterns_with_fields(), st.text(alphabet="._-x~", min_size=1, max_size=5))
def test_sysupdate_mode_accepts_a_suffix_after_a_final_literal(
    case: tuple[str, Fields], suffix: str
) -> None:
    text, fields = case
    pat = pattern.compile(text)
    name = pat.format(fields)
    if pat.elements[-1].kind == "literal":
        assert pat.match(name + suffix, Mode.EXACT) is None
        assert pat.match(name + suffix, Mode.SYSUPDATE) == fields


PATTERN_CHARS = st.sampled_from([*"@@@vuftmsdlargh/_.x*$-\\i", "\x00", "é", " "])


@given(st.one_of(st.text(), st.text(alphabet=PATTERN_CHARS, max_size=16)))
@example("foo_@v/bar.efi")
@example("@v@")
@example("@")
@example("a_@v_@u.raw")
def test_arbitrary_pattern_text_compiles_or_raises_pattern_error(text: str) -> None:
    error: PatternError | None = None
    try:
        pat = pattern.compile(text)
    except PatternError as exc:
        error = exc
    if error is not None:
        assert error.code == "config.pattern"
        assert error.message.isprintable()
        return
    assert "v" in pat.markers
    # A field is followed only by a literal: never by a slash (257 aborts) or another field.
    for e, nxt in itertools.pairwise(pat.elements):
        if e.kind in MARKER_SET:
            assert nxt.kind == "literal"


NAME_CHARS = st.sampled_from([*"ab_-.+~/0123456789xXfF@ ", "\x00", "\udcff", "é"])
SOME_PATTERNS = [
    pattern.compile(t)
    for t in (
        "foo_@v.raw", "uki_@v+@l-@d.efi", "S_@v_@u.root", "d_@v.d/x", "@v", "a/@v_@s",
        "x_@v_@f_@t_@m", "y@v:@a:@r:@g:@h", "@v.@s",
    )
]  # fmt: skip


@given(st.sampled_from(SOME_PATTERNS), st.text(alphabet=NAME_CHARS, max_size=40))
def test_exact_match_is_a_sysupdate_match_with_the_same_fields(
    pat: pattern.Pattern, name: str
) -> None:
    exact = pat.classify(name, Mode.EXACT)
    loose = pat.classify(name, Mode.SYSUPDATE)
    if exact[0] is MatchResult.YES:
        assert loose == exact
    if loose[0] is MatchResult.NO:
        assert exact[0] is MatchResult.NO


@given(st.lists(st.sampled_from(SOME_PATTERNS), max_size=4), st.text(max_size=40))
def test_match_agreed_implies_both_modes_agree(pats: list[pattern.Pattern], name: str) -> None:
    agreed = pattern.match_agreed(pats, name)
    if agreed is not None:
        assert pattern.match_any(pats, name, Mode.EXACT) == agreed
        assert pattern.match_any(pats, name, Mode.SYSUPDATE) == agreed


@given(st.sampled_from(SOME_PATTERNS), st.text(max_size=60))
def test_extracted_fields_are_normalised(pat: pattern.Pattern, name: str) -> None:
    fields = pat.match(name, Mode.SYSUPDATE)
    if fields is None:
        return
    values = dataclasses.asdict(fields)
    assert fields.version is not None
    if fields.uuid is not None:
        assert len(fields.uuid) == 32
        assert set(fields.uuid) <= set(HEX)
    if fields.sha256 is not None:
        assert len(fields.sha256) == 64
        assert set(fields.sha256) <= set(HEX)
    if fields.mode is not None:
        assert not fields.mode & ~0o775
    for key in ("size", "mtime", "tries_done", "tries_left"):
        if values[key] is not None:
            assert 0 <= values[key] < (1 << 64) - 1
