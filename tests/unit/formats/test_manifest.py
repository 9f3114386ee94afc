# SPDX-License-Identifier: MIT
"""airlock.formats.manifest: every rule, each with a negative control that parses."""

from __future__ import annotations

import datetime

import pytest

from airlock.errors import ManifestError, RejectedError
from airlock.formats import manifest

H = "0123456789abcdef" * 4
GOOD = f"{H} *Spectrum_1.efi\n".encode()


def refused(
    raw: bytes, line: int | None, fragment: str, code: str = "reject.manifest", **kw: int
) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        manifest.parse(raw, **kw)
    error = info.value
    assert isinstance(error, RejectedError)
    assert error.code == code
    assert error.line == line
    assert fragment in error.message, error.message
    assert error.message.isascii()
    assert error.message.isprintable()
    if line is not None:
        assert f"line {line}:" in error.message
    return error


def test_good_manifest_and_modes() -> None:
    raw = f"{H} *a.root\n{H.upper()}  b.efi\n".encode()
    m = manifest.parse(raw)
    assert m.entries == (
        manifest.Entry(name="a.root", sha256=H, binary=True),
        manifest.Entry(name="b.efi", sha256=H, binary=False),
    )
    assert m.best_before is None
    assert m.get("b.efi") == m.entries[1]
    assert m.get("c") is None


def test_empty_manifest_is_valid() -> None:
    assert manifest.parse(b"") == manifest.Manifest(entries=())


def test_names_with_spaces_and_non_ascii_are_allowed() -> None:
    m = manifest.parse(f"{H} *a b\n{H} *ü\n{H} * lead\n".encode())
    assert [e.name for e in m.entries] == ["a b", "ü", " lead"]


# Each case: a bad manifest, the line, a message fragment; the control after it must parse.
CASES = [
    (f"{H} *a\n{H} *b".encode(), 2, "truncated (no final newline)"),
    (f"{H} *a\n\n".encode(), 2, "line too short"),
    (
        f"# comment line that is long enough to reach sixty-seven bytes.......\n{H} *a\n".encode(),
        1,
        "cannot parse the SHA-256 digest",
    ),
    (f"{H[:-1]}g *a\n".encode(), 1, "cannot parse the SHA-256 digest"),
    (f"{H} a\n{H}  b\n".encode(), 1, "missing binary/text input marker"),
    (f"{H}\t*a\n".encode(), 1, "missing space separator"),
    (f"{H}*  a\n".encode(), 1, "missing space separator"),
    (f"\\{H} *a\n".encode(), 1, "escapes are not supported"),
    (f"{H} *a\n{H} *\\a\n".encode(), 2, "escapes are not supported"),
    (f"{H} *\n{H} *a\n".encode(), 1, "empty file name"),
    (f"{H} *a\n{H[:10]}\n".encode(), 2, "line too short"),
    (f"{H} *sub/file\n".encode(), 1, "contains '/'"),
    (f"{H} */abs\n".encode(), 1, "contains '/'"),
    (f"{H} *.\n".encode(), 1, "'.' or '..'"),
    (f"{H} *..\n".encode(), 1, "'.' or '..'"),
    (f"{H} *a\x1b[2Jb\n".encode(), 1, "control characters"),
    (f"{H} *a\x7f\n".encode(), 1, "control characters"),
    (f"{H} *a\tb\n".encode(), 1, "control characters"),
    (f"{H} *a\r\n".encode(), 1, "carriage return"),
    (f"{H} *a\n{H} *b\r\n".encode(), 2, "carriage return"),
    (f"{H} *a\n{H} *b\0c\n".encode(), 2, "embedded NUL byte"),
    (f"{H} *a\n{H} *\xff\n".encode("latin-1"), 2, "not valid UTF-8"),
    (f"{H} *a\n{H} *".encode() + b"\xed\xa0\x80\n", 2, "not valid UTF-8"),  # surrogate
    (f"{H} *{'x' * 256}\n".encode(), 1, "longer than 255 bytes"),
    (f"{H} *a\n{H} *b\n{H.upper()}  a\n".encode(), 3, "listed twice (first on line 1)"),
]


@pytest.mark.parametrize(("raw", "line", "fragment"), CASES)
def test_rule(raw: bytes, line: int, fragment: str) -> None:
    error = refused(raw, line, fragment)
    assert str(error).startswith(f"manifest line {line}: ")
    assert str(error).endswith(", refusing")


def test_negative_controls_for_each_rule() -> None:
    # The nearest valid manifests: the detectors above must not fire on them.
    for raw in [
        f"{H} *a\n{H} *b\n",
        f"{H}  a\n",
        f"{H.upper()} *a\n",
        f"{H} *a\\b\n",
        f"{H} *file\n",
        f"{H} *...\n",
        f"{H} *a b\n",
        f"{H} *{'x' * 255}\n",
        f"{H} *a\n{H} *A\n",
        f"{H} *.hidden\n",
    ]:
        manifest.parse(raw.encode())


def test_error_message_never_echoes_the_line() -> None:
    error = refused(f"{H} *evil/\x1b]0;pwned\x07\n".encode(), 1, "")
    assert "evil" not in error.message
    assert "pwned" not in error.message


def test_size_cap() -> None:
    raw = GOOD * 10
    refused(raw, None, f"larger than {len(raw) - 1} bytes", "reject.size", max_bytes=len(raw) - 1)
    assert len(manifest.parse(f"{H} *a\n".encode() * 1, max_bytes=len(GOOD)).entries) == 1
    manifest.parse(raw[: len(GOOD)], max_bytes=len(GOOD))  # exactly at the cap: accepted


