# SPDX-License-Identifier: MIT
"""``Teardown``: one command a teardown guard runs if airlock dies (``proc.teardown_guard``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Teardown:
    """One command a ``guard`` runs if airlock dies (see ``airlock/guard.py``).

    Attributes:
        argv: absolute program path and arguments.
        timeout_s: the step's process group is SIGKILLed after this.
        when: ``always``, or only if the step before ran and succeeded (``ok``) or failed
            (``failed``: a fallback).
        critical: its failure (unless a following ``failed`` step succeeds) fails the teardown.
    """

    argv: tuple[str, ...]
    timeout_s: float = 60.0
    when: str = "always"
    critical: bool = True

    def as_json(self) -> dict[str, object]:
        """The form the guard reads."""
        return {
            "argv": list(self.argv),
            "timeout_s": self.timeout_s,
            "when": self.when,
            "critical": self.critical,
        }
