# SPDX-License-Identifier: MIT
"""tests for airlock/formats/gpt.py: the header bounds, used entries, type names, label units."""

from __future__ import annotations

import struct
import uuid

import pytest

from airlock.formats import gpt

ROOT_X86 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"


def _header(count: int = 4, entry_bytes: int = 128, lba: int = 2) -> bytes:
    raw = bytearray(512)
    raw[:8] = gpt.SIGNATURE
    struct.pack_into("<QII", raw, 72, lba, count, entry_bytes)
    return bytes(raw)


def _entry(type_guid: str, first: int, last: int, label: str) -> bytes:
    raw = bytearray(128)
    raw[:16] = uuid.UUID(type_guid).bytes_le
    raw[16:32] = uuid.uuid4().bytes_le
    struct.pack_into("<QQ", raw, 32, first, last)
    name = label.encode("utf-16-le")
    raw[56 : 56 + len(name)] = name
    return bytes(raw)


def test_used_entries_with_type_label_and_size() -> None:
    head = gpt.header(_header())
    table = (
        _entry(ROOT_X86, 2048, 2048 + 16383, "Spectrum_1")
        + bytes(128)
        + _entry(ROOT_X86, 20480, 20480 + 16383, "_empty")
        + bytes(128)
    )
    parts = gpt.partitions(head, table, sector=512)
    assert [(p.type_guid, p.label, p.size) for p in parts] == [
        (ROOT_X86, "Spectrum_1", 8 << 20),
        (ROOT_X86, "_empty", 8 << 20),
    ]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\0" * 512, "signature"),
        (_header(count=0), "out of bounds"),
        (_header(count=gpt.MAX_ENTRIES + 1), "out of bounds"),
        (_header(entry_bytes=64), "out of bounds"),
        (_header(lba=1), "entries at LBA 1"),
    ],
)
def test_a_damaged_header_is_refused(raw: bytes, why: str) -> None:
    with pytest.raises(gpt.GptError, match=why) as info:
        gpt.header(raw)
    assert info.value.code == "host.gpt"


def test_a_short_table_or_a_backwards_entry_is_refused() -> None:
    head = gpt.header(_header(count=1))
    with pytest.raises(gpt.GptError, match="entry array"):
        gpt.partitions(head, b"\0" * 100, sector=512)
    with pytest.raises(gpt.GptError, match="before first"):
        gpt.partitions(head, _entry(ROOT_X86, 10, 9, "x"), sector=512)


@pytest.mark.parametrize(
    ("value", "machine", "guid"),
    [
        ("root", "x86_64", ROOT_X86),
        ("root-verity", "x86_64", "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5"),
        ("root-x86-64", "aarch64", ROOT_X86),
        ("root", "aarch64", "B921B045-1DF0-41C3-AF44-4C6F280D3FAE"),
        ("usr-verity", "aarch64", "6E11A4E7-FBCA-4DED-B9E9-E1A512BB664E"),
        (ROOT_X86.lower(), "riscv64", ROOT_X86),
        ("root", "riscv64", None),
        ("root-verity-sig", "x86_64", None),
        ("home", "x86_64", None),
    ],
)
def test_partition_type_names(value: str, machine: str, guid: str | None) -> None:
    assert gpt.type_guid(value, machine=machine) == guid


def test_label_units_count_utf16_code_units() -> None:
    assert gpt.label_units("Spectrum_1.0") == 12
    assert gpt.label_units("é") == 1
    assert gpt.label_units("\U0001f600") == 2  # a surrogate pair
    assert gpt.MAX_LABEL_UNITS == 36
