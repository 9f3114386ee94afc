# SPDX-License-Identifier: MIT
"""formats.names: Spectrum's safe-name grammar, table-driven."""

from __future__ import annotations

import pytest

from airlock.errors import InspectionError, RejectedError
from airlock.formats import names

ACCEPTED = (
    "a", "Z", "SHA256SUMS", "SHA256SUMS.gpg", "Spectrum_1.2.root", "uki-1.efi", "a..b",
    "a-", "a_", "x" * 255, "A0", "a.b.c-d_e",
)  # fmt: skip

REFUSED = (
    ("", "empty"),
    (".", "start"),
    ("..", "start"),
    (".hidden", "start"),
    (".#sysupdate.tmp", "start"),
    ("-rf", "start"),
    ("_a", "start"),
    ("0abc", "start"),
    ("a/b", "'/'"),
    ("a\x00b", "byte 0x00"),
    ("a b", "' '"),
    ("a\nb", "byte 0x0a"),
    ("abc\n", "byte 0x0a"),
    ("a\tb", "byte 0x09"),
    ("a\x1b[31m", "byte 0x1b"),
    ("a~1", "'~'"),
    ("a+1", "'+'"),
    ("a,1", "','"),
    ("a:b", "':'"),
    ("a*", "'*'"),
    ("abc.", "end"),
    ("a.", "end"),
    ("é", "start"),
    ("aé", "byte 0xc3"),
    ("a\u202eb", "byte 0xe2"),  # bidi override
    ("a\u200bb", "byte 0xe2"),  # zero-width space
    ("x" * 256, "longer"),
)


@pytest.mark.parametrize("name", ACCEPTED)
def test_safe_names_are_accepted(name: str) -> None:
    assert names.is_safe(name)
    assert names.is_safe(name.encode())
    assert names.parse(name) == name
    assert names.parse(name.encode()) == name


@pytest.mark.parametrize(("name", "why"), REFUSED)
def test_unsafe_names_are_refused(name: str, why: str) -> None:
    assert not names.is_safe(name)
    assert not names.is_safe(name.encode("utf-8", "surrogateescape"))
    with pytest.raises(InspectionError) as info:
        names.parse(name)
    assert isinstance(info.value, RejectedError)
    assert info.value.code == "reject.name"
    assert why in info.value.message
    # The message is printable ASCII and never quotes the raw name.
    assert info.value.message.isascii()
    assert info.value.message.isprintable()


@pytest.mark.parametrize("raw", [b"a\xff", b"\xff", b"a\xc3", b"ab\x80c", "a\udcffb"], ids=repr)
def test_non_utf8_bytes_are_refused(raw: bytes | str) -> None:
    assert not names.is_safe(raw)
    with pytest.raises(InspectionError, match="byte 0x"):
        names.parse(raw)


def test_length_counts_bytes() -> None:
    assert names.is_safe("a" * 255)
    assert not names.is_safe("a" * 256)
    assert not names.is_safe(b"a" * 256)
