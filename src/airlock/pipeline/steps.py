# SPDX-License-Identifier: MIT
"""One function per pipeline step; each emits ``StepStarted`` and ``StepFinished`` (or ``Failed``).

Trust: the host config, the staging backend and sysupdate's own listing are trusted.  What the VM
wrote is reached only through the snapshot's directory fd handed to the inspector; its names never
become host paths here except via the inspector's ``droppable`` list (single components, unlinked
relative to the snapshot fd, never followed).  The state file is written last, after apply.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from airlock import fsutil, lock, state
from airlock.assessment import Assessment
from airlock.backends.fetcher import FetchRequest
from airlock.errors import AirlockError, ApplyError, ConfigError, FetchError, HostError
from airlock.events import Failed, Notice, Step, StepFinished, StepProgress, StepStarted
from airlock.formats import version
from airlock.pipeline import leftovers
from airlock.pipeline.context import RunContext
from airlock.text import display
from airlock.trusted.policy import Baseline, Room
from airlock.trusted.release import VerifiedRelease
from airlock.untrusted import candidate

logger = logging.getLogger(__name__)
LOG_NAME = "fetch.log"  # the VM's console (a copy for the spectrum fetcher), in the staging dir


@dataclass(frozen=True, slots=True, kw_only=True)
class Inspected:
    """What the inspect step knows: the snapshot, the verdict, and what it was judged against.

    Attributes:
        snapshot: the frozen, read-only snapshot (deleted when the freeze block ends).
        release: the judge's verdict.
        installed: the newest version sysupdate reported installed.
        state: the persisted state, loaded once for the run.
    """

    snapshot: Path
    release: VerifiedRelease
    installed: str | None
    state: state.State


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
        cfg = ctx.config.lock
        with step(ctx, Step.LOCK, os.fspath(cfg.path)):

            def waiting(pid: int | None) -> None:
                who = f"pid {pid}" if pid is not None else "another process"
                notice(ctx, f"waiting for the update lock ({who} holds it)", Step.LOCK)

            stack.enter_context(
                lock.hold(cfg.path, wait=cfg.wait, timeout_s=cfg.wait_timeout_s, on_wait=waiting)
            )
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
        if report.reset:
            detail.append("it held more than regular files: recreated empty")
        else:
            detail.append(f"removed {report.removed}, kept {report.kept}")


def provide_vm_config(ctx: RunContext) -> Path:
    """Copy the VM's config (transfers, URL, keyring) into a fresh host-owned directory.

    Spectrum copies rather than binds (design.md#spectrum-step-8); the VM sees it read-only.
    """
    cfg, out = ctx.config.fetcher, ctx.vm_config_dir
    if os.path.lexists(out):
        shutil.rmtree(out)
    try:
        (out / "systemd").mkdir(parents=True, mode=0o755)
        if cfg.vm_definitions_dir.is_dir():
            shutil.copytree(cfg.vm_definitions_dir, out / "vm-sysupdate.d", symlinks=True)
        if cfg.update_url_file.is_file():
            shutil.copy2(cfg.update_url_file, out / "update-url")
        shutil.copy2(ctx.config.host.keyring, out / "systemd" / "import-pubring.gpg")
    except OSError as exc:
        raise ConfigError(f"Failed to provide the VM's config: {exc}", code="config.vm") from exc
    for path in (out, *out.rglob("*")):
        if not path.is_symlink():  # a masked transfer is a /dev/null symlink: keep it as is
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return out


def fetch(ctx: RunContext) -> None:
    """Run the untrusted fetcher; it returns only when nothing of it can write any more."""
    cfg = ctx.config.fetcher
    with step(ctx, Step.FETCH, f"{cfg.backend}, timeout {cfg.timeout_s:g} s") as detail:
        config_dir = provide_vm_config(ctx)
        result = ctx.fetcher.fetch(
            FetchRequest(
                config_dir=config_dir,
                share=ctx.staging.share,
                timeout_s=cfg.timeout_s,
                command=cfg.command,
                log_path=ctx.staging_dir / LOG_NAME,
            ),
            ctx.reporter,
        )
        detail.append(f"exit status {result.exit_status} after {result.duration_s:.1f} s")


@contextlib.contextmanager
def freeze(ctx: RunContext) -> Iterator[Path]:
    """VM down and share unmounted → snapshot → drop → true read-only → syncfs; delete after."""
    try:
        with step(ctx, Step.FREEZE) as detail:
            leftover = fsutil.mounts_below(ctx.staging.share)
            if leftover:
                raise HostError(
                    "Refusing to snapshot: the share is still mounted", code="host.share-mounted"
                )
            snap = ctx.staging.snapshot()
            with fsutil.open_dir_nofollow(snap) as fd:
                names = ctx.inspector.droppable(fd)
            dropped = ctx.staging.drop(snap, names)
            _present_signature(ctx, snap, detail)
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


def _present_signature(ctx: RunContext, snapshot: Path, detail: list[str]) -> None:
    """Give systemd-sysupdate the signature name it reads, from the other name the VM sent.

    A sysupdate that does not move on from a missing signature name over ``file://``
    (``formats.dialect``: 257 reads only ``SHA256SUMS.gpg``) finds only the first of its names;
    Spectrum's VM sends only ``SHA256SUMS.sha256.asc`` (design.md#signature-names).  The same
    detached signature under the other name is the same signature (gpg reads armoured and binary
    alike); the judge verifies both files, so nothing is accepted that was not signed.  262 reads
    either name itself: nothing is copied for it.
    """
    rules = ctx.applier.dialect
    if rules.file_fallback:
        return
    wanted = rules.signature_names[0]
    for other in candidate.SIGNATURE_NAMES:
        if other != wanted and ctx.staging.copy_signature(
            snapshot, other, wanted, max_bytes=ctx.config.limits.max_signature_bytes
        ):
            detail.append(f"{wanted} from {other}")
            break


def cleanup(ctx: RunContext) -> None:
    """Delete the snapshot (always); ``shared`` is kept as the download cache."""
    with step(ctx, Step.CLEANUP):
        ctx.staging.delete_snapshot()


def _require_delivery(ctx: RunContext, dir_fd: int) -> None:
    """The VM must have sent a manifest and a signature file, or there is nothing to check.

    Spectrum's ``updates-dir-check check`` (design.md#spectrum-step-16) fails when no signature
    arrived, saying the download probably failed and to read the VM's log: a network failure is
    the usual cause, so it is "could not check" (20) with that hint, not a refusal (21).  Only
    absence counts here (host-chosen names, never followed); anything present is judged.

    Raises:
        FetchError: ``fetch.nothing`` (no ``SHA256SUMS``) or ``fetch.unsigned`` (no signature).
    """

    def present(name: str) -> bool:
        try:
            os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    hint = f"the download probably failed; see the update VM's log, {ctx.staging_dir / LOG_NAME}"
    if not present(candidate.MANIFEST_NAME):
        raise FetchError("The update VM sent no SHA256SUMS", code="fetch.nothing", hint=hint)
    if not any(present(name) for name in candidate.SIGNATURE_NAMES):
        raise FetchError(
            "The update VM sent SHA256SUMS but no signature file", code="fetch.unsigned", hint=hint
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HostFacts:
    """What the judgement is made against that only the host knows (nothing from the snapshot).

    Attributes:
        installed: the newest version sysupdate lists as installed (``--offline``).
        boot: the booted version and the boot entries in ``$BOOT``.
        room: the room of each target (partition sizes, ``$BOOT``'s free space).
    """

    installed: str | None
    boot: Assessment
    room: tuple[Room, ...]


class Gathering:
    """``HostFacts``, and the keyring's listing, read in a thread while the snapshot is frozen.

    ``systemd-sysupdate --offline list`` (≈ 0.2 s), the boot entries, the targets' room and
    ``gpg --show-keys`` read only the host's own disks and files, which the VM cannot reach and
    no other update changes while the lock is held, so reading them beside the freeze (``syncfs``
    and the snapshot: I/O) gives the judgement the same inputs, sooner (ADR 0176).  ``result()``
    raises what reading them raised, in the inspect step, as if it had read them itself; the
    thread is a daemon (an interrupted run does not wait for it at exit: its children's guards
    see airlock gone) and ``close()`` waits for it on every other path, so no child of it outlives
    the ``with`` block of ``host_facts``.
    """

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._facts: HostFacts | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, name="airlock-facts", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        ctx = self._ctx
        try:
            ctx.inspector.list_keyring()
            self._facts = HostFacts(
                installed=ctx.applier.installed().current,
                boot=ctx.applier.booted(),
                room=ctx.applier.room(),
            )
        except BaseException as exc:  # noqa: BLE001 - raised again by result(), in the step
            self._error = exc

    def close(self) -> None:
        """Wait for the thread (and so for every child it started)."""
        self._thread.join()

    def result(self) -> HostFacts:
        """The facts, or what reading them raised.

        Raises:
            ApplyError: ``apply.list`` and what else the applier raises.
        """
        self.close()
        if self._error is not None:
            raise self._error
        if self._facts is None:
            raise RuntimeError("the host facts thread ended without an answer")
        return self._facts


@contextlib.contextmanager
def host_facts(ctx: RunContext) -> Iterator[Gathering]:
    """Start reading the ``HostFacts``; the ``with`` block ends only when the reading has."""
    gathering = Gathering(ctx)
    try:
        yield gathering
    finally:
        gathering.close()


def inspect_snapshot(ctx: RunContext, snapshot: Path, facts: Gathering) -> Inspected:
    """Judge the frozen snapshot against the persisted state and what sysupdate has installed."""
    with step(ctx, Step.INSPECT) as detail:
        for warning in ctx.inspector.warnings:
            notice(ctx, f"warning: {warning}", Step.INSPECT)
        with fsutil.open_dir_nofollow(snapshot) as fd:
            _require_delivery(ctx, fd)
        host = facts.result()
        installed, boot = host.installed, host.boot
        saved = state.advance(
            state.load(ctx.state_file),
            state.Booted(version=boot.booted, blessed=boot.blessed, failed=boot.failed),
            ctx.now,
        )
        baseline = Baseline(
            floor=saved.floor,
            installed=installed or saved.installed,
            not_before=saved.newest_signature,
            room=host.room,
            fresh_required=saved.fresh_required,
        )
        with fsutil.open_dir_nofollow(snapshot) as fd:
            release = ctx.inspector.judge(fd, baseline=baseline, now=ctx.now)
        version = display(release.version) if release.version else "none"
        detail.append(
            f"verified {version}, {'newer' if release.newer else 'not newer'} than "
            f"{installed or 'nothing'}; {len(release.signers)} signature(s)"
        )
        if boot.booted is not None:
            detail.append(
                f"booted {display(boot.booted)}" + ("" if boot.blessed else " (on trial)")
            )
        if boot.failed:
            failed = ", ".join(display(v) for v in boot.failed)
            detail.append(f"failed to boot and rolled back: {failed}")
    return Inspected(snapshot=snapshot, release=release, installed=installed, state=saved)


def apply(ctx: RunContext, inspected: Inspected) -> None:
    """Install the verified release with systemd-sysupdate (progress forwarded)."""
    wanted = inspected.release.version
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

        ctx.applier.apply(inspected.snapshot, version=wanted, progress=progress)


def record(ctx: RunContext, inspected: Inspected, *, applied: bool) -> None:
    """Write the state file (atomically, last): ``state.advance`` over the state loaded once."""
    path = ctx.state_file
    with step(ctx, Step.RECORD, os.fspath(path)):
        release = inspected.release
        event = state.Verified(
            installed=inspected.installed,
            version=release.version,
            applied=applied,
            signed=tuple(s.created for s in release.signers),
            manifest_sha256=release.manifest_sha256,
            best_before=release.best_before,
        )
        state.save(path, state.advance(inspected.state, event, ctx.now))


def notice(ctx: RunContext, message: str, which: Step | None = None) -> None:
    """Tell the user something that is not a failure."""
    ctx.reporter.emit(Notice(message=message, step=which))
