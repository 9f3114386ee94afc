# SPDX-License-Identifier: MIT
"""Fetcher backends: run the untrusted update VM (or sandbox) that writes into the share.

The host gives the VM read-only config, shares the ``shared`` subvolume writable, starts it, waits
with a timeout and guarantees on every exit path that it is stopped and can no longer write.
Nothing the VM says is trusted: its exit status decides only whether there is anything worth
inspecting.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from airlock.events import Reporter
from airlock.settings import ARGV, PATH, SECONDS, choice, setting


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchRequest:
    """What a fetch run gets.

    Attributes:
        config_dir: host directory holding the VM's config tree (``update-url``,
            ``vm-sysupdate.d/``, ``systemd/import-pubring.gpg``); shared read-only as ``etc/``.
        share: the ``shared`` subvolume; shared writable as ``updates/``.
        timeout_s: wall-clock bound for the whole VM run.
        command: argv run inside the VM/sandbox (from config; the agent by default).
        log_path: where the VM's console output goes (untrusted text; never echoed raw).
    """

    config_dir: Path
    share: Path
    timeout_s: float
    command: tuple[str, ...]
    log_path: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResult:
    """The VM's own account (untrusted: its exit status is a hint, not a verdict)."""

    exit_status: int | None
    duration_s: float
    log_tail: str = ""  # escaped


class Fetcher(Protocol):
    """Runs the untrusted downloader.  ``fetch`` returns only when it can no longer write."""

    def fetch(self, request: FetchRequest, reporter: Reporter) -> FetchResult:
        """Run one fetch.

        Raises:
            FetchError: the VM failed to start, timed out (it was killed) or failed.
        """


class FetcherName(enum.StrEnum):
    """Fetcher backends by config name (each has its own ``[fetcher.NAME]`` section)."""

    SANDBOX = "sandbox"
    QEMU = "qemu"
    SPECTRUM = "spectrum"


@dataclass(frozen=True, slots=True, kw_only=True)
class FetcherConfig:
    """``[fetcher]``: which backend runs the untrusted downloader, what it gets, how long."""

    SECTION: ClassVar[str] = "fetcher"

    backend: FetcherName = setting(
        FetcherName.SPECTRUM,
        kind=choice(FetcherName),
        flag="--fetcher",
        help="where the untrusted downloader runs: spectrum (Spectrum's VM), qemu, sandbox",
    )
    timeout_s: float = setting(
        6 * 3600.0,
        kind=SECONDS,
        flag="--timeout",
        help="wall-clock bound of one fetch; the VM or sandbox is stopped after it (the default"
        " lets a slow link bring a whole release in one run: a VM does not resume)",
    )
    command: tuple[str, ...] = setting(
        ("/usr/bin/airlock", "agent", "--share", "/host"),
        kind=ARGV,
        help="argv run inside the VM or sandbox (not used by spectrum: its VM decides)",
    )
    vm_definitions_dir: Path = setting(
        Path("/etc/vm-sysupdate.d"), kind=PATH, help="the VM's transfer files (copied to its etc/)"
    )
    update_url_file: Path = setting(
        Path("/etc/update-url"), kind=PATH, help="the release URL (copied to the VM's etc/)"
    )
