# SPDX-License-Identifier: MIT
"""The GPT partition table, read for two numbers the judge needs before it hashes anything.

Pure: bytes in, ``Partition`` values or ``GptError`` out.  The disk is the host's own (trusted),
but it is still parsed with bounds: the header's signature, sizes and entry count are checked
before any entry is read, so a damaged table gives an error, not a huge allocation.

* ``partitions()``: each used entry's type GUID, label and size in bytes (the size of a slot that
  systemd-sysupdate may write: a payload larger than every candidate slot can never be installed,
  docs/adr/0160).
* ``type_guid()``: ``MatchPartitionType=`` (a GUID or one of the Discoverable Partitions names
  this module knows) as the upper-case GUID the table holds.
* ``label_units()``: a partition label's length in UTF-16 code units; GPT has room for 36
  (``MAX_LABEL_UNITS``), and sysupdate refuses a longer one only after it has vacuumed
  (docs/adr/0161).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from airlock.errors import HostError

SIGNATURE = b"EFI PART"
MAX_ENTRIES = 1024  # the UEFI minimum is 128; no real table needs more than this
MIN_ENTRY_BYTES = 128
MAX_ENTRY_BYTES = 4096
MAX_LABEL_UNITS = 36  # 72 bytes of UTF-16LE in an entry

# Discoverable Partitions Specification type GUIDs, for the names sysupdate accepts in
# MatchPartitionType= on the architectures Spectrum builds for.  ``root``/``usr`` without an
# architecture mean the host's own (``native`` below).
_TYPES: dict[str, str] = {
    "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    "xbootldr": "BC13C2FF-59E6-4262-A352-B275FD6F7172",
    "linux-generic": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
    "root-x86-64": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
    "root-x86-64-verity": "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5",
    "usr-x86-64": "8484680C-9521-48C6-9C11-B0720656F69E",
    "usr-x86-64-verity": "77FF5F63-E7B6-4633-ACF4-1565B864C0E6",
    "root-arm64": "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
    "root-arm64-verity": "DF3300CE-D69F-4C92-978C-9BFB0F38D820",
    "usr-arm64": "B0E01050-EE5F-4390-949A-9101B17104E9",
    "usr-arm64-verity": "6E11A4E7-FBCA-4DED-B9E9-E1A512BB664E",
}
# uname -m → systemd's architecture name
_ARCH = {"x86_64": "x86-64", "aarch64": "arm64"}


class GptError(HostError):
    """The bytes are not a GPT this module can read (``host.gpt``)."""

    default_code = "host.gpt"


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """Where the entries are: ``entries_lba`` (in sectors), how many, how long each is."""

    entries_lba: int
    count: int
    entry_bytes: int

    @property
    def table_bytes(self) -> int:
        """The bytes of the entry array."""
        return self.count * self.entry_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Partition:
    """One used GPT entry."""

    type_guid: str  # upper case, 8-4-4-4-12
    label: str
    size: int  # bytes


def header(raw: bytes) -> Header:
    """Parse the GPT header (the sector at LBA 1).

    Raises:
        GptError: no ``EFI PART`` signature, or sizes outside the bounds above.
    """
    if len(raw) < 92 or raw[:8] != SIGNATURE:
        raise GptError("no GPT header at LBA 1 (signature 'EFI PART' missing)")
    entries_lba, count, entry_bytes = struct.unpack_from("<QII", raw, 72)
    if not 0 < count <= MAX_ENTRIES or not MIN_ENTRY_BYTES <= entry_bytes <= MAX_ENTRY_BYTES:
        raise GptError(f"GPT header: {count} entries of {entry_bytes} bytes is out of bounds")
    if entries_lba < 2:
        raise GptError(f"GPT header: entries at LBA {entries_lba}")
    return Header(entries_lba=entries_lba, count=count, entry_bytes=entry_bytes)


def partitions(head: Header, table: bytes, *, sector: int) -> tuple[Partition, ...]:
    """The used entries of the entry array ``table`` (``head.table_bytes`` long).

    Raises:
        GptError: the array is short, or an entry ends before it starts.
    """
    if len(table) < head.table_bytes:
        raise GptError(f"GPT entry array: {len(table)} of {head.table_bytes} bytes")
    import uuid  # here: the judge reads GPT label bounds only, and uuid costs ≈ 2 ms to import

    out = []
    for i in range(head.count):
        entry = table[i * head.entry_bytes : (i + 1) * head.entry_bytes]
        if entry[:16] == bytes(16):
            continue  # unused
        first, last = struct.unpack_from("<QQ", entry, 32)
        if last < first:
            raise GptError(f"GPT entry {i + 1}: last LBA {last} before first {first}")
        label = entry[56:128].decode("utf-16-le", errors="replace").split("\0", 1)[0]
        out.append(
            Partition(
                type_guid=str(uuid.UUID(bytes_le=entry[:16])).upper(),
                label=label,
                size=(last - first + 1) * sector,
            )
        )
    return tuple(out)


def type_guid(value: str, *, machine: str) -> str | None:
    """``MatchPartitionType=`` as a GUID; ``None`` for a name this module has no GUID for.

    Args:
        value: a GUID or a name (``root``, ``root-verity``, ``root-x86-64``, ``esp``, …).
        machine: ``os.uname().machine`` of the host, for names without an architecture.
    """
    import uuid  # see partitions()

    try:
        return str(uuid.UUID(value)).upper()
    except ValueError:
        pass
    arch = _ARCH.get(machine)
    for base in ("root", "usr"):
        if arch is not None and (value == base or value.startswith(f"{base}-verity")):
            value = f"{base}-{arch}{value[len(base) :]}"
    return _TYPES.get(value)


def label_units(label: str) -> int:
    """The length of ``label`` in UTF-16 code units (a GPT label holds ``MAX_LABEL_UNITS``)."""
    return len(label.encode("utf-16-le", errors="surrogatepass")) // 2
