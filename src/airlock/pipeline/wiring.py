# SPDX-License-Identifier: MIT
"""Build a RunContext from the host config: each backend gets its own section.

The applier is made first: it locates systemd-sysupdate, and the judge applies that version's rules
(``formats.dialect``): it requires the signature file name that sysupdate reads (docs/adr/0004,
docs/sysupdate-versions.md).  The judge is ``trusted.judge.Judge``, built once
with the ``[host]`` files, ``[policy]`` and ``[limits]``, its verifier included; the verifier is
chosen in a thread while the runtime is located (ADR 0176).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from airlock.backends import openpgp
from airlock.backends.apply.sysupdate import SysupdateHostApplier
from airlock.backends.fetcher import Fetcher, FetcherName
from airlock.backends.fetcher.qemu import QemuFetcher
from airlock.backends.fetcher.sandbox import SandboxFetcher
from airlock.backends.fetcher.spectrum import SpectrumFetcher
from airlock.backends.staging.btrfs import BtrfsStaging
from airlock.config import HostConfig
from airlock.errors import ConfigError
from airlock.events import Reporter
from airlock.formats import dialect, updateurl
from airlock.formats.definitions import ResourceType, Transfer
from airlock.pipeline.context import RunContext
from airlock.text import display, shown
from airlock.trusted.judge import Judge


def make_fetcher(config: HostConfig) -> Fetcher:
    """The ``[fetcher] backend``, with its own ``[fetcher.NAME]`` section."""
    match config.fetcher.backend:
        case FetcherName.SANDBOX:
            return SandboxFetcher(config.sandbox)
        case FetcherName.QEMU:
            return QemuFetcher(config.qemu)
        case FetcherName.SPECTRUM:
            return SpectrumFetcher(config.spectrum)


def make_applier(config: HostConfig) -> SysupdateHostApplier:
    """systemd-sysupdate with ``[apply]`` and the ``[host]`` files."""
    return SysupdateHostApplier(
        config.apply,
        definitions=config.host.definitions_dir,
        keyring=config.host.keyring,
        os_release=config.host.os_release,
    )


def make_judge(
    config: HostConfig,
    *,
    appliers: tuple[dialect.Dialect, ...] = (),
    prepared: openpgp.Preparation | None = None,
) -> Judge:
    """The judge with the ``[host]`` files, ``[policy]``, ``[limits]`` and the applier's rules."""
    return Judge.build(
        definitions_dir=config.host.definitions_dir,
        os_release=config.host.os_release,
        keyring=config.host.keyring,
        policy=config.policy,
        limits=config.limits,
        appliers=appliers,
        prepared=prepared,
    )


def check_vm_inputs(config: HostConfig) -> None:
    """What the VM needs from the host must be there before anything starts (exit 3, not 20).

    ``update-url`` (one URL by Spectrum's rule) and at least one ``*.transfer`` in the VM's
    transfer directory; the keyring is checked by the judge, which needs it too.

    Raises:
        ConfigError: ``config.update-url`` or ``config.vm-transfers``.
    """
    cfg = config.fetcher
    try:
        raw = cfg.update_url_file.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"Failed to read the update URL {shown(cfg.update_url_file)}: {exc.strerror}",
            code="config.update-url",
            hint="it is written at build time (airlock render --update-url)",
        ) from exc
    try:
        updateurl.validate(raw)
    except ConfigError as exc:
        raise ConfigError(
            f"{shown(cfg.update_url_file)}: {exc.message}", code="config.update-url"
        ) from None
    if not any(cfg.vm_definitions_dir.glob("*.transfer")):
        raise ConfigError(
            f"No VM transfer files (*.transfer) in {shown(cfg.vm_definitions_dir)}",
            code="config.vm-transfers",
            hint="they are written at build time (airlock render)",
        )


def check_host_sources(transfers: Sequence[Transfer], mount_point: str) -> None:
    """Every enabled host transfer must install from the frozen snapshot, and only from it.

    The judge verifies what is in the snapshot, which sysupdate sees at ``[apply] mount_point``;
    a host transfer with another source (an ``https://`` URL, another directory, a ``tar``
    archive) would install bytes nobody judged.  So each must be ``Type=url-file`` with
    ``Path=file://MOUNT_POINT`` (docs/adr/0161).

    Raises:
        ConfigError: ``config.source``.
    """
    wanted = f"file://{mount_point.rstrip('/')}"
    for t in transfers:
        if not t.enabled:
            continue
        if t.source.type is not ResourceType.URL_FILE or t.source.path.rstrip("/") != wanted:
            raise ConfigError(
                f"Host transfer {display(t.name)} installs from {t.source.type.value}"
                f" {display(t.source.path)}, not url-file {wanted}: it would install bytes the"
                " judge never saw",
                code="config.source",
                hint=f"host transfers read the verified snapshot: [Source] Type=url-file,"
                f" Path={wanted} ([apply] mount_point)",
            )


def build_context(
    config: HostConfig, staging_dir: Path, *, reporter: Reporter, now: datetime
) -> RunContext:
    """A RunContext with the real backends (after ``check_vm_inputs``)."""
    check_vm_inputs(config)
    # The verifier's lookup (``sqv --version``) runs beside the runtime's
    # (``systemd-sysupdate --version``): ADR 0176.
    prepared = openpgp.Preparation(
        config.policy.verifier, config.host.keyring, limits=config.limits
    )
    try:
        fetcher = make_fetcher(config)
        applier = make_applier(config)
    except BaseException:
        prepared.wait()  # no child of its threads outlives the failed build
        raise
    judge = make_judge(config, appliers=(applier.dialect,), prepared=prepared)
    check_host_sources(judge.transfers, config.apply.mount_point)
    return RunContext(
        config=config,
        staging_dir=staging_dir,
        staging=BtrfsStaging(staging_dir, config.staging),
        fetcher=fetcher,
        inspector=judge,
        applier=applier,
        reporter=reporter,
        now=now,
    )
