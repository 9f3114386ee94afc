# SPDX-License-Identifier: MIT
"""formats.pattern: compile/match/format tables for both modes, every marker, 257's quirks."""

from __future__ import annotations

import pytest

from airlock.errors import FormatError
from airlock.formats import pattern
from airlock.formats.pattern import Fields, MatchResult, Mode, PatternError

UUID = "0123456789abcdef0123456789abcdef"
DASHED = "01234567-89AB-CDEF-0123-456789ABCDEF"
SHA = "ab" * 32
V1U = Fields(version="1", uuid=UUID)
V1H = Fields(version="1", sha256=SHA)

# (pattern, name, fields expected in EXACT mode or None, fields expected in SYSUPDATE mode or None)
MATCH_TABLE: tuple[tuple[str, str, Fields | None, Fields | None], ...] = (
    ("foo_@v.raw", "foo_1.raw", Fields(version="1"), Fields(version="1")),
    # design.md#sysupdate-prefix-match: a pattern ending in a literal is a prefix match in 257
    ("foo_@v.raw", "foo_2.raw.bak", None, Fields(version="2")),
    ("foo_@v.raw", "foo_1.rawhide", None, Fields(version="1")),
    ("foo_@v.raw", "foo_1.raw.xz", None, Fields(version="1")),
    ("foo_@v.raw", "bar_1.raw", None, None),
    ("foo_@v.raw", "foo_.raw", None, None),  # empty version
    ("foo_@v.raw", "foo_1~rc1.raw", None, None),  # '~' is not a valid version character
    ("foo_@v.raw", "foo_1^p.raw", None, None),
    ("foo_@v.raw", "foo_1", None, None),
    ("foo_@v", "foo_1.2-3_4.5+6", Fields(version="1.2-3_4.5+6"), Fields(version="1.2-3_4.5+6")),
    ("foo_@v", "foo_4,5", None, Fields(version="4,5")),  # ',': 257's charset, not 262's
    ("foo_@v", "foo_1/2", None, None),
    # a field stops at the FIRST occurrence of the next literal (non-greedy)
    ("uki-@v.efi", "uki-extra-v1.efi", Fields(version="extra-v1"), Fields(version="extra-v1")),
    ("uki-@v.efi", "uki-1.2.efi", Fields(version="1.2"), Fields(version="1.2")),
    ("uki-@v.efi", "uki-1.efi.efi", None, Fields(version="1")),
    ("S_@v_@u.root", f"S_1_{UUID}.root", V1U, V1U),
    ("S_@v_@u.root", f"S_1_2_{UUID}.root", None, None),  # versions with '_' "do not exist"
    ("S_@v_@u.root", f"S_1_{DASHED}.root", V1U, V1U),
    ("S_@v_@u.root", f"S_1_{UUID[:-1]}.root", None, None),
    ("S_@v_@u.root", f"S_1_{UUID}0.root", None, None),
    ("S_@v_@u", "S_1_01234567-89ab-cdef0123-456789abcdef0", None, None),  # misplaced dashes
    ("uki_@v+@l-@d.efi", "uki_1.2+3-0.efi", Fields(version="1.2", tries_left=3, tries_done=0),
     Fields(version="1.2", tries_left=3, tries_done=0)),
    ("uki_@v+@l.efi", "uki_1+3-0.efi", None, None),
    ("uki_@v.efi", "uki_1+3-0.efi", Fields(version="1+3-0"), Fields(version="1+3-0")),
    ("x_@v_@f", "x_1_0x1F", Fields(version="1", flags=0x1F), Fields(version="1", flags=0x1F)),
    ("x_@v_@f", "x_1_ff", Fields(version="1", flags=0xFF), Fields(version="1", flags=0xFF)),
    ("x_@v_@f", "x_1_fg", None, None),
    ("x_@v_@f", "x_1_ffffffffffffffff", Fields(version="1", flags=(1 << 64) - 1),
     Fields(version="1", flags=(1 << 64) - 1)),
    ("x_@v_@f", "x_1_10000000000000000", None, None),  # overflow
    ("x_@v_@t", "x_1_1700000000000000", Fields(version="1", mtime=1700000000000000),
     Fields(version="1", mtime=1700000000000000)),
    ("x_@v_@t", "x_1_18446744073709551615", None, None),  # USEC_INFINITY refused
    ("x_@v_@t", "x_1_-1", None, None),
    ("x_@v_@t", "x_1_-0", Fields(version="1", mtime=0), Fields(version="1", mtime=0)),
    ("x_@v_@s", "x_1_0x10", Fields(version="1", size=16), Fields(version="1", size=16)),
    ("x_@v_@s", "x_1_010", Fields(version="1", size=8), Fields(version="1", size=8)),  # C octal
    ("x_@v_@s", "x_1_0o17", Fields(version="1", size=15), Fields(version="1", size=15)),
    ("x_@v_@s", "x_1_0b101", Fields(version="1", size=5), Fields(version="1", size=5)),
    ("x_@v_@s", "x_1_+7", Fields(version="1", size=7), Fields(version="1", size=7)),
    ("x_@v_@s", "x_1_08", None, None),
    ("x_@v_@s", "x_1_0x", None, None),
    ("x_@v_@s", "x_1_1k", None, None),
    ("x_@v_@d", "x_1_2", Fields(version="1", tries_done=2), Fields(version="1", tries_done=2)),
    ("x_@v_@l", "x_1_", None, None),
    ("x_@v_@m", "x_1_0644", Fields(version="1", mode=0o644), Fields(version="1", mode=0o644)),
    ("x_@v_@m", "x_1_755", Fields(version="1", mode=0o755), Fields(version="1", mode=0o755)),
    ("x_@v_@m", "x_1_0666", None, None),  # world-writable refused
    ("x_@v_@m", "x_1_4755", None, None),  # set-uid refused
    ("x_@v_@m", "x_1_+644", None, None),  # parse_mode refuses a sign
    ("x_@v_@m", "x_1_9", None, None),
    ("x_@v_@a", "x_1_yes", Fields(version="1", no_auto=True), Fields(version="1", no_auto=True)),
    ("x_@v_@a", "x_1_OFF", Fields(version="1", no_auto=False), Fields(version="1", no_auto=False)),
    ("x_@v_@r", "x_1_t", Fields(version="1", read_only=True), Fields(version="1", read_only=True)),
    ("x_@v_@g", "x_1_0", Fields(version="1", growfs=False), Fields(version="1", growfs=False)),
    ("x_@v_@g", "x_1_2", None, None),
    ("x_@v_@g", "x_1_maybe", None, None),
    ("x_@v_@h", f"x_1_{SHA.upper()}", V1H, V1H),
    ("x_@v_@h", f"x_1_{SHA[:-1]}", None, None),
    ("x_@v_@h", f"x_1_{SHA[:-1]}g", None, None),
    ("a@@b_@v", "a@b_1", Fields(version="1"), Fields(version="1")),
    ("a@@b_@v", "a@@b_1", None, None),
    ("@v.raw", "1.raw", Fields(version="1"), Fields(version="1")),
    # slashes: fs targets with subdirectories
    ("uki_@v.efi.extra.d/extra.addon.efi", "uki_3.efi.extra.d/extra.addon.efi",
     Fields(version="3"), Fields(version="3")),
    ("uki_@v.efi.extra.d/extra.addon.efi", "uki_3.efi.extra.d/extra.addon.efi.old",
     None, Fields(version="3")),
    ("uki_@v.efi.extra.d/extra.addon.efi", "uki_3.efi.extra.d", None, None),  # RETRY, not a match
    ("dir/@v.raw", "dir/1.raw", Fields(version="1"), Fields(version="1")),
    ("dir/@v.raw", "dir1.raw", None, None),
)  # fmt: skip


