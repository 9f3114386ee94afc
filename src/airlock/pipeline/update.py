# SPDX-License-Identifier: MIT
"""The update pipeline on one page: the order of the steps is the design (docs/design.md).

lock → prepare staging → clean share → fetch (the VM writes) → freeze (VM down, share unmounted,
snapshot, drop, read-only, syncfs) → inspect (judge the snapshot) → apply → record → cleanup.
The host's own facts (installed versions, boot entries, room, the keyring's listing) are read in a
thread during the freeze; the inspect step takes them (or their error) before it judges.
Everything is verified before anything is applied; the state file is written last; the snapshot
is deleted on every path.  ``update`` and ``check`` share every step up to the verdict
(``judged_snapshot``, the role of systemd-sysupdate's ``context_make_online()``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from airlock.events import Step
from airlock.pipeline.context import Outcome, RunContext
from airlock.pipeline.steps import (
    Inspected,
    apply,
    clean_share,
    fetch,
    freeze,
    host_facts,
    inspect_snapshot,
    notice,
    prepare_staging,
    record,
    take_lock,
)


@contextlib.contextmanager
def judged_snapshot(ctx: RunContext) -> Iterator[Inspected]:
    """Lock, prepare, clean, fetch, freeze and judge; the snapshot lives for the ``with`` block."""
    with take_lock(ctx), prepare_staging(ctx):
        clean_share(ctx)
        fetch(ctx)
        # What the judgement needs from the host is read beside the freeze (ADR 0176).
        with host_facts(ctx) as facts, freeze(ctx) as snapshot:
            yield inspect_snapshot(ctx, snapshot, facts)


def run_update(ctx: RunContext) -> Outcome:
    """Fetch, judge and install the newest verified release."""
    with judged_snapshot(ctx) as judged:
        release = judged.release
        if not release.newer or release.version is None:
            record(ctx, judged, applied=False)
            notice(ctx, f"up to date ({judged.installed or 'nothing installed'})", Step.INSPECT)
            return Outcome.UP_TO_DATE
        apply(ctx, judged)
        record(ctx, judged, applied=True)
    return Outcome.UPDATED


def run_check(ctx: RunContext) -> Outcome:
    """Everything but apply: say whether a newer verified version is available."""
    with judged_snapshot(ctx) as judged:
        record(ctx, judged, applied=False)
        if judged.release.newer and judged.release.version is not None:
            return Outcome.AVAILABLE
    return Outcome.UP_TO_DATE
