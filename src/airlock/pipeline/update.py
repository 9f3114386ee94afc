# SPDX-License-Identifier: MIT
"""The update pipeline on one page: the order of the steps is the design (spectrum-design §3.1).

lock → prepare staging → clean share → fetch (the VM writes) → freeze (VM down, share unmounted,
snapshot, drop, read-only, syncfs) → inspect (judge the snapshot) → apply → record → cleanup.
Everything is verified before anything is applied; the state file is written last; the snapshot
is deleted on every path.
"""

from __future__ import annotations

from airlock.events import Step
from airlock.pipeline.context import Outcome, RunContext
from airlock.pipeline.steps import (
    apply,
    clean_share,
    fetch,
    freeze,
    inspect_snapshot,
    notice,
    prepare_staging,
    record,
    take_lock,
)


def run_update(ctx: RunContext) -> Outcome:
    """Fetch, judge and install the newest verified release."""
    with take_lock(ctx), prepare_staging(ctx):
        clean_share(ctx)
        fetch(ctx)
        with freeze(ctx) as snapshot:
            release, installed = inspect_snapshot(ctx, snapshot)
            if not release.newer or release.version is None:
                record(ctx, release, applied=False, installed=installed)
                notice(ctx, f"up to date ({installed or 'nothing installed'})", Step.INSPECT)
                return Outcome.UP_TO_DATE
            apply(ctx, snapshot, release)
            record(ctx, release, applied=True, installed=installed)
    return Outcome.UPDATED


def run_check(ctx: RunContext) -> Outcome:
    """Everything but apply: say whether a newer verified version is available."""
    with take_lock(ctx), prepare_staging(ctx):
        clean_share(ctx)
        fetch(ctx)
        with freeze(ctx) as snapshot:
            release, installed = inspect_snapshot(ctx, snapshot)
            record(ctx, release, applied=False, installed=installed)
            if release.newer and release.version is not None:
                return Outcome.AVAILABLE
    return Outcome.UP_TO_DATE