@pytest.mark.parametrize(("text", "name", "exact", "loose"), MATCH_TABLE)
def test_match_table(text: str, name: str, exact: Fields | None, loose: Fields | None) -> None:
    pat = pattern.compile(text)
    assert pat.match(name) == exact
    assert pat.match(name, Mode.EXACT) == exact
    assert pat.match(name, Mode.SYSUPDATE) == loose
    if exact is not None:  # an exact match is always a sysupdate match with the same fields
        assert loose == exact


@pytest.mark.parametrize(
    ("text", "name", "mode", "result"),
    [
        ("uki_@v.efi.extra.d/extra.addon.efi", "uki_3.efi.extra.d", Mode.EXACT, MatchResult.RETRY),
        ("uki_@v.efi.extra.d/x", "uki_3.efi.extra.d", Mode.SYSUPDATE, MatchResult.RETRY),
        ("a/b/@v", "a", Mode.EXACT, MatchResult.RETRY),
        ("a/b/@v", "a/b", Mode.EXACT, MatchResult.RETRY),
        ("a/b/@v", "a/c", Mode.EXACT, MatchResult.NO),
        ("a/b/@v", "a/b/1", Mode.EXACT, MatchResult.YES),
        ("a/@v", "ab", Mode.SYSUPDATE, MatchResult.NO),
    ],
)
def test_classify_retry_for_directory_prefixes(
    text: str, name: str, mode: Mode, result: MatchResult
) -> None:
    assert pattern.compile(text).classify(name, mode)[0] is result


