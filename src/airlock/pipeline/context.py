# SPDX-License-Identifier: MIT
"""RunContext: the config, the backends, the reporter and one reference time for a pipeline run.

The pipeline talks to four roles through small protocols so the orchestrator can be tested with
fakes: ``Staging`` (btrfs), ``Fetcher`` (the untrusted VM or sandbox), ``Inspector`` (the judge,
``trusted.judge.Judge``) and ``Applier`` (systemd-sysupdate).  The judge's answer is the real
``VerifiedRelease``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from airlock.backends.apply import Applier
from airlock.backends.fetcher import Fetcher
from airlock.backends.staging import Staging
from airlock.config import HostConfig
from airlock.events import Reporter
from airlock.trusted.policy import Baseline
from airlock.trusted.release import VerifiedRelease


class Outcome(enum.StrEnum):
    """How a run ended (exit status 0 for both UPDATED and UP_TO_DATE)."""

    UPDATED = "updated"
    UP_TO_DATE = "up-to-date"
    AVAILABLE = "available"


class Inspector(Protocol):
    """The judge, bound to the host's transfers, keyring, verifier, policy and limits."""

    @property
    def warnings(self) -> tuple[str, ...]:
        """Weaknesses of the host's settings, told on every run (``trusted.judge.weaknesses``)."""

    def droppable(self, dir_fd: int) -> tuple[str, ...]:
        """Names the host may unlink from the writable snapshot before it is made read-only."""

    def list_keyring(self) -> None:
        """List the keyring ahead of ``judge()`` (in a thread, beside the freeze; never raises)."""

    def judge(self, dir_fd: int, *, baseline: Baseline, now: datetime) -> VerifiedRelease:
        """Verify the frozen snapshot; raise a ``RejectedError`` subclass or return the release."""


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

    @property
    def state_file(self) -> Path:
        """The state file: ``[state] path``, else ``state.json`` in the staging directory."""
        return self.config.state.file(self.staging_dir)

    @property
    def vm_config_dir(self) -> Path:
        """The host-built config tree the VM sees read-only as ``etc/``."""
        return self.staging_dir / "vm-etc"
