# SPDX-License-Identifier: MIT
"""Build a RunContext from a HostConfig: the real backends behind the pipeline's protocols.

``HostInspector`` binds the judge (``trusted.verify.judge``) to the host's transfer definitions,
keyring, limits, trusted fingerprints and the persisted floor/signature time.
``SysupdateHostApplier`` runs systemd-sysupdate 257 (``backends/apply``) with the read-only
snapshot bind-mounted read-only at the configured mount point.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from datetime import datetime
from pathlib import Path

from airlock.backends import fetcher as fetcher_pkg
from airlock.backends.apply.runtime import Bind
from airlock.backends.apply.sysupdate import DEFINITIONS, Invocation
from airlock.backends.fetcher import Fetcher
from airlock.backends.staging.btrfs import BtrfsStaging
from airlock.config import HostConfig
from airlock.errors import AirlockError, ApplyError, ConfigError, HostError
from airlock.events import Reporter
from airlock.formats import dialect
from airlock.pipeline.context import Installed, Judged, ProgressFn, RunContext
from airlock.state import State
from airlock.text import display, tail

logger = logging.getLogger(__name__)

OS_RELEASE_TARGET = "/usr/lib/os-release"


class HostInspector:
    """The judge bound to this host's configuration."""

    def __init__(self, config: HostConfig) -> None:
        from airlock.backends import openpgp
        from airlock.formats import definitions

        self._config = config
        try:
            os_release = config.os_release.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"Failed to read {config.os_release}: {exc.strerror}", code="config.os-release"
            ) from exc
        specifiers = definitions.Specifiers.from_os_release(os_release)
        self._transfers = definitions.load_dir(config.definitions_dir, specifiers=specifiers)
        if not self._transfers:
            raise ConfigError(
                f"No transfer definitions in {config.definitions_dir}", code="config.definition"
            )
        if not config.keyring.is_file():
            raise ConfigError(f"Keyring {config.keyring} is missing", code="config.keyring")
        self._verifier = openpgp.verifier(config.verifier)

    def _appliers(self) -> tuple[dialect.Dialect, ...]:
        """The rules of the systemd-sysupdate that will apply (``formats.dialect``)."""
        from airlock.backends.apply import runtime

        try:
            major = runtime.locate(self._config.sysupdate_runtime_cache).version
        except AirlockError:
            return dialect.TABLE  # apply will fail clearly anyway; until then, every rule
        return (dialect.for_version(major),)

    def droppable(self, dir_fd: int) -> tuple[str, ...]:
        """Dot-temporaries and stale versions the host may unlink before freezing."""
        from airlock.untrusted import candidate

        try:
            return tuple(
                candidate.droppable(dir_fd, transfers=self._transfers, limits=self._config.limits)
            )
        except OSError as exc:
            raise HostError(
                f"Failed to read the snapshot: {exc.strerror}", code="host.snapshot"
            ) from exc

    def judge(self, dir_fd: int, *, state: State, installed: str | None, now: datetime) -> Judged:
        """Run ``trusted.verify.judge`` with the host policy."""
        from airlock.trusted import verify
        from airlock.trusted.policy import Policy

        cfg = self._config
        policy = Policy(
            trusted_fingerprints=frozenset(cfg.trusted_fingerprints),
            threshold=cfg.threshold,
            floor=state.floor,
            installed=installed or state.installed,
            not_before=state.newest_signature,
            require_fresh=cfg.require_fresh,
            appliers=self._appliers(),
        )
        release: Judged = verify.judge(
            dir_fd,
            transfers=self._transfers,
            keyring=cfg.keyring,
            policy=policy,
            limits=cfg.limits,
            verifier=self._verifier,
            now=now,
        )
        return release


