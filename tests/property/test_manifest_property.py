# SPDX-License-Identifier: MIT
"""Property tests for airlock.formats.manifest: round trip, totality, and what it never accepts."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airlock.errors import ManifestError
from airlock.formats import manifest

HEX = st.text("0123456789abcdef", min_size=64, max_size=64)
NAME_CHARS = st.characters(
    codec="utf-8",
    exclude_characters="/%\0\r\n\x7f",  # "%": refused for 262 (formats.dialect)
    min_codepoint=0x20,
)
NAMES = (
    st.text(NAME_CHARS, min_size=1, max_size=40)
    .filter(lambda n: n not in (".", "..") and not n.startswith(("\\", "BEST-BEFORE-")))
    .filter(lambda n: len(n.encode()) <= 255)
)
ENTRIES = st.lists(
    st.builds(manifest.Entry, name=NAMES, sha256=HEX, binary=st.booleans()),
    max_size=20,
    unique_by=lambda e: e.name,
)
DATES = st.none() | st.dates(
    min_value=datetime.date(1970, 1, 1), max_value=datetime.date(9999, 12, 31)
)


def outcome(raw: bytes, **caps: int) -> manifest.Manifest | ManifestError:
    try:
        return manifest.parse(raw, **caps)
    except ManifestError as exc:
        return exc


def check_invariants(m: manifest.Manifest) -> None:
    names = [e.name for e in m.entries]
    assert len(names) == len(set(names))
    for e in m.entries:
        assert manifest.name_problem(e.name) is None
        assert "/" not in e.name
        assert "\0" not in e.name
        assert "\r" not in e.name
        assert len(e.sha256) == 64
        assert set(e.sha256) <= set("0123456789abcdef")


@given(ENTRIES, DATES)
def test_parse_inverts_format(entries: list[manifest.Entry], best: datetime.date | None) -> None:
    raw = manifest.format(entries, best_before=best)
    parsed = manifest.parse(raw)
    assert parsed.entries == tuple(sorted(entries, key=lambda e: e.name.encode()))
    assert parsed.best_before == best
    assert manifest.format(parsed.entries, best_before=parsed.best_before) == raw


@given(st.binary(max_size=600))
def test_any_bytes_give_a_manifest_or_a_manifest_error(raw: bytes) -> None:
    m = outcome(raw)  # anything else (an uncaught exception) fails the test
    if isinstance(m, ManifestError):
        assert m.code in ("reject.manifest", "reject.size", "reject.count")
        assert m.message.isascii()
        assert m.message.isprintable()
    else:
        check_invariants(m)
        assert b"\0" not in raw
        assert b"\r" not in raw
        raw.decode("utf-8")  # accepted input is always strict UTF-8


LINE = st.builds(lambda h, mark, n: f"{h} {mark}{n}\n".encode(), HEX, st.sampled_from("* "), NAMES)


@given(st.lists(LINE, max_size=8), st.integers(min_value=0), st.binary(min_size=1, max_size=4))
def test_mutated_manifests_stay_total(lines: list[bytes], where: int, junk: bytes) -> None:
    raw = b"".join(lines)
    at = where % (len(raw) + 1)
    mutated = raw[:at] + junk + raw[at:]
    m = outcome(mutated, max_bytes=4096, max_lines=64)
    if isinstance(m, manifest.Manifest):
        check_invariants(m)


@given(
    ENTRIES.filter(bool),
    st.integers(min_value=0),
    st.sampled_from([b"\0", b"\r", b"\xff", b"\xc0\x80", b"/"]),
)
def test_never_accepts_nul_cr_bad_utf8_or_slash_in_a_name(
    entries: list[manifest.Entry], which: int, bad: bytes
) -> None:
    raw = manifest.format(entries)
    lines = raw.splitlines(keepends=True)
    index = which % len(lines)
    line = lines[index]
    cut = 66 + which % (len(line) - 66)  # somewhere inside the name
    lines[index] = line[:cut] + bad + line[cut:]
    with pytest.raises(ManifestError) as info:
        manifest.parse(b"".join(lines))
    assert info.value.line == index + 1


@given(ENTRIES.filter(bool), st.integers(min_value=0), HEX, st.booleans())
def test_never_accepts_duplicates(
    entries: list[manifest.Entry], which: int, digest: str, binary: bool
) -> None:
    raw = manifest.format(entries)
    twin = entries[which % len(entries)]
    extra = f"{digest} {'*' if binary else ' '}{twin.name}\n".encode()
    with pytest.raises(ManifestError, match="listed twice") as info:
        manifest.parse(raw + extra)
    assert info.value.line == len(entries) + 1


@given(st.integers(min_value=1, max_value=50), st.integers(min_value=1, max_value=50))
def test_line_cap_is_exact(count: int, cap: int) -> None:
    raw = b"".join(f"{'a' * 64} *f{i}\n".encode() for i in range(count))
    m = outcome(raw, max_lines=cap)
    if isinstance(m, ManifestError):
        assert count > cap
        assert m.code == "reject.count"
    else:
        assert count <= cap
        assert len(m.entries) == count