REJECTED = (
    ("", "@v"),
    ("foo.raw", "@v"),
    ("foo_@v/bar.efi", "followed by '/'"),  # 257 aborts with an assertion on this one
    ("foo_@v.d/@u/x", "followed by '/'"),
    ("@v/", "followed by '/'"),
    ("foo_@v_@v", "twice"),
    ("foo_@v@u", "separating literal"),
    ("@u@v", "separating literal"),
    ("foo_@v@", "trailing"),
    ("foo_@i_@v", "unknown field marker"),  # there is no @i
    ("foo_@V", "unknown field marker"),
    ("foo_@/@v", "unknown field marker"),
    ("foo*_@v", "invalid character"),
    ("foo?_@v", "invalid character"),
    ("[a]_@v", "invalid character"),
    ("a!_@v", "invalid character"),
    ("a$_@v", "invalid character"),
    ("a|_@v", "invalid character"),
    ("a\\_@v", "invalid character"),
    ("a\t_@v", "invalid character"),
    ("a\x7f_@v", "invalid character"),
    ("a\x1b[2J_@v", "invalid character"),
    ("é_@v", "invalid character"),
)


@pytest.mark.parametrize(("text", "why"), REJECTED)
def test_invalid_patterns_are_rejected(text: str, why: str) -> None:
    with pytest.raises(PatternError) as info:
        pattern.compile(text)
    assert isinstance(info.value, FormatError)
    assert info.value.code == "config.pattern"
    assert why in info.value.message
    assert info.value.message.isascii()
    assert info.value.message.isprintable()


@pytest.mark.parametrize(
    "text",
    ["@v", "a b_@v", "x/@v", "a/b/@v.raw", "@v.d/x", "a_@v-@u+@f,@t:@m;@s=@d%@l#@a~@r^@g&@h"],
)
def test_valid_patterns_compile(text: str) -> None:
    assert pattern.compile(text).text == text


def test_markers_of_a_pattern() -> None:
    pat = pattern.compile("a_@v-@u+@f,@t:@m;@s=@d%@l#@a~@r^@g&@h")
    assert pat.markers == frozenset("vuftmsdlargh")


FORMAT_TABLE = (
    ("uki_@v+@l-@d.efi", Fields(version="1.2", tries_left=3, tries_done=0), "uki_1.2+3-0.efi"),
    ("S_@v_@u", Fields(version="1", uuid=DASHED), f"S_1_{UUID}"),  # 32 lowercase hex, no dashes
    ("x_@v_@f", Fields(version="1", flags=0xAB), "x_1_ab"),
    ("x_@v_@m", Fields(version="1", mode=0o44), "x_1_044"),
    ("x_@v_@t.@s", Fields(version="1", mtime=5, size=7), "x_1_5.7"),
    ("x_@v_@a_@r_@g", Fields(version="1", no_auto=True, read_only=False, growfs=True), "x_1_1_0_1"),
    ("x_@v_@h", Fields(version="1", sha256=SHA.upper()), f"x_1_{SHA}"),
    ("d_@v.d/f", Fields(version="2", size=9), "d_2.d/f"),  # fields the pattern lacks are ignored
    ("a@@_@v", Fields(version="1"), "a@_1"),
)


