# SPDX-License-Identifier: MIT
"""sysupdate mode: Spectrum's ``download-update`` for VM images that ship systemd-sysupdate.

Runs ``systemd-sysupdate --definitions=<rendered dir> update`` up to five times (one second apart)
through ``airlock.proc``, then fetches ``SHA256SUMS`` and both signature names into ``updates/``,
checking the signatures like native mode.  systemd-sysupdate reads its keyring from
``/etc/systemd/import-pubring.gpg`` (else the vendor keyring): each try runs in a private mount
namespace where the share's keyring is bound over both (``nsexec``), as Spectrum's VM overlays the
host's ``etc/`` on its ``/etc``, so sysupdate verifies with the host's key, not the VM image's.
The host checks everything again.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from airlock import proc
from airlock.agent.fetch import Downloader
from airlock.agent.options import Options, Outcome, Result
from airlock.agent.share import ShareConfig
from airlock.agent.signed import fetch_release, publish_release, updates_dir
from airlock.errors import CommandFailed, CommandTimedOut, FetchError, HostError
from airlock.events import Notice, Reporter, Step, StepFinished, StepStarted
from airlock.formats import definitions

RETRY_PAUSE_S = 1.0
NSEXEC = Path(__file__).with_name("nsexec.py")


def locate(explicit: str | None) -> str:
    """systemd-sysupdate: ``explicit``, ``$SYSTEMD_SYSUPDATE_PATH`` (Spectrum's) or usual paths."""
    for candidate in (
        explicit,
        os.environ.get("SYSTEMD_SYSUPDATE_PATH"),
        "/usr/lib/systemd/systemd-sysupdate",
        "/lib/systemd/systemd-sysupdate",
        shutil.which("systemd-sysupdate"),
    ):
        if candidate and os.path.isabs(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FetchError(
        "Failed to find systemd-sysupdate in the VM",
        code="fetch.sysupdate",
        hint="use --mode native, or set SYSTEMD_SYSUPDATE_PATH",
    )


def with_share_keyring(argv: list[str], *, keyring: Path, scratch: Path) -> list[str]:
    """``argv`` run where ``keyring`` is the one systemd-sysupdate reads (``nsexec``).

    A new private mount namespace (and, when not root, a user namespace mapping us to root in
    it, as Spectrum's ``unshare -mr``); the helper binds the keyring and execs ``argv``.
    """
    spec = {
        "keyring": os.fspath(keyring),
        "argv": argv,
        "env": proc.base_env({"SYSTEMD_LOG_COLOR": "0"}),
        "scratch": os.fspath(scratch),
    }
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    return [
        "unshare", "--mount", "--propagation", "private", *user, "--",
        sys.executable, "-I", "-S", os.fspath(NSEXEC), json.dumps(spec),
    ]  # fmt: skip


def _listing(updates: Path) -> frozenset[str]:
    try:
        return frozenset(n for n in os.listdir(updates) if not n.startswith("."))
    except OSError as exc:
        raise FetchError(f"Failed to list updates/: {exc.strerror}", code="fetch.share") from exc


def run(
    config: ShareConfig,
    directory: Path,
    transfers: tuple[definitions.Transfer, ...],
    downloader: Downloader,
    options: Options,
    reporter: Reporter,
    *,
    deadline: float,
) -> Result:
    """sysupdate mode; raises ``FetchError`` when every try failed or the manifest is unusable."""
    binary = locate(options.sysupdate_path)
    before = _listing(config.updates)
    started = time.monotonic()
    reporter.emit(StepStarted(step=Step.DOWNLOAD, detail="systemd-sysupdate update"))
    last = "no try started"
    ok = False
    for attempt in range(1, options.sysupdate_tries + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            last = "the time limit ran out"
            break
        try:
            with tempfile.TemporaryDirectory(prefix="airlock-agent-ns-") as scratch:
                proc.run(
                    with_share_keyring(
                        [binary, "--no-pager", f"--definitions={directory}", "update"],
                        keyring=config.keyring,
                        scratch=Path(scratch),
                    ),
                    timeout=remaining,
                )
        except (CommandFailed, CommandTimedOut, HostError) as exc:
            last = exc.message
            reporter.emit(
                Notice(message=f"systemd-sysupdate try {attempt} failed", step=Step.DOWNLOAD)
            )
            if attempt < options.sysupdate_tries:
                time.sleep(RETRY_PAUSE_S)
        else:
            ok = True
            break
    if not ok:
        raise FetchError(
            f"Failed to download with systemd-sysupdate ({options.sysupdate_tries} tries at "
            f"most): {last}",
            code="fetch.sysupdate",
        )
    new = sorted(_listing(config.updates) - before)
    reporter.emit(
        StepFinished(
            step=Step.DOWNLOAD,
            duration_s=time.monotonic() - started,
            detail=f"{len(new)} new files",
        )
    )
    release = fetch_release(downloader, keyring=config.keyring, options=options, reporter=reporter)
    try:
        with updates_dir(config.updates) as dir_fd:
            publish_release(dir_fd, release)
    except OSError as exc:
        raise FetchError(
            f"Failed to write into the share's updates/: {exc.strerror}", code="fetch.write"
        ) from exc
    del transfers  # sysupdate itself applies InstancesMax to its targets
    return Result(
        outcome=Outcome.DOWNLOADED if new else Outcome.NOTHING_NEW,
        version=None,
        files_downloaded=len(new),
        payload_bytes=sum(_size(config.updates / n) for n in new),
        signatures=tuple(n for n, _ in release.signatures),
    )


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0
