# SPDX-License-Identifier: MIT
"""Differential: formats.pattern SYSUPDATE mode against the real systemd-sysupdate of each runtime.

Each case lays out source files in a throwaway directory, binds it into a runtime ``airlock
update`` applies with, the way it runs it (``tests.support.oracles``, once per runtime: 257 and
262; nothing mounted outlives the run), and asks ``systemd-sysupdate --json=short list`` which
versions it sees.  Our prediction is the set of versions ``Pattern.match(name, Mode.SYSUPDATE,
rules)`` extracts from the same names, ``rules`` being that version's ``formats.dialect`` row:
257 prefix-matches and reads ``,`` in versions; 262 matches whole names and reads ``~`` and ``^``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airlock.backends.apply.runtime import Runtime
from airlock.formats import dialect, pattern, version
from airlock.formats.pattern import MatchResult, Mode
from tests.support.oracles import WORK, sysupdate

pytestmark = pytest.mark.sysupdate


def _layout(work: Path, text: str, names: list[str]) -> None:
    (work / "defs").mkdir()
    (work / "src").mkdir()
    (work / "dst").mkdir()
    for name in names:
        path = work / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 16)
    (work / "defs" / "50-t.transfer").write_text(
        f"[Source]\nType=regular-file\nPath={WORK}/src\n"
        f"MatchPattern={text}\n\n"
        f"[Target]\nType=regular-file\nPath={WORK}/dst\n"
        f"MatchPattern={text}\n"
    )


def _sysupdate_versions(rt: Runtime, work: Path, text: str, names: list[str]) -> list[str]:
    _layout(work, text, names)
    done = sysupdate(rt, work, f"--definitions={WORK}/defs", "--json=short", "list")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    versions = json.loads(done.stdout)["all"]
    assert isinstance(versions, list)
    return [str(v) for v in versions]


def _agree(predicted: set[str], seen: list[str]) -> bool:
    """sysupdate may collapse versions that compare equal; otherwise the sets are equal."""
    return set(seen) <= predicted and all(
        any(version.compare(p, s) == 0 for s in seen) for p in predicted
    )


def _predict(rt: Runtime, text: str, names: list[str]) -> set[str]:
    pat = pattern.compile(text)
    rules = dialect.for_version(rt.version)
    found = {pat.match(n, Mode.SYSUPDATE, rules) for n in names}
    return {f.version for f in found if f is not None and f.version is not None}


TABLE = (
    ("foo_@v.raw", ["foo_1.raw", "foo_2.raw.bak", "foo_3.rawhide", "foo_4~rc1.raw", "foo_.raw",
                    "bar_5.raw", "foo_6^x.raw", "foo_7,8+9_0.raw", "foo_1.00.raw"]),
    ("uki-@v.efi", ["uki-extra-v1.efi", "uki-2.efi", "uki-3.efi.efi", "uki-.efi"]),
    ("S_@v_@u.root", ["S_1_0123456789abcdef0123456789ABCDEF.root",
                      "S_2_01234567-89ab-cdef-0123-456789abcdef.root",
                      "S_3_4_0123456789abcdef0123456789abcdef.root",
                      "S_5_0123456789abcdef0123456789abcde.root"]),
    ("u_@v+@l-@d.efi", ["u_1+3-0.efi", "u_2+x-0.efi", "u_3+0x10-0b1.efi", "u_4+-1-0.efi",
                        "u_5+18446744073709551615-0.efi", "u_6+ 7-0.efi", "u_7+010-0.efi"]),
    ("m_@v_@m", ["m_1_0644", "m_2_0666", "m_3_4755", "m_4_+644", "m_5_775", "m_6_8"]),
    ("f_@v_@f", ["f_1_ff", "f_2_0xFF", "f_3_g", "f_4_ffffffffffffffff",
                 "f_5_10000000000000000", "f_6_-0"]),
    ("t_@v_@t", ["t_1_18446744073709551615", "t_2_18446744073709551614", "t_3_0o17",
                 "t_4_0b0b1", "t_5_-0", "t_6_0x"]),
    ("b_@v_@a_@r_@g", ["b_1_yes_no_on", "b_2_Y_F_TRUE", "b_3_2_0_0", "b_4_1_1_"]),
    ("h_@v_@h", ["h_1_" + "ab" * 32, "h_2_" + "AB" * 32, "h_3_" + "ab" * 31, "h_4_" + "g" * 64]),
    ("d_@v.d/x.efi", ["d_1.d/x.efi", "d_2.d/x.efi.old", "d_3.d/y.efi", "d_4.dx/x.efi"]),
    ("a@@b_@v", ["a@b_1", "a@@b_2"]),
)  # fmt: skip


@pytest.mark.parametrize(("text", "names"), TABLE)
def test_sysupdate_mode_predicts_sysupdate(
    systemd_runtime: Runtime, tmp_path: Path, text: str, names: list[str]
) -> None:
    seen = _sysupdate_versions(systemd_runtime, tmp_path, text, names)
    predicted = _predict(systemd_runtime, text, names)
    assert _agree(predicted, seen), (predicted, seen)


def test_exact_mode_differs_where_257_prefix_matches(
    systemd_runtime: Runtime, tmp_path: Path
) -> None:
    # Negative control for the EXACT/SYSUPDATE split: 257 really sees "2" in foo_2.raw.bak; 262
    # matches whole names and sees only "1".
    names = ["foo_1.raw", "foo_2.raw.bak"]
    seen = _sysupdate_versions(systemd_runtime, tmp_path, "foo_@v.raw", names)
    prefix = dialect.for_version(systemd_runtime.version).prefix_match
    assert sorted(seen) == (["1", "2"] if prefix else ["1"])
    assert systemd_runtime.version != 257 or prefix
    pat = pattern.compile("foo_@v.raw")
    assert [pat.match(n) for n in names][1] is None


def test_field_followed_by_slash_aborts_257_and_is_rejected(
    systemd_runtime: Runtime, tmp_path: Path
) -> None:
    # Why compile() refuses "@v/": 257 hits an assertion (SIGABRT, 134) once a candidate exists
    # (262 no longer does; airlock keeps refusing the pattern, which 257 hosts cannot use).
    _layout(tmp_path, "foo_@v/bar.efi", ["foo_1/bar.efi"])
    done = sysupdate(systemd_runtime, tmp_path, f"--definitions={WORK}/defs", "list")
    if systemd_runtime.version >= 262:
        assert done.returncode == 0, done.stderr
    else:
        # Run as PID 1 of its own PID namespace (as the product did before ADR 0005; SIGABRT has
        # no default action there), the failed assertion ended the process with SIGSEGV (-11).
        assert done.returncode in (134, -6, -11), done.returncode
        assert b"Aborting." in done.stderr
        assert b"Assertion" in done.stderr
    with pytest.raises(pattern.PatternError, match="followed by '/'"):
        pattern.compile("foo_@v/bar.efi")


_NAME_CHARS = "0123456789abxAF._-+,~^#:= "
_RULES = (dialect.V257, dialect.V262)
_PATTERNS = ("foo_@v.raw", "@v.img", "x@v+@l-@d.efi", "s_@v_@s", "f_@v_@f.p", "u_@v_@u",
             "m_@v=@m#", "b:@v:@a", "d_@v.d/x")  # fmt: skip


@st.composite
def _cases(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = draw(st.sampled_from(_PATTERNS))
    pat = pattern.compile(text)
    names: list[str] = []
    for _ in range(draw(st.integers(1, 8))):
        pieces = []
        for e in pat.elements:
            if e.kind == "literal":
                pieces.append(
                    e.text if draw(st.integers(0, 9)) else draw(st.text(_NAME_CHARS, max_size=2))
                )
            elif e.kind == "slash":
                pieces.append("/")
            else:
                pieces.append(draw(st.text(_NAME_CHARS, min_size=0, max_size=6)))
        pieces.append(draw(st.sampled_from(["", "", ".bak", "x"])))
        name = "".join(pieces)
        parts = name.split("/")
        if any(p in ("", ".", "..") for p in parts) or len(name.encode()) > 200:
            continue
        if any(pat.classify(name, Mode.SYSUPDATE, r)[0] is MatchResult.RETRY for r in _RULES):
            continue  # a regular file where 257 would descend: not what this test is about
        names.append(name)
    # A name may not be both a file and a directory prefix of another name.
    dirs = {"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)}
    return text, sorted({n for n in names if n not in dirs})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_generated_names_sysupdate_mode_agrees_with_sysupdate(
    systemd_runtime: Runtime, tmp_path_factory: pytest.TempPathFactory, case: tuple[str, list[str]]
) -> None:
    text, names = case
    work = tmp_path_factory.mktemp("diff")
    seen = _sysupdate_versions(systemd_runtime, work, text, names)
    predicted = _predict(systemd_runtime, text, names)
    assert _agree(predicted, seen), (text, names, predicted, seen)
