# SPDX-License-Identifier: MIT
"""systemd-sysupdate 257 verbs (``SysupdateApplier``) and the pipeline's applier on top of them.

``SysupdateApplier`` only assembles the invocation; ``runtime.Runtime.run`` does the isolation.
Every invocation passes ``--definitions=`` (so nothing in ``/etc/sysupdate.d`` of the runtime can
leak in) and, when ``keyring`` is given, puts it read-only over ``/etc/systemd/import-pubring.gpg``
and over ``/usr/lib/systemd/import-pubring.gpg`` when that exists: sysupdate 257 silently falls
back to the vendor keyring when the first is missing (threat C6), and trixie ships one.

In the trixie runtime (a chroot) the definitions are bound at ``/run/airlock/definitions``, the ESP
at ``/run/airlock/esp`` (``SYSTEMD_ESP_PATH``), and the caller's extra binds (sources, targets,
image files) are added unchanged.  With the host's own sysupdate (Spectrum's
``/usr/lib/systemd/systemd-sysupdate``) every path is already where it is, so only what must
*replace* something is bound: the keyring where it is not already the file sysupdate reads, and
the caller's binds; nothing is created on the host's (read-only) ``/usr`` or ``/etc``
(``enter.py`` makes a mount point in a private writable view when one is missing).

Trusts its caller (the host pipeline) for every argument; the versions that come back from
``list``/``check-new`` derive from untrusted file names and are returned raw: display them with
``airlock.text.display()``.  Failures of the verbs that change the system raise ``ApplyError``.

``SysupdateHostApplier`` is the pipeline's ``Applier``: the same verbs with the host's ``[apply]``
settings, its definitions, keyring and os-release, and the snapshot bound read-only.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airlock import assessment, proc
from airlock.assessment import Assessment
from airlock.backends.apply import ApplyConfig, Listing, ProgressFn
from airlock.backends.apply import runtime as runtime_mod
from airlock.backends.apply.runtime import Bind, Notify, Runtime
from airlock.errors import ApplyError, HostError
from airlock.text import display, tail

logger = logging.getLogger(__name__)

DEFINITIONS = "/run/airlock/definitions"
ESP = "/run/airlock/esp"
KEYRING_TARGETS = ("/etc/systemd/import-pubring.gpg", "/usr/lib/systemd/import-pubring.gpg")


@dataclass(frozen=True, slots=True, kw_only=True)
class Invocation:
    """Where sysupdate finds its definitions, keyring, ESP and data."""

    definitions: Path
    keyring: Path | None = None
    esp: Path | None = None
    binds: tuple[Bind, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def definitions_arg(self, *, host: bool = False) -> str:
        """``--definitions=`` as sysupdate sees the directory (bound unless ``host``)."""
        return f"--definitions={os.fspath(self.definitions.absolute()) if host else DEFINITIONS}"

    def all_binds(self, *, host: bool = False) -> tuple[Bind, ...]:
        """The binds ``Runtime.run`` needs (``host``: the host's own sysupdate, no chroot)."""
        if not host:
            out = [Bind(source=self.definitions, target=DEFINITIONS, read_only=True)]
            if self.keyring is not None:
                out += [
                    Bind(source=self.keyring, target=t, read_only=True) for t in KEYRING_TARGETS
                ]
            if self.esp is not None:
                out.append(Bind(source=self.esp, target=ESP, read_only=False))
            return (*out, *self.binds)
        out = []
        if self.keyring is not None:
            etc, vendor = KEYRING_TARGETS
            if not _same_file(self.keyring, etc):
                out.append(Bind(source=self.keyring, target=etc, read_only=True))
            if os.path.exists(vendor) and not _same_file(self.keyring, vendor):
                out.append(Bind(source=self.keyring, target=vendor, read_only=True))
        return (*out, *self.binds)

    def all_env(self, *, host: bool = False) -> dict[str, str]:
        """The environment for sysupdate (``SYSTEMD_ESP_PATH`` when an ESP is given)."""
        env = dict(self.env)
        if self.esp is not None:
            env["SYSTEMD_ESP_PATH"] = os.fspath(self.esp.absolute()) if host else ESP
        return env


def _same_file(a: Path, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def parse_listing(res: proc.Completed) -> Listing:
    """The one reader of ``systemd-sysupdate --json=short list`` output.

    Raises:
        ApplyError: ``apply.list`` when sysupdate failed or printed something else.
    """
    try:
        doc = json.loads(res.stdout) if res.returncode == 0 else None
    except ValueError:
        doc = None
    versions = doc.get("all") if isinstance(doc, dict) else None
    current = doc.get("current") if isinstance(doc, dict) else None
    if not isinstance(versions, list) or not isinstance(current, str | None):
        detail = tail(res.stderr) if res.returncode != 0 else display(res.stdout)
        raise ApplyError(f"systemd-sysupdate list failed: {detail}", code="apply.list")
    return Listing(current=current, versions=tuple(str(v) for v in versions))


class SysupdateApplier:
    """Runs sysupdate verbs through a ``Runtime``.

    Args:
        runtime: from ``runtime.locate()``.
        timeout_s: for ``update`` (writing a multi-GB partition can take minutes).
        query_timeout_s: for ``list`` and ``check-new``.
    """

    def __init__(
        self, runtime: Runtime, *, timeout_s: float = 3600.0, query_timeout_s: float = 120.0
    ) -> None:
        self.runtime = runtime
        self.timeout_s = timeout_s
        self.query_timeout_s = query_timeout_s

    def _run(
        self, inv: Invocation, args: Sequence[str], *, timeout: float, notify: Notify | None = None
    ) -> proc.Completed:
        host = not self.runtime.chrooted
        return self.runtime.run(
            [inv.definitions_arg(host=host), *args],
            binds=inv.all_binds(host=host),
            env=inv.all_env(host=host),
            timeout=timeout,
            notify=notify,
        )

    def update(
        self,
        inv: Invocation,
        *,
        version: str | None = None,
        verify: bool = True,
        notify: Notify | None = None,
    ) -> proc.Completed:
        """``update [VERSION]``; raises ``ApplyError`` unless sysupdate exits 0."""
        args = [f"--verify={'yes' if verify else 'no'}", "update", *([version] if version else [])]
        res = self._run(inv, args, timeout=self.timeout_s, notify=notify)
        if res.returncode != 0:
            logger.debug("systemd-sysupdate update: %s", tail(res.stderr, lines=40))
            raise ApplyError(
                f"systemd-sysupdate update failed with status {res.returncode}: "
                f"{tail(res.stderr)}",
                code="apply.sysupdate",
            )
        return res

    def list_versions(self, inv: Invocation, *, offline: bool = False) -> Listing:
        """``list --json=short`` (``--offline``: installed versions only, no source read)."""
        args = ["--offline"] if offline else []
        res = self._run(inv, [*args, "--json=short", "list"], timeout=self.query_timeout_s)
        return parse_listing(res)

    def check_new(self, inv: Invocation) -> str | None:
        """``check-new --json=short``: the newest available version, or ``None``.

        sysupdate 257.13 exits 0 and prints ``{"available":"V"}`` or ``{"available":null}``
        (observed in the trixie runtime).
        """
        res = self._run(inv, ["--json=short", "check-new"], timeout=self.query_timeout_s)
        try:
            doc = json.loads(res.stdout)
        except ValueError:
            doc = None
        if res.returncode != 0 or not isinstance(doc, dict) or "available" not in doc:
            raise ApplyError(
                f"systemd-sysupdate check-new failed: {tail(res.stderr)}", code="apply.sysupdate"
            )
        available = doc["available"]
        return available if isinstance(available, str) else None


OS_RELEASE_TARGET = "/usr/lib/os-release"
OS_RELEASE_HOST = "/etc/os-release"


def _mount_point(path: Path) -> None:
    """Create ``path`` 0700 if missing (Spectrum's ``mkdir -p -m 0700 /run/updater``).

    Raises:
        HostError: ``host.mount-point`` when it cannot be made or is not a plain directory.
    """
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.ENOENT):
            raise HostError(
                f"Failed to create {os.fspath(path)}: {exc.strerror}", code="host.mount-point"
            ) from exc
        return  # a read-only parent: enter.py makes the mount point in a private view
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise HostError(
            f"Refusing mount point {os.fspath(path)}: not a directory of ours",
            code="host.mount-point",
        )


class SysupdateHostApplier:
    """The pipeline's ``Applier``: sysupdate with the host's definitions, keyring and binds.

    Binds: the host definitions and keyring (``Invocation``), the host's os-release (for ``%A``),
    the ESP when configured, ``[apply] binds`` (disk images, devices) at the same path, and, for
    ``update`` only, the read-only snapshot at ``[apply] mount_point``.
    """

    def __init__(
        self, config: ApplyConfig, *, definitions: Path, keyring: Path, os_release: Path
    ) -> None:
        self._config = config
        self._definitions = definitions
        self._keyring = keyring
        self._os_release = os_release
        self._sysupdate = SysupdateApplier(
            runtime_mod.locate(config.runtime_cache), timeout_s=config.timeout_s
        )

    @property
    def runtime(self) -> Runtime:
        """The systemd-sysupdate this applier runs (``airlock status`` shows it)."""
        return self._sysupdate.runtime

    @property
    def required_signature_files(self) -> tuple[str, ...]:
        """systemd-sysupdate 257 reads only ``SHA256SUMS.gpg`` (258+ also ``.sha256.asc``)."""
        return ("SHA256SUMS.gpg",) if self._sysupdate.runtime.version < 258 else ()

    def _invocation(self, snapshot: Path | None) -> Invocation:
        cfg = self._config
        binds = []
        if not self._sysupdate.runtime.chrooted:
            # The host's own sysupdate already sees the disks, the ESP and (usually) its
            # os-release where they are; Spectrum makes /run/updater 0700 (spectrum-step-1).
            if not _same_file(self._os_release, OS_RELEASE_HOST):
                binds.append(Bind(source=self._os_release, target=OS_RELEASE_HOST, read_only=True))
            if snapshot is not None:
                _mount_point(Path(cfg.mount_point))
        else:
            binds.append(Bind(source=self._os_release, target=OS_RELEASE_TARGET, read_only=True))
            binds += [Bind(source=p, target=os.fspath(p), read_only=False) for p in cfg.binds]
        if snapshot is not None:
            binds.append(Bind(source=snapshot, target=cfg.mount_point, read_only=True))
        return Invocation(
            definitions=self._definitions,
            keyring=self._keyring,
            esp=cfg.esp_path,
            binds=tuple(binds),
        )

    def installed(self) -> Listing:
        """``systemd-sysupdate --offline --json=short list``: installed versions only.

        Raises:
            ApplyError: ``apply.list``.
        """
        try:
            return self._sysupdate.list_versions(self._invocation(None), offline=True)
        except HostError as exc:
            raise ApplyError(
                f"Failed to list installed versions: {exc.message}", code="apply.list"
            ) from exc

    def booted(self) -> Assessment:
        """The booted version and the boot entries the host's definitions put in ``$BOOT``."""
        return assessment.observe_host(
            self._definitions, boot=self._config.esp_path, os_release=self._os_release
        )

    def apply(self, snapshot: Path, *, version: str, progress: ProgressFn) -> None:
        """``systemd-sysupdate update VERSION`` from the read-only snapshot.

        Raises:
            ApplyError: ``apply.sysupdate``.
        """

        def notify(fields: dict[str, str]) -> None:
            raw = fields.get("X_SYSUPDATE_PROGRESS", "")
            if raw.isdigit():
                progress(min(int(raw), 100), 100)

        try:
            self._sysupdate.update(self._invocation(snapshot), version=version, notify=notify)
        except HostError as exc:
            raise ApplyError(
                f"systemd-sysupdate failed to install {display(version)}: {exc.message}",
                code="apply.sysupdate",
            ) from exc
        progress(100, 100)
