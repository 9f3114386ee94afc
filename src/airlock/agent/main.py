# SPDX-License-Identifier: MIT
"""The update VM's downloader: ``airlock agent`` (runs INSIDE the VM; the host trusts none of it).

Steps (native mode): read the share's ``etc/`` → fetch ``SHA256SUMS`` and its signature under both
names → verify them with the host-provided keyring and stop if they are bad, before any payload is
fetched → choose the newest complete version → download the files not already present with the
right hash (a delta download from the previous version's files when the server has block
indexes, ``agent.delta``) → write the manifest and the signatures → drop versions beyond
``InstancesMax``.

The agent's verification only saves a pointless download: the host verifies everything again from
the frozen snapshot.  Signatures and the manifest are written last, so a run cut short leaves the
previous manifest next to the previous payloads (plus dot-temporaries the host deletes).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from airlock.agent import delta, selection, share, signed, sysupdate
from airlock.agent.fetch import Budget, Downloader, hash_file, partial_name, remove
from airlock.agent.options import Mode, Options, Outcome, Result
from airlock.agent.transport import source_for
from airlock.errors import FetchError
from airlock.events import Notice, Reporter, Step, StepFinished, StepStarted
from airlock.formats import definitions
from airlock.text import display

logger = logging.getLogger(__name__)


def run(options: Options, reporter: Reporter) -> Result:
    """Run the agent once; raises ``AirlockError`` (``FetchError`` for anything the server did)."""
    deadline = time.monotonic() + options.timeout_s
    config = share.read_share(options.share)
    source = source_for(
        config.url, stall_s=options.stall_s, deadline=deadline, ca_file=options.ca_file
    )
    budget = Budget(
        deadline=deadline,
        max_manifest_bytes=options.limits.max_manifest_bytes,
        max_signature_bytes=options.limits.max_signature_bytes,
        max_file_bytes=options.limits.max_file_bytes,
        max_total_bytes=options.limits.max_total_bytes,
    )
    downloader = Downloader(
        source,
        budget,
        reporter,
        fork=lambda: source_for(
            config.url, stall_s=options.stall_s, deadline=deadline, ca_file=options.ca_file
        ),
    )
    try:
        if options.mode == Mode.SYSUPDATE:
            with share.rendered_definitions(config) as directory:
                transfers = share.load_transfers(directory)
                return sysupdate.run(
                    config, directory, transfers, downloader, options, reporter, deadline=deadline
                )
        return _native(config, share.parse_transfers(config), downloader, options, reporter)
    finally:
        source.close()


def _native(
    config: share.ShareConfig,
    transfers: tuple[definitions.Transfer, ...],
    downloader: Downloader,
    options: Options,
    reporter: Reporter,
) -> Result:
    release = signed.fetch_release(
        downloader, keyring=config.keyring, options=options, reporter=reporter
    )
    chosen = selection.select(release.manifest, transfers)
    for name in chosen.ignored[:20]:
        logger.debug("ignoring manifest entry %s: no transfer accepts it", name)
    if chosen.ignored:
        reporter.emit(
            Notice(
                message=f"{len(chosen.ignored)} manifest entries match no transfer",
                step=Step.MANIFEST,
            )
        )
    started = time.monotonic()
    reporter.emit(StepStarted(step=Step.DOWNLOAD, detail=display(chosen.version or "nothing")))
    try:
        counts = _download(config, transfers, downloader, options, release, chosen)
    except OSError as exc:
        raise FetchError(
            f"Failed to write into the share's updates/: {exc.strerror}", code="fetch.write"
        ) from exc
    detail = f"{counts.files} files, {downloader.payload_bytes} bytes"
    if counts.reused:
        detail += f" fetched, {counts.reused} bytes reused"
    reporter.emit(
        StepFinished(step=Step.DOWNLOAD, duration_s=time.monotonic() - started, detail=detail)
    )
    return Result(
        outcome=Outcome.DOWNLOADED if counts.files else Outcome.NOTHING_NEW,
        version=chosen.version,
        files_downloaded=counts.files,
        payload_bytes=downloader.payload_bytes,
        signatures=tuple(n for n, _ in release.signatures),
        reused_bytes=counts.reused,
        index_bytes=counts.index,
    )


@dataclass(slots=True)
class _Counts:
    files: int = 0
    reused: int = 0
    index: int = 0


def _download(
    config: share.ShareConfig,
    transfers: tuple[definitions.Transfer, ...],
    downloader: Downloader,
    options: Options,
    release: signed.Release,
    chosen: selection.Selection,
) -> _Counts:
    """Fetch the missing files of ``chosen``, publish the manifest, tidy; count what was done."""
    counts = _Counts()
    by_name = {t.name: t for t in transfers}
    with signed.updates_dir(config.updates) as dir_fd:
        listing = os.listdir(dir_fd)
        for wanted in chosen.files:
            if len(partial_name(wanted.name).encode()) > options.limits.max_name_bytes:
                raise FetchError(
                    f"Refusing {display(wanted.name)}: name too long", code="fetch.name"
                )
            have = hash_file(dir_fd, wanted.name, limit=options.limits.max_file_bytes)
            if have == wanted.sha256:
                logger.debug("%s already present", display(wanted.name))
                continue
            seeds = delta.seeds(listing, by_name[wanted.transfer], chosen.version)
            if have is not None:  # a damaged or half-replaced copy: most of it may still be good
                seeds.insert(0, wanted.name)
            done = None
            if options.delta and (seeds or partial_name(wanted.name) in listing):
                index = delta.fetch_index(downloader, wanted.name, wanted.sha256)
                if index is not None:
                    done = delta.assemble(
                        downloader, dir_fd, wanted.name, wanted.sha256, index, seeds
                    )
            if done is None:
                downloader.download(dir_fd, wanted.name, wanted.sha256)
            else:
                counts.reused += done.reused_bytes
                counts.index += done.index_bytes
            counts.files += 1
        signed.publish_release(dir_fd, release)
        tidy(dir_fd, transfers, chosen)
    return counts


def tidy(
    dir_fd: int, transfers: tuple[definitions.Transfer, ...], chosen: selection.Selection
) -> None:
    """Keep at most InstancesMax versions per transfer; drop partial files of other names."""
    try:
        listing = os.listdir(dir_fd)
    except OSError as exc:
        raise FetchError(f"Failed to list updates/: {exc.strerror}", code="fetch.share") from exc
    enabled = tuple(t for t in transfers if t.enabled)
    for name in selection.stale(listing, enabled, keep=chosen.version):
        remove(dir_fd, name)
    wanted = {w.name for w in chosen.files}
    for name in listing:
        if name.startswith(".") and name.endswith((".partial", ".partial.validator")):
            base = name[1:].removesuffix(".validator").removesuffix(".partial")
            if base not in wanted:
                remove(dir_fd, name)
