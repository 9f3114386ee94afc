# SPDX-License-Identifier: MIT
"""Limits, policy and host configuration: frozen values with Spectrum's defaults.

``Limits`` keeps every cap in one place (the role of python-tuf's ``UpdaterConfig``).  The defaults
admit Spectrum's real release sizes (a root image of about 20 GB) and refuse absurd ones.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1 << 30
MIB = 1 << 20
KIB = 1 << 10


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Caps on everything read from untrusted sources."""

    max_entries: int = 4096
    max_file_bytes: int = 64 * GIB
    max_total_bytes: int = 128 * GIB
    max_manifest_bytes: int = 1 * MIB
    max_manifest_lines: int = 4096
    max_signature_bytes: int = 64 * KIB
    max_keyring_bytes: int = 1 * MIB
    max_name_bytes: int = 255
    hash_threads: int = 2
    hash_buffer_bytes: int = 4 * MIB
    signature_timeout_s: float = 30.0
