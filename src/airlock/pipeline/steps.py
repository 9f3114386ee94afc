# SPDX-License-Identifier: MIT
"""One function per pipeline step; each emits ``StepStarted`` and ``StepFinished`` (or ``Failed``).

Trust: the host config, the staging backend and sysupdate's own listing are trusted.  What the VM
wrote is reached only through the snapshot's directory fd handed to the inspector; its names never
become host paths here except via the inspector's ``droppable`` list (single components, unlinked
relative to the snapshot fd, never followed).  The state file is written last, after apply.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from airlock import fsutil, lock, state
from airlock.backends.fetcher import FetchRequest
from airlock.backends.staging.btrfs import mounts_below
from airlock.errors import AirlockError, ApplyError, ConfigError, HostError
from airlock.events import Failed, Notice, Step, StepFinished, StepProgress, StepStarted
from airlock.formats import version
from airlock.pipeline import leftovers
from airlock.pipeline.context import Judged, RunContext
from airlock.text import display

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def step(ctx: RunContext, which: Step, detail: str = "") -> Iterator[list[str]]:
    """Emit StepStarted, then StepFinished or Failed.  Append to the yielded list for a detail."""
    ctx.reporter.emit(StepStarted(step=which, detail=detail))
    start = time.monotonic()
    finished: list[str] = []
    try:
        yield finished
    except AirlockError as exc:
        ctx.reporter.emit(Failed(step=which, code=exc.code, message=exc.message))
        raise
    duration = time.monotonic() - start
    logger.debug("%.3f s for step %s", duration, which)
    ctx.reporter.emit(StepFinished(step=which, duration_s=duration, detail="; ".join(finished)))


@contextlib.contextmanager
def take_lock(ctx: RunContext) -> Iterator[None]:
    """Hold the global update lock for the rest of the run."""
    with contextlib.ExitStack() as stack:
        with step(ctx, Step.LOCK, os.fspath(ctx.config.lock_path)):
            stack.enter_context(lock.hold(ctx.config.lock_path, wait=ctx.wait_lock))
        yield


@contextlib.contextmanager
def prepare_staging(ctx: RunContext) -> Iterator[None]:
    """Stop what a killed earlier run left; staging dir (0700, btrfs), ``shared``, quota; stale
    snapshot and mounts.  Then record this run's children until the ``with`` block ends.

    Before ``shared`` is touched, whatever the run record of a dead earlier run names is stopped
    (``leftovers``): a VM or a namespace that could still write there.  Command lines are never
    consulted, so no local user can make the run busy.
    """
    with contextlib.ExitStack() as stack:
        with step(ctx, Step.PREPARE, os.fspath(ctx.staging_dir)) as detail:
            stopped = leftovers.stop_leftovers(ctx.staging_dir)
            if stopped:
                detail.append(str(stopped))
            ctx.staging.prepare()
            stack.enter_context(leftovers.RunRecord(ctx.staging_dir))
            stale = ctx.staging.remove_stale()
            if stale:
                detail.append(f"removed {stale} leftover(s) of an earlier run")
        yield


def clean_share(ctx: RunContext) -> None:
    """Remove what an earlier VM run left in ``shared`` (keeps cached downloads)."""
    with step(ctx, Step.CLEAN) as detail:
        report = ctx.staging.clean_share()
        detail.append(f"removed {report.removed}, kept {report.kept}")


def provide_vm_config(ctx: RunContext) -> Path:
    """Copy the VM's config (transfers, URL, keyring) into a fresh host-owned directory.

    Spectrum copies rather than binds (design §3.1 step 8); the VM sees it read-only.
    """
    cfg, out = ctx.config, ctx.vm_config_dir
    if os.path.lexists(out):
        shutil.rmtree(out)
    try:
        (out / "systemd").mkdir(parents=True, mode=0o755)
        if cfg.vm_definitions_dir.is_dir():
            shutil.copytree(cfg.vm_definitions_dir, out / "vm-sysupdate.d", symlinks=True)
        if cfg.update_url_file.is_file():
            shutil.copy2(cfg.update_url_file, out / "update-url")
        shutil.copy2(cfg.keyring, out / "systemd" / "import-pubring.gpg")
    except OSError as exc:
        raise ConfigError(f"Failed to provide the VM's config: {exc}", code="config.vm") from exc
    for path in (out, *out.rglob("*")):
        if not path.is_symlink():  # a masked transfer is a /dev/null symlink: keep it as is
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return out


def fetch(ctx: RunContext) -> None:
    """Run the untrusted fetcher; it returns only when nothing of it can write any more."""
    timeout = ctx.fetch_timeout_s or ctx.config.vm_timeout_s
    with step(ctx, Step.FETCH, f"{ctx.config.fetcher}, timeout {timeout:g} s") as detail:
        config_dir = provide_vm_config(ctx)
        result = ctx.fetcher.fetch(
            FetchRequest(
                config_dir=config_dir,
                share=ctx.staging.share,
                timeout_s=timeout,
                command=ctx.config.fetch_command,
                log_path=ctx.staging_dir / "fetch.log",
            ),
            ctx.reporter,
        )
        detail.append(f"exit status {result.exit_status} after {result.duration_s:.1f} s")


@contextlib.contextmanager
def freeze(ctx: RunContext) -> Iterator[Path]:
    """VM down and share unmounted → snapshot → drop → true read-only → syncfs; delete after."""
    try:
        with step(ctx, Step.FREEZE) as detail:
            leftover = mounts_below(ctx.staging.share)
            if leftover:
                raise HostError(
                    "Refusing to snapshot: the share is still mounted", code="host.share-mounted"
                )
            snap = ctx.staging.snapshot()
            with fsutil.open_dir_nofollow(snap) as fd:
                names = ctx.inspector.droppable(fd)
            dropped = ctx.staging.drop(snap, names)
            ctx.staging.make_read_only(snap)
            ctx.staging.sync(snap)
            detail.append(f"dropped {dropped}, read-only")
        yield snap
    except BaseException:
        # Delete the snapshot without letting a cleanup failure hide the original error.
        try:
            cleanup(ctx)
        except AirlockError as exc:
            logger.warning("cleanup after a failure failed too: %s", exc.message)
        raise
    else:
        cleanup(ctx)


def cleanup(ctx: RunContext) -> None:
    """Delete the snapshot (always); ``shared`` is kept as the download cache."""
    with step(ctx, Step.CLEANUP):
        ctx.staging.delete_snapshot()


def inspect_snapshot(ctx: RunContext, snapshot: Path) -> tuple[Judged, str | None]:
    """Judge the frozen snapshot; returns the verified release and the installed version."""
    with step(ctx, Step.INSPECT) as detail:
        installed = ctx.applier.installed().current
        current = state.load(ctx.config.state_file)
        with fsutil.open_dir_nofollow(snapshot) as fd:
            release = ctx.inspector.judge(fd, state=current, installed=installed, now=ctx.now)
        version = display(release.version) if release.version else "none"
        detail.append(
            f"verified {version}, {'newer' if release.newer else 'not newer'} than "
            f"{installed or 'nothing'}; {len(release.signers)} signature(s)"
        )
    return release, installed


def apply(ctx: RunContext, snapshot: Path, release: Judged) -> None:
    """Install the verified release with systemd-sysupdate (progress forwarded)."""
    wanted = release.version
    if wanted is None:
        raise RuntimeError("apply() called without a version")
    with step(ctx, Step.APPLY, display(wanted)):
        if not version.is_valid(wanted) or wanted.startswith("-"):
            # The judge guarantees this; it reaches sysupdate's argv, so check once more.
            raise ApplyError(
                f"Refusing to pass version {display(wanted)} to systemd-sysupdate",
                code="apply.version",
            )

        def progress(done: int, total: int) -> None:
            ctx.reporter.emit(StepProgress(step=Step.APPLY, done=done, total=total, unit="percent"))

        ctx.applier.apply(snapshot, version=wanted, progress=progress)


def record(ctx: RunContext, release: Judged, *, applied: bool, installed: str | None) -> None:
    """Write the state file (atomically, last): floor, newest signature, last check, pending."""
    with step(ctx, Step.RECORD, os.fspath(ctx.config.state_file)):
        old = state.load(ctx.config.state_file)
        newest = max((s.created for s in release.signers), default=None)
        if old.newest_signature is not None and (newest is None or newest < old.newest_signature):
            newest = old.newest_signature
        new = dataclasses.replace(
            old,
            last_check=ctx.now,
            newest_signature=newest,
            manifest_sha256=release.manifest_sha256,
        )
        if installed is not None:
            new = dataclasses.replace(new, installed=installed)
        if applied and release.version is not None:
            new = dataclasses.replace(new, pending=release.version)
        # The floor only rises: to the release just installed, or to what sysupdate reports as
        # installed (so a run killed between apply and record converges on the next run).
        for candidate in (release.version if applied else None, installed):
            if candidate is not None and (
                new.floor is None or version.compare(candidate, new.floor) > 0
            ):
                new = dataclasses.replace(new, floor=candidate)
        state.save(ctx.config.state_file, new)


def notice(ctx: RunContext, message: str, which: Step | None = None) -> None:
    """Tell the user something that is not a failure."""
    ctx.reporter.emit(Notice(message=message, step=which))