@pytest.mark.parametrize(("text", "fields", "name"), FORMAT_TABLE)
def test_format_table(text: str, fields: Fields, name: str) -> None:
    pat = pattern.compile(text)
    assert pat.format(fields) == name
    assert pat.match(name) is not None


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("S_@v_@u", Fields(version="1")),  # ENXIO: no UUID
        ("x_@v", Fields()),
        ("x_@v", Fields(version="1~rc1")),
        ("x_@v", Fields(version="")),
        ("x_@v_@m", Fields(version="1", mode=0o666)),
        ("x_@v_@s", Fields(version="1", size=(1 << 64) - 1)),
        ("x_@v_@s", Fields(version="1", size=-1)),
        ("x_@v_@h", Fields(version="1", sha256="00")),
        ("x_@v_@u", Fields(version="1", uuid="nope")),
        # would not read back: the version contains the literal that follows it
        ("x_@v_@s", Fields(version="1_2", size=3)),
        ("x_@v.@f", Fields(version="1", flags=-1)),
    ],
)
def test_format_refuses_missing_or_unreadable_values(text: str, fields: Fields) -> None:
    with pytest.raises(PatternError, match="Failed to format"):
        pattern.compile(text).format(fields)


def test_match_any_first_pattern_wins() -> None:
    pats = [pattern.compile(t) for t in ("uki_@v+@l-@d.efi", "uki_@v+@l.efi", "uki_@v.efi")]
    want = Fields(version="1", tries_left=3, tries_done=0)
    assert pattern.match_any(pats, "uki_1+3-0.efi") == want
    assert pattern.match_any(pats, "uki_1+3.efi") == Fields(version="1", tries_left=3)
    assert pattern.match_any(pats, "uki_1.efi") == Fields(version="1")
    assert pattern.match_any(pats, "vmlinuz") is None


def test_match_agreed_refuses_names_sysupdate_reads_differently() -> None:
    # EXACT: only the second pattern matches (tries_left=3); 257 stops at the first pattern's
    # prefix match with version "1" and no tries.  Judging one and installing the other is refused.
    pats = [pattern.compile(t) for t in ("uki_@v.efi", "uki_@v.efi+@l")]
    assert pattern.match_any(pats, "uki_1.efi+3") == Fields(version="1", tries_left=3)
    assert pattern.match_any(pats, "uki_1.efi+3", Mode.SYSUPDATE) == Fields(version="1")
    assert pattern.match_agreed(pats, "uki_1.efi+3") is None
    assert pattern.match_agreed(pats, "uki_1.efi") == Fields(version="1")


def test_match_any_retry_stops_the_search_like_257() -> None:
    pats = [pattern.compile("d_@v.d/x"), pattern.compile("d_@v.d")]
    assert pattern.classify_any(pats, "d_1.d")[0] is MatchResult.RETRY
    assert pattern.match_any(pats, "d_1.d") is None


def test_mode_given_as_plain_string_is_honoured() -> None:
    pat = pattern.compile("foo_@v.raw")
    assert pat.match("foo_2.raw.bak", "exact") is None  # type: ignore[arg-type]  # str on purpose
    assert pat.match("foo_2.raw.bak", "sysupdate") == Fields(version="2")  # type: ignore[arg-type]


def test_format_refuses_values_of_the_wrong_type() -> None:
    pat = pattern.compile("x_@v_@u_@s")
    with pytest.raises(PatternError):
        pat.format(Fields(version="1", uuid=5, size=1))  # type: ignore[arg-type]  # on purpose
    with pytest.raises(PatternError):
        pat.format(Fields(version="1", uuid=UUID, size=True))
