# SPDX-License-Identifier: MIT
"""Fakes for every backend of the host pipeline (the orchestrator is the component under test)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from airlock.assessment import Assessment
from airlock.backends.apply import Listing, ProgressFn
from airlock.backends.fetcher import FetcherConfig, FetchRequest, FetchResult
from airlock.backends.openpgp import ValidSignature
from airlock.backends.staging import CleanReport
from airlock.config import HostConfig, HostFiles
from airlock.errors import AirlockError
from airlock.events import ListReporter, Reporter
from airlock.formats import dialect
from airlock.lock import LockConfig
from airlock.pipeline.context import RunContext
from airlock.state import StateConfig
from airlock.trusted.policy import Baseline, Room
from airlock.trusted.release import VerifiedRelease

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SIGNED = datetime(2026, 11, 25, tzinfo=UTC)


def signer(created: datetime = SIGNED) -> ValidSignature:
    return ValidSignature(fingerprint="A" * 40, created=created, hash_algo=8)


def release(
    *,
    version: str | None = "2",
    newer: bool = True,
    signers: tuple[ValidSignature, ...] = (signer(),),
    best_before: date | None = None,
) -> VerifiedRelease:
    """The judge's real verdict type, as a fake judge returns it."""
    return VerifiedRelease(
        version=version,
        newer=newer,
        files=(),
        dropped=(),
        signers=signers,
        best_before=best_before,
        bytes_hashed=0,
        manifest_sha256="0" * 64,
    )


@dataclass
class Journal:
    """Every backend call, in order, plus failures to inject by call name."""

    calls: list[str] = field(default_factory=list)
    fail: dict[str, AirlockError] = field(default_factory=dict)

    def hit(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise self.fail[name]


class FakeStaging:
    def __init__(self, journal: Journal, root: Path) -> None:
        self.j = journal
        self.root = root
        self.snapshot_exists = False
        # What the VM sent (the snapshot's content); the judge itself is faked.
        self.delivered: tuple[str, ...] = ("SHA256SUMS", "SHA256SUMS.gpg")
        self.frozen: list[str] = []  # the snapshot's names when it was made read-only

    @property
    def share(self) -> Path:
        return self.root / "shared"

    @property
    def snapshot_path(self) -> Path:
        return self.root / "snapshot"

    def prepare(self) -> None:
        self.j.hit("prepare")
        self.share.mkdir(parents=True, exist_ok=True)

    def remove_stale(self) -> int:
        self.j.hit("remove_stale")
        return 0

    def clean_share(self) -> CleanReport:
        self.j.hit("clean_share")
        return CleanReport(removed=0, kept=0)

    def snapshot(self) -> Path:
        self.j.hit("snapshot")
        self.snapshot_path.mkdir()
        for name in self.delivered:
            (self.snapshot_path / name).write_bytes(b"")
        self.snapshot_exists = True
        return self.snapshot_path

    def drop(self, snapshot: Path, names: Sequence[str]) -> int:
        self.j.hit("drop")
        return len(names)

    def copy_signature(self, snapshot: Path, source: str, target: str, *, max_bytes: int) -> bool:
        self.j.hit("copy_signature")
        if (snapshot / target).exists() or not (snapshot / source).exists():
            return False
        (snapshot / target).write_bytes((snapshot / source).read_bytes())
        return True

    def make_read_only(self, snapshot: Path) -> None:
        self.j.hit("make_read_only")
        self.frozen = sorted(p.name for p in snapshot.iterdir())

    def sync(self, snapshot: Path) -> None:
        self.j.hit("sync")

    def delete_snapshot(self) -> bool:
        self.j.hit("delete_snapshot")
        existed = self.snapshot_exists
        if existed:
            shutil.rmtree(self.snapshot_path)
        self.snapshot_exists = False
        return existed


class FakeFetcher:
    def __init__(self, journal: Journal) -> None:
        self.j = journal
        self.requests: list[FetchRequest] = []

    def fetch(self, request: FetchRequest, reporter: Reporter) -> FetchResult:
        self.requests.append(request)
        self.j.hit("fetch")
        return FetchResult(exit_status=0, duration_s=0.0)


class FakeInspector:
    def __init__(self, journal: Journal, verdict: VerifiedRelease) -> None:
        self.j = journal
        self.verdict = verdict
        self.baselines: list[Baseline] = []
        self.warnings: tuple[str, ...] = ()
        self.listed = 0

    def droppable(self, dir_fd: int) -> tuple[str, ...]:
        self.j.hit("droppable")
        return (".#partial",)

    def list_keyring(self) -> None:
        self.listed += 1

    def judge(self, dir_fd: int, *, baseline: Baseline, now: datetime) -> VerifiedRelease:
        self.baselines.append(baseline)
        self.j.hit("judge")
        return self.verdict


class FakeApplier:
    def __init__(self, journal: Journal, current: str | None = "1") -> None:
        self.j = journal
        self.current = current
        self.applied: list[str] = []
        self.rooms: tuple[Room, ...] = ()
        # 262 moves on between signature names by itself: nothing to present under another name.
        self.rules: dialect.Dialect = dialect.V262
        # The running system: the installed version, booted and blessed (no boot counting).
        self.boot = Assessment(booted=current, blessed=current is not None, pending=(), failed=(),
                               entries=())  # fmt: skip

    @property
    def dialect(self) -> dialect.Dialect:
        return self.rules

    def installed(self) -> Listing:
        self.j.hit("installed")
        return Listing(current=self.current, versions=(self.current,) if self.current else ())

    def booted(self) -> Assessment:
        return self.boot

    def room(self) -> tuple[Room, ...]:
        return self.rooms

    def apply(self, snapshot: Path, *, version: str, progress: ProgressFn) -> None:
        self.j.hit("apply")
        progress(50, 100)
        self.applied.append(version)


@dataclass
class World:
    ctx: RunContext
    journal: Journal
    reporter: ListReporter
    staging: FakeStaging
    applier: FakeApplier
    inspector: FakeInspector
    config: HostConfig


_STATE = object()


def make_world(
    tmp_path: Path,
    *,
    verdict: VerifiedRelease | None = None,
    current: str | None = "1",
    state_path: Path | None | object = _STATE,
    wait: bool = False,
) -> World:
    keyring = tmp_path / "pubring.gpg"
    keyring.write_bytes(b"k")
    config = HostConfig(
        host=HostFiles(keyring=keyring),
        lock=LockConfig(path=tmp_path / "lock", wait=wait, wait_timeout_s=30.0),
        state=StateConfig(
            path=tmp_path / "state" / "state.json" if state_path is _STATE else state_path  # type: ignore[arg-type]  # a Path or None
        ),
        fetcher=FetcherConfig(
            vm_definitions_dir=tmp_path / "vm-defs", update_url_file=tmp_path / "update-url"
        ),
    )
    journal = Journal()
    reporter = ListReporter()
    staging = FakeStaging(journal, tmp_path / "staging")
    inspector = FakeInspector(journal, verdict or release())
    applier = FakeApplier(journal, current)
    ctx = RunContext(
        config=config,
        staging_dir=tmp_path / "staging",
        staging=staging,
        fetcher=FakeFetcher(journal),
        inspector=inspector,
        applier=applier,
        reporter=reporter,
        now=NOW,
    )
    return World(
        ctx=ctx,
        journal=journal,
        reporter=reporter,
        staging=staging,
        applier=applier,
        inspector=inspector,
        config=config,
    )
