# SPDX-License-Identifier: MIT
"""The agent's options and results: plain values (inside the VM)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from airlock.limits import Limits

DEFAULT_SHARE = Path("/host")
DEFAULT_TIMEOUT_S = 4 * 3600.0
DEFAULT_STALL_S = 60.0


class Mode(enum.StrEnum):
    """How payloads are fetched."""

    NATIVE = "native"
    SYSUPDATE = "sysupdate"


class Outcome(enum.StrEnum):
    """What a successful run did."""

    NOTHING_NEW = "nothing-new"
    DOWNLOADED = "downloaded"


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """One agent run."""

    share: Path = DEFAULT_SHARE
    mode: Mode = Mode.NATIVE
    timeout_s: float = DEFAULT_TIMEOUT_S
    stall_s: float = DEFAULT_STALL_S
    limits: Limits = field(default_factory=Limits)
    verifier: str = "auto"
    sysupdate_path: str | None = None
    sysupdate_tries: int = 5
    ca_file: str | None = None  # https: trust only these CAs (default: the VM's trust store)
    delta: bool = True  # use block indexes and the previous version's files


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """The agent's final word."""

    outcome: Outcome
    version: str | None
    files_downloaded: int
    payload_bytes: int  # payload bytes received (whole files and byte ranges)
    signatures: tuple[str, ...]
    reused_bytes: int = 0  # payload bytes found in files the VM already had
    index_bytes: int = 0  # bytes of block indexes used