class SysupdateHostApplier:
    """systemd-sysupdate 257 (``backends/apply``) with the snapshot read-only at the mount point.

    Binds: the host definitions and keyring (``Invocation``), the host's os-release (for ``%A``),
    the ESP directory when configured, ``apply_binds`` (disk images, devices) at the same path,
    and, for ``update`` only, the read-only snapshot at ``mount_point`` (``file:///run/updater``).
    """

    def __init__(self, config: HostConfig) -> None:
        from airlock.backends.apply import runtime, sysupdate

        self._config = config
        self._sysupdate = sysupdate.SysupdateApplier(
            runtime.locate(config.sysupdate_runtime_cache), timeout_s=config.apply_timeout_s
        )

    def _invocation(self, snapshot: Path | None) -> Invocation:
        cfg = self._config
        binds = [Bind(source=cfg.os_release, target=OS_RELEASE_TARGET, read_only=True)]
        binds += [Bind(source=p, target=os.fspath(p), read_only=False) for p in cfg.apply_binds]
        if snapshot is not None:
            binds.append(Bind(source=snapshot, target=cfg.mount_point, read_only=True))
        return Invocation(
            definitions=cfg.definitions_dir,
            keyring=cfg.keyring,
            esp=cfg.esp_path,
            binds=tuple(binds),
        )

    def installed(self) -> Installed:
        """``systemd-sysupdate --offline --json=short list``: installed versions only.

        ``--offline`` keeps sysupdate from reading the (absent) source; ``SysupdateApplier.
        list_versions`` has no such switch yet, so the runtime is called with its invocation.
        """
        inv = self._invocation(None)
        try:
            res = self._sysupdate.runtime.run(
                [f"--definitions={DEFINITIONS}", "--offline", "--json=short", "list"],
                binds=inv.all_binds(self._sysupdate.runtime),
                env=inv.all_env(self._sysupdate.runtime),
                timeout=120.0,
            )
        except HostError as exc:
            raise ApplyError(
                f"Failed to list installed versions: {exc.message}", code="apply.list"
            ) from exc
        try:
            doc = json.loads(res.stdout) if res.returncode == 0 else None
            current = doc.get("current") if isinstance(doc, dict) else None
            versions = tuple(str(v) for v in doc.get("all", ())) if isinstance(doc, dict) else ()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise ApplyError(
                f"systemd-sysupdate list failed: {tail(res.stderr)}", code="apply.list"
            )
        return Installed(current=str(current) if current is not None else None, versions=versions)

    def apply(self, snapshot: Path, *, version: str, progress: ProgressFn) -> None:
        """``systemd-sysupdate update VERSION`` from the read-only snapshot."""

        def notify(fields: dict[str, str]) -> None:
            raw = fields.get("X_SYSUPDATE_PROGRESS", "")
            if raw.isdigit():
                progress(min(int(raw), 100), 100)

        try:
            self._sysupdate.update(self._invocation(snapshot), version=version, notify=notify)
        except HostError as exc:
            raise ApplyError(
                f"systemd-sysupdate failed to install {display(version)}: " f"{exc.message}",
                code="apply.sysupdate",
            ) from exc
        progress(100, 100)


def make_fetcher(config: HostConfig, name: str) -> Fetcher:
    """The configured fetcher backend."""
    try:
        cls = fetcher_pkg.load(name)
    except ImportError as exc:
        raise ConfigError(
            f"Fetcher {display(name)} is not available in this build",
            code="config.fetcher",
            hint="use --fetcher sandbox",
        ) from exc
    if name == fetcher_pkg.FetcherName.SANDBOX:
        fetcher: Fetcher = cls(
            root=config.sandbox_root, netns=config.sandbox_netns, ro_binds=config.sandbox_ro_binds
        )
        return fetcher
    made: Fetcher = cls(config=config)
    return made


def build_context(
    config: HostConfig,
    staging_dir: Path,
    *,
    reporter: Reporter,
    now: datetime,
    fetcher: str | None = None,
    wait_lock: bool = False,
    fetch_timeout_s: float | None = None,
) -> RunContext:
    """A RunContext with the real backends (``fetcher`` overrides the configured one)."""
    config = dataclasses.replace(config, fetcher=fetcher or config.fetcher)
    return RunContext(
        config=config,
        staging_dir=staging_dir,
        staging=BtrfsStaging(staging_dir, qgroup_limit_bytes=config.qgroup_limit_bytes),
        fetcher=make_fetcher(config, config.fetcher),
        inspector=HostInspector(config),
        applier=SysupdateHostApplier(config),
        reporter=reporter,
        now=now,
        wait_lock=wait_lock,
        fetch_timeout_s=fetch_timeout_s,
    )
