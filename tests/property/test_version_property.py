# SPDX-License-Identifier: MIT
"""formats.version properties: agreement with systemd and libc, and order laws.

The oracle tests ask the systemd the product applies with (``tests.support.oracles``: the runtime
``airlock.backends.apply.runtime.locate()`` picks, 257 in the trixie root; never the host's 252),
through one process inside that runtime: ``systemd-analyze compare-versions`` (exit 0/11/12) on at
least 2,000 generated pairs per run, in batches of ``BATCH`` pairs per hypothesis example (so a
failure still shrinks to one small batch), and its library's ``strverscmp_improved`` on many more.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import itertools
import re
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from airlock.backends.apply.runtime import Runtime
from airlock.formats import dialect, version
from tests.support.oracles import VersionOracle
from tests.support.version_vectors import ASCENDING, EQUAL, LESS, all_pairs

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

#: systemd's own vectors with the order they assert (-1: a older than b, 0: equal).
VECTORS: tuple[tuple[tuple[str, str], int], ...] = (
    *((pair, -1) for pair in itertools.pairwise(ASCENDING)),
    *((pair, -1) for pair in LESS),
    *((pair, 0) for pair in EQUAL),
)


@pytest.mark.sysupdate
def test_oracle_is_the_systemd_the_product_applies_with(
    version_oracle: VersionOracle, systemd_runtime: Runtime
) -> None:
    # The exact build: the runtime's systemd-analyze and libsystemd-shared carry the version of
    # the systemd-sysupdate that airlock update runs (through the product's own Runtime.run).
    done = systemd_runtime.run(["--version"], timeout=60)
    sysupdate_line = done.stdout.decode().splitlines()[0]
    assert version_oracle.systemd == sysupdate_line
    assert re.match(rf"systemd {systemd_runtime.version} \(", sysupdate_line)
    assert [p.rsplit("/", 1)[1] for p in version_oracle.library] == [
        f"libsystemd-shared-{systemd_runtime.version}.so"
    ]


@pytest.mark.sysupdate
def test_oracle_answers_systemds_own_vectors(version_oracle: VersionOracle) -> None:
    pairs = [pair for pair, _ in VECTORS]
    expected = [order for _, order in VECTORS]
    assert [a.order for a in version_oracle.cli(pairs)] == expected
    assert version_oracle.lib(pairs) == expected
    reverse = [(b, a) for a, b in pairs]
    assert [a.order for a in version_oracle.cli(reverse)] == [-o for o in expected]


@pytest.mark.sysupdate
def test_negative_control_the_oracle_tells_a_wrong_comparator_apart(
    version_oracle: VersionOracle,
) -> None:
    # glibc's strverscmp is a plausible but different order: the agreement checks below would
    # notice an implementation that followed it.
    pairs = [pair for pair, _ in VECTORS]
    wrong = [strverscmp_libc(a, b) for a, b in pairs]
    assert wrong != version_oracle.lib(pairs)
    assert wrong != [a.order for a in version_oracle.cli(pairs)]


@pytest.mark.sysupdate
def test_compare_agrees_with_systemd_analyze_on_2000_pairs(version_oracle: VersionOracle) -> None:
    checked: list[int] = []

    # No shrinking: every step would cost a batch through the real CLI (about a second), and the
    # assertion already names the one pair that disagrees.
    @settings(
        max_examples=-(-ORACLE_PAIRS // BATCH),
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(PAIRS, min_size=BATCH, max_size=BATCH))
    @example(list(all_pairs()))
    def check(pairs: list[tuple[str, str]]) -> None:
        expected = version_oracle.cli(pairs)
        for (a, b), want in zip(pairs, expected, strict=True):
            assert version.compare(a, b) == want.order, (a, b, want.line)
        checked.append(len(pairs))

    check()
    assert sum(checked) >= ORACLE_PAIRS


@pytest.mark.sysupdate
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(pairs=st.lists(PAIRS, min_size=1, max_size=100))
def test_compare_agrees_with_libsystemd_shared(
    version_oracle: VersionOracle, pairs: list[tuple[str, str]]
) -> None:
    # The same C function systemd-analyze calls, in the runtime's library: many more pairs.
    for (a, b), want in zip(pairs, version_oracle.lib(pairs), strict=True):
        assert version.compare(a, b) == want, (a, b)


@functools.cache
def _libc_strverscmp() -> ctypes._CFuncPtr:  # type: ignore[name-defined]  # private ctypes type
    fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").strverscmp
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    return fn


def strverscmp_libc(a: str, b: str) -> int:
    """glibc's strverscmp(3) as -1/0/1."""
    raw = int(_libc_strverscmp()(a.encode("utf-8", "surrogateescape"),
                                 b.encode("utf-8", "surrogateescape")))  # fmt: skip
    return (raw > 0) - (raw < 0)


@given(VERSIONS, VERSIONS)
@example("000", "00")
@example("01", "010")
def test_strverscmp_agrees_with_libc(a: str, b: str) -> None:
    assert version.strverscmp(a, b) == strverscmp_libc(a, b)


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


_VALID_CHARS = "abcxyzABCXYZ0123456789._+-"


@given(st.text(alphabet=_VALID_CHARS, min_size=1, max_size=255))
def test_is_valid_accepts_its_charset(v: str) -> None:
    assert version.is_valid(v)


@given(st.text(max_size=300))
def test_is_valid_is_exactly_charset_and_length(v: str) -> None:
    expected = 1 <= len(v.encode("utf-8", "surrogatepass")) <= 255 and all(
        c.isascii() and (c.isalnum() or c in "._+-") for c in v
    )
    assert version.is_valid(v) == expected
    every = all(d.version_is_valid(v) for d in dialect.TABLE)
    assert version.is_valid(v) == every  # valid exactly when every supported sysupdate agrees
