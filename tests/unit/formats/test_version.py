# SPDX-License-Identifier: MIT
"""formats.version: systemd's own vectors (src/test/test-string-util.c, v257), charset, glibc."""

from __future__ import annotations

import ctypes
import itertools

import pytest

from airlock.errors import FormatError
from airlock.formats import version
from tests.support.version_vectors import ASCENDING, EQUAL, LESS


@pytest.mark.parametrize(("lo", "hi"), list(itertools.combinations(ASCENDING, 2)))
def test_upstream_ascending_chain(lo: str, hi: str) -> None:
    assert version.compare(lo, hi) == -1
    assert version.compare(hi, lo) == 1


@pytest.mark.parametrize("v", ASCENDING)
def test_each_vector_equals_itself(v: str) -> None:
    assert version.compare(v, v) == 0


@pytest.mark.parametrize(("lo", "hi"), LESS)
def test_upstream_less_than(lo: str, hi: str) -> None:
    assert version.compare(lo, hi) == -1
    assert version.compare(hi, lo) == 1


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_upstream_equal(a: str, b: str) -> None:
    assert version.compare(a, b) == 0
    assert version.compare(b, a) == 0


def test_key_sorts_oldest_first() -> None:
    shuffled = list(reversed(ASCENDING))
    assert sorted(shuffled, key=version.key) == list(ASCENDING)


def test_non_ascii_is_a_separator() -> None:
    # C sees each UTF-8 byte >= 0x80 as a separator; a code point is one here.
    assert version.compare("1\u00e92", "1_2") == 0
    assert version.compare("1\udcff2", "1.2") == 1
    assert version.compare("1\u00e92", "12") == -1
    # Unicode digits are not digits.
    assert version.compare("\u0661", "") == 0


@pytest.mark.parametrize(
    "v",
    ["1", "1.0", "v1.2.3", "1_2", "1+git", "A-b", ".", "..", "x" * 255],
)
def test_valid_versions(v: str) -> None:
    assert version.is_valid(v)
    assert version.parse(v) == v


@pytest.mark.parametrize(
    "v",
    ["", "1.0~rc1", "1^p", "1,2", "1/2", "1 2", "1\n", "1:2", "é", "1\x00", "x" * 256, "1@2", "#1"],
)
def test_invalid_versions_are_refused(v: str) -> None:
    # "1,2" is valid to 257-259 and "1.0~rc1", "1^p" to 260+: never to every version.
    assert not version.is_valid(v)
    with pytest.raises(FormatError) as info:
        version.parse(v)
    assert info.value.code == "config.version"
    assert info.value.message.isprintable()
    assert "\n" not in info.value.message


def _libc_strverscmp(a: str, b: str) -> int:
    fn = ctypes.CDLL("libc.so.6").strverscmp
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    r = int(fn(a.encode(), b.encode()))
    return (r > 0) - (r < 0)


GLIBC_CASES = (
    ("000", "00"), ("00", "01"), ("01", "010"), ("010", "09"), ("09", "0"), ("0", "1"),
    ("1", "9"), ("9", "10"), ("a1", "a01"), ("1.0", "1.00"), ("jan2", "jan10"),
    ("", ""), ("abc", "abd"), ("1~rc", "1"), ("1-2", "1.2"), ("0.9", "0.10"), ("12", "012"),
)  # fmt: skip


@pytest.mark.parametrize(("a", "b"), GLIBC_CASES)
def test_strverscmp_matches_libc(a: str, b: str) -> None:
    assert version.strverscmp(a, b) == _libc_strverscmp(a, b)
    assert version.strverscmp(b, a) == _libc_strverscmp(b, a)


def test_strverscmp_differs_from_improved() -> None:
    # The two orderings disagree on leading zeros: glibc treats "01" < "1"-ish fractions.
    assert version.strverscmp("01", "1") == -1
    assert version.compare("01", "1") == 0