def test_line_cap_counts_before_parsing() -> None:
    raw = b"".join(f"{H} *f{i}\n".encode() for i in range(5))
    refused(raw, None, "more than 4 lines", "reject.count", max_lines=4)
    assert len(manifest.parse(raw, max_lines=5).entries) == 5
    # garbage lines count too: the cap fires before the parser would
    refused(b"x\n" * 5, None, "more than 4 lines", "reject.count", max_lines=4)
    refused(b"x\n" * 4 + b"x", None, "more than 4 lines", "reject.count", max_lines=4)


def test_default_caps() -> None:
    assert manifest.DEFAULT_MAX_BYTES == 1 << 20
    assert manifest.DEFAULT_MAX_LINES == 4096
    big = b"\n" * (1 << 20)
    refused(big + b"\n", None, "larger than", "reject.size")
    refused(big, None, "more than 4096 lines", "reject.count")


# --- BEST-BEFORE -------------------------------------------------------------------------------

E = manifest.EMPTY_SHA256


def test_best_before_roundtrip_and_position() -> None:
    entries = [manifest.Entry(name="b", sha256=H), manifest.Entry(name="a", sha256=H)]
    raw = manifest.format(entries, best_before=datetime.date(2027, 1, 31))
    assert raw == f"{E} *BEST-BEFORE-2027-01-31\n{H} *a\n{H} *b\n".encode()
    m = manifest.parse(raw)
    assert m.best_before == datetime.date(2027, 1, 31)
    assert [e.name for e in m.entries] == ["a", "b"]
    assert m.get("BEST-BEFORE-2027-01-31") is None


def test_best_before_accepts_zero_digest_and_any_position() -> None:
    m = manifest.parse(f"{H} *a\n{'0' * 64} *BEST-BEFORE-2030-12-01\n".encode())
    assert m.best_before == datetime.date(2030, 12, 1)
    assert len(m.entries) == 1


@pytest.mark.parametrize(
    ("raw", "line", "fragment"),
    [
        (f"{E} *BEST-BEFORE-2027-1-31\n", 1, "does not end in a YYYY-MM-DD date"),
        (f"{E} *BEST-BEFORE-2027-02-30\n", 1, "impossible date"),
        (f"{E} *BEST-BEFORE-\n", 1, "YYYY-MM-DD"),
        (f"{E} *BEST-BEFORE-2027-01-01x\n", 1, "YYYY-MM-DD"),
        (f"{H} *BEST-BEFORE-2027-01-01\n", 1, "SHA-256 of the empty file"),
        (
            f"{E} *BEST-BEFORE-2027-01-01\n{H} *a\n{E} *BEST-BEFORE-2028-01-01\n",
            3,
            "second BEST-BEFORE entry (first on line 1)",
        ),
        (f"{E} *BEST-BEFORE-2027-01-01\n{E} *BEST-BEFORE-2027-01-01\n", 2, "listed twice"),
    ],
)
def test_best_before_rules(raw: str, line: int, fragment: str) -> None:
    refused(raw.encode(), line, fragment)


def test_best_before_negative_control() -> None:
    for name in ("BEST-BEFORE-2027-01-01", "best-before-2027-01-01x", "BEST-BEFORE"):
        manifest.parse(f"{E} *{name}\n".encode())


# --- format ------------------------------------------------------------------------------------


def test_format_sorts_and_marks_text_mode() -> None:
    raw = manifest.format(
        [
            manifest.Entry(name="z", sha256=H, binary=False),
            manifest.Entry(name="B", sha256=H),
            manifest.Entry(name="a", sha256=H),
        ]
    )
    assert raw == f"{H} *B\n{H} *a\n{H}  z\n".encode()
    assert manifest.format([]) == b""


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        (manifest.Entry(name="a/b", sha256=H), "contains '/'"),
        (manifest.Entry(name="", sha256=H), "empty file name"),
        (manifest.Entry(name="a\n", sha256=H), "control characters"),
        (manifest.Entry(name="\\a", sha256=H), "escapes"),
        (manifest.Entry(name="\udcff", sha256=H), "not valid UTF-8"),
        (manifest.Entry(name="a", sha256=H.upper()), "64 lowercase hex"),
        (manifest.Entry(name="a", sha256=H[:-1]), "64 lowercase hex"),
        (manifest.Entry(name="BEST-BEFORE-2020-01-01", sha256=E), "reserved"),
    ],
)
def test_format_refuses_what_parse_would(entry: manifest.Entry, fragment: str) -> None:
    with pytest.raises(ManifestError) as info:
        manifest.format([entry])
    assert fragment in info.value.message
    assert info.value.line is None


def test_format_refuses_duplicates() -> None:
    with pytest.raises(ManifestError, match="listed twice"):
        manifest.format([manifest.Entry(name="a", sha256=H)] * 2)


def test_a_manifest_at_both_caps_parses_quickly() -> None:
    import time

    entries = [manifest.Entry(name=f"Spectrum_{i}.{'x' * 170}.raw", sha256=H) for i in range(4096)]
    raw = manifest.format(entries)
    assert len(raw) <= manifest.DEFAULT_MAX_BYTES
    start = time.perf_counter()
    parsed = manifest.parse(raw)
    elapsed = time.perf_counter() - start
    assert len(parsed.entries) == 4096
    assert all(parsed.get(e.name) == e for e in entries)
    assert elapsed < 2.0  # measured ≈ 0.04 s; a quadratic slip would blow this
