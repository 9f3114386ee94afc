# SPDX-License-Identifier: MIT
"""Fetcher backends: run the untrusted update VM (or sandbox) that writes into the share.

The host gives the VM read-only config, shares the ``shared`` subvolume writable, starts it, waits
with a timeout and guarantees on every exit path that it is stopped and can no longer write.
Nothing the VM says is trusted: its exit status decides only whether there is anything worth
inspecting.
"""

from __future__ import annotations

import enum
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from airlock.errors import ConfigError
from airlock.events import Reporter


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
    """Fetcher backends by config name."""

    SANDBOX = "sandbox"
    QEMU = "qemu"
    SPECTRUM = "spectrum"


_TABLE: dict[FetcherName, str] = {
    FetcherName.SANDBOX: "airlock.backends.fetcher.sandbox:SandboxFetcher",
    FetcherName.QEMU: "airlock.backends.fetcher.qemu:QemuFetcher",
    FetcherName.SPECTRUM: "airlock.backends.fetcher.spectrum:SpectrumFetcher",
}


def load(name: str) -> type:
    """The fetcher class for ``name`` (imported lazily).

    Raises:
        ConfigError: unknown name.
    """
    try:
        target = _TABLE[FetcherName(name)]
    except ValueError:
        raise ConfigError(
            f"Unknown fetcher {name!r}; choose one of: {', '.join(FetcherName)}",
            code="config.fetcher",
        ) from None
    module, _, attr = target.partition(":")
    cls: type = getattr(importlib.import_module(module), attr)
    return cls
