# SPDX-License-Identifier: MIT
"""formats.version properties: agreement with systemd-analyze and libc, and order laws.

The oracle test compares ``version.compare`` with the host's real ``systemd-analyze
compare-versions`` (exit 0/11/12) on at least 2,000 generated pairs per run, in batches of
``BATCH`` pairs per hypothesis example (so a failure still shrinks to one small batch).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airlock.formats import version
from tests.support.version_vectors import ASCENDING, all_pairs

SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
ORACLE_PAIRS = 2000
BATCH = 100

# Versions drawn mostly from the characters strverscmp_improved cares about, sometimes from
# anything argv can carry (no NUL; lone surrogates are argv bytes >= 0x80 via surrogateescape).
_VERSIONISH = st.text(alphabet="0123456789.-_~^+,:abzABZ", max_size=10)
_ANY = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00")
    | st.sampled_from("\udc80\udcff"),
    max_size=8,
)
VERSIONS = st.one_of(_VERSIONISH, _VERSIONISH, _VERSIONISH, _ANY)


@st.composite
def _pairs(draw: st.DrawFn) -> tuple[str, str]:
    a = draw(VERSIONS)
    kind = draw(st.integers(0, 3))
    if kind == 0:  # a neighbour: shared prefix, different tail
        return a, a[: draw(st.integers(0, len(a)))] + draw(_VERSIONISH)
    return a, draw(VERSIONS)


PAIRS = _pairs()


def _oracle(pair: tuple[str, str]) -> int:
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "compare-versions", "--", *pair],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    return {0: 0, 11: 1, 12: -1}[done.returncode]


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


@needs_systemd_analyze
def test_compare_agrees_with_systemd_analyze_on_2000_pairs() -> None:
    checked: list[int] = []

    @settings(
        max_examples=-(-ORACLE_PAIRS // BATCH),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(PAIRS, min_size=BATCH, max_size=BATCH))
    @example(list(all_pairs()))
    def check(pairs: list[tuple[str, str]]) -> None:
        with ThreadPoolExecutor(max_workers=4) as pool:
            expected = list(pool.map(_oracle, pairs))
        for (a, b), want in zip(pairs, expected, strict=True):
            assert version.compare(a, b) == want, (a, b)
        checked.append(len(pairs))

    check()
    assert sum(checked) >= ORACLE_PAIRS


@functools.cache
def _libsystemd_shared() -> ctypes.CDLL | None:
    libs = sorted(glob.glob("/usr/lib/*/systemd/libsystemd-shared-*.so"))
    if not libs:
        return None
    lib = ctypes.CDLL(libs[-1])
    if not hasattr(lib, "strverscmp_improved"):
        return None
    lib.strverscmp_improved.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.strverscmp_improved.restype = ctypes.c_int
    return lib


@given(st.lists(PAIRS, min_size=1, max_size=50))
def test_compare_agrees_with_libsystemd_shared(pairs: list[tuple[str, str]]) -> None:
    # The same C function systemd-analyze calls, in-process: many more pairs per second.
    lib = _libsystemd_shared()
    if lib is None:
        pytest.skip("libsystemd-shared with strverscmp_improved not found")
    for a, b in pairs:
        raw = lib.strverscmp_improved(
            a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape")
        )
        assert version.compare(a, b) == (raw > 0) - (raw < 0), (a, b)


@functools.cache
def _libc_strverscmp() -> ctypes._CFuncPtr:  # type: ignore[name-defined]  # private ctypes type
    fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").strverscmp
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    return fn


@given(VERSIONS, VERSIONS)
@example("000", "00")
@example("01", "010")
def test_strverscmp_agrees_with_libc(a: str, b: str) -> None:
    raw = int(_libc_strverscmp()(a.encode("utf-8", "surrogateescape"),
                                 b.encode("utf-8", "surrogateescape")))  # fmt: skip
    assert version.strverscmp(a, b) == (raw > 0) - (raw < 0)


_F = TypeVar("_F", bound=Callable[..., None])


def _with_vectors(fn: _F) -> _F:
    """Add every upstream vector pair as an ``@example``."""
    for a, b in all_pairs():
        fn = example(a, b)(fn)
    return fn


@given(VERSIONS)
def test_compare_is_reflexive(a: str) -> None:
    assert version.compare(a, a) == 0


@_with_vectors
@given(VERSIONS, VERSIONS)
def test_compare_is_antisymmetric(a: str, b: str) -> None:
    assert version.compare(a, b) == -version.compare(b, a)
    assert version.compare(a, b) in (-1, 0, 1)


@given(st.lists(VERSIONS, min_size=3, max_size=12))
@example(list(reversed(ASCENDING)))
def test_compare_is_transitive(values: list[str]) -> None:
    ordered = sorted(values, key=version.key)
    for i, lo in enumerate(ordered):
        for hi in ordered[i + 1 :]:
            assert version.compare(lo, hi) <= 0, (lo, hi)


@given(VERSIONS, VERSIONS, VERSIONS)
def test_equality_is_transitive(a: str, b: str, c: str) -> None:
    if version.compare(a, b) == 0 and version.compare(b, c) == 0:
        assert version.compare(a, c) == 0


_VALID_CHARS = "abcxyzABCXYZ0123456789.,_+-"


@given(st.text(alphabet=_VALID_CHARS, min_size=1, max_size=255))
def test_is_valid_accepts_its_charset(v: str) -> None:
    assert version.is_valid(v)


@given(st.text(max_size=300))
def test_is_valid_is_exactly_charset_and_length(v: str) -> None:
    expected = 1 <= len(v.encode("utf-8", "surrogatepass")) <= 255 and all(
        c.isascii() and (c.isalnum() or c in ".,_+-") for c in v
    )
    assert version.is_valid(v) == expected
