# SPDX-License-Identifier: MIT
"""Progress events emitted by the orchestrator and the agent, and the Reporter protocol (no I/O).

Events never carry raw untrusted text: every string field holds text already passed through
``airlock.text.display()`` or a value we chose.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class Step(enum.StrEnum):
    """The pipeline's steps, in order."""

    LOCK = "lock"
    PREPARE = "prepare"
    CLEAN = "clean"
    FETCH = "fetch"
    FREEZE = "freeze"
    INSPECT = "inspect"
    VERIFY = "verify"
    APPLY = "apply"
    RECORD = "record"
    CLEANUP = "cleanup"
    # Agent-side steps (inside the VM).
    MANIFEST = "manifest"
    DOWNLOAD = "download"


@dataclass(frozen=True, slots=True, kw_only=True)
class StepStarted:
    """A step began."""

    step: Step
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StepProgress:
    """Progress inside a step: ``done`` of ``total`` ``unit`` (total 0 when unknown)."""

    step: Step
    done: int
    total: int
    unit: str = "bytes"
    item: str = ""
    rate: float = 0.0
    eta_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepFinished:
    """A step ended successfully."""

    step: Step
    duration_s: float
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """Something worth telling the user that is not a failure."""

    message: str
    step: Step | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    """A step failed; ``code`` is the AirlockError code."""

    step: Step | None
    code: str
    message: str


Event = StepStarted | StepProgress | StepFinished | Notice | Failed


class Reporter(Protocol):
    """Receives events; implementations live in ``airlock.cli.report``."""

    def emit(self, event: Event) -> None:
        """Handle one event."""


class NullReporter:
    """Discards every event."""

    def emit(self, event: Event) -> None:
        """Discard ``event``."""


class ListReporter:
    """Keeps every event (tests and the lab)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        """Record ``event``."""
        self.events.append(event)
