# SPDX-License-Identifier: MIT
"""RunContext: the config, the backends, the reporter and one reference time for a pipeline run.

The pipeline talks to four roles through small protocols so the orchestrator can be tested with
fakes: ``Staging`` (btrfs), ``Fetcher`` (the untrusted VM or sandbox), ``Inspector`` (the judge:
``untrusted.candidate.droppable`` and ``trusted.verify.judge``) and ``Applier`` (systemd-sysupdate).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Protocol

from airlock.backends.fetcher import Fetcher
from airlock.backends.staging import Staging
from airlock.config import HostConfig
from airlock.events import Reporter
from airlock.state import State


class Outcome(enum.StrEnum):
    """How a run ended (exit status 0 for both UPDATED and UP_TO_DATE)."""

    UPDATED = "updated"
    UP_TO_DATE = "up-to-date"
    AVAILABLE = "available"


class Signer(Protocol):
    """What the pipeline reads of a valid signature."""

    @property
    def fingerprint(self) -> str: ...
    @property
    def created(self) -> datetime: ...


class Judged(Protocol):
    """What the pipeline reads of a VerifiedRelease (``trusted/release.py``)."""

    @property
    def version(self) -> str | None: ...
    @property
    def newer(self) -> bool: ...
    @property
    def signers(self) -> Sequence[Signer]: ...
    @property
    def manifest_sha256(self) -> str: ...
    @property
    def bytes_hashed(self) -> int: ...
    @property
    def best_before(self) -> date | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Installed:
    """What systemd-sysupdate reports as installed (host-side, trusted)."""

    current: str | None
    versions: tuple[str, ...] = ()


class Inspector(Protocol):
    """The judge, bound to the host's transfers, keyring, limits and verifier."""

    def droppable(self, dir_fd: int) -> tuple[str, ...]:
        """Names the host may unlink from the writable snapshot before it is made read-only."""

    def judge(self, dir_fd: int, *, state: State, installed: str | None, now: datetime) -> Judged:
        """Verify the frozen snapshot; raise a ``RejectedError`` subclass or return the release."""


ProgressFn = Callable[[int, int], None]


class Applier(Protocol):
    """Installs a verified snapshot with systemd-sysupdate."""

    def installed(self) -> Installed:
        """The versions sysupdate sees installed on the host.

        Raises:
            ApplyError: sysupdate could not list them.
        """

    def apply(self, snapshot: Path, *, version: str, progress: ProgressFn) -> None:
        """Install ``version`` from the read-only snapshot.

        Raises:
            ApplyError: sysupdate failed.
        """


@dataclass(frozen=True, slots=True, kw_only=True)
class RunContext:
    """Everything one run needs.  ``now`` is the single reference time of the run."""

    config: HostConfig
    staging_dir: Path
    staging: Staging
    fetcher: Fetcher
    inspector: Inspector
    applier: Applier
    reporter: Reporter
    now: datetime
    wait_lock: bool = False
    fetch_timeout_s: float | None = None

    @property
    def vm_config_dir(self) -> Path:
        """The host-built config tree the VM sees read-only as ``etc/``."""
        return self.staging_dir / "vm-etc"
