# SPDX-License-Identifier: MIT
"""systemd-sysupdate verbs (``SysupdateApplier``; 257 and later) and the pipeline's applier on them.

``SysupdateApplier`` only assembles the invocation; ``runtime.Runtime.run`` does the isolation.
Every invocation:

* in a runtime root (a chroot), binds the transfer definitions read-only at
  ``/run/airlock/definitions`` and passes ``--definitions=`` (so nothing in the runtime's
  ``/etc/sysupdate.d`` can leak in), binds the ESP writable at ``/run/airlock/esp``
  (``SYSTEMD_ESP_PATH``) and the host keyring read-only over **every** keyring path the runtime's
  sysupdate may read (``formats.dialect``: 257 falls back to the vendor keyring under ``/usr/lib``
  when ``/etc``'s is missing, threat C6; 258+ read ``.pgp`` names; 262 trusts the vendor keyring
  *in addition* to ``/etc``'s, and both runtimes ship one);
* with the host's own sysupdate (Spectrum's ``/usr/lib/systemd/systemd-sysupdate``) every path is
  already where it is (``--definitions=`` and ``SYSTEMD_ESP_PATH`` name the real ones), so only
  what must *replace* something is bound: the keyring over each keyring path of that version that
  exists and is not already the same file, and over the first ``/etc`` one when none of those
  exists; nothing is created on the host's (read-only) ``/usr`` or ``/etc`` (``enter.py`` makes a
  mount point in a private writable view when one is missing);
* where the version honours it, points ``SYSTEMD_OPENPGP_KEYRING`` at the host keyring: only the
  host's keys count;
* adds the caller's extra binds (sources, targets, image files) unchanged.

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
from airlock.backends.apply import room as room_mod
from airlock.backends.apply import runtime as runtime_mod
from airlock.backends.apply.runtime import Bind, Notify, Runtime
from airlock.errors import ApplyError, HostError
from airlock.formats import definitions, dialect
from airlock.formats.version import key as version_key
from airlock.text import display, tail
from airlock.trusted.policy import Room

logger = logging.getLogger(__name__)

DEFINITIONS = "/run/airlock/definitions"
ESP = "/run/airlock/esp"


def keyring_targets(rt: Runtime, keyring: Path) -> tuple[str, ...]:
    """The keyring paths ``rt``'s sysupdate may read, to bind the host ``keyring`` over.

    In a runtime root every one (a missing mount point is made in the run's overlay).  On the
    host, those that exist and are not already ``keyring`` (sysupdate reads no path that does not
    exist), and the first ``/etc`` one when no ``/etc`` one exists, so that what sysupdate reads
    first is the host keyring, never only the vendor's (a missing mount point is made in a
    private view of its directory, never on the host's ``/etc``).
    """
    paths = dialect.for_version(rt.version).keyrings
    if rt.chrooted:
        return paths
    etc = [p for p in paths if p.startswith("/etc/")]
    out = [p for p in paths if os.path.lexists(p) and not _same_file(keyring, p)]
    if etc and not any(os.path.lexists(p) for p in etc):
        out.insert(0, etc[0])
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Invocation:
    """Where sysupdate finds its definitions, keyring, ESP and data."""

    definitions: Path
    keyring: Path | None = None
    esp: Path | None = None
    binds: tuple[Bind, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def definitions_arg(self, rt: Runtime) -> str:
        """``--definitions=`` as ``rt``'s sysupdate sees the directory (bound in a chroot)."""
        path = DEFINITIONS if rt.chrooted else os.fspath(self.definitions.absolute())
        return f"--definitions={path}"

    def all_binds(self, rt: Runtime) -> tuple[Bind, ...]:
        """The binds ``rt.run`` needs for this invocation."""
        out: list[Bind] = []
        if rt.chrooted:
            out.append(Bind(source=self.definitions, target=DEFINITIONS, read_only=True))
        if self.keyring is not None:
            out += [
                Bind(source=self.keyring, target=t, read_only=True)
                for t in keyring_targets(rt, self.keyring)
            ]
        if self.esp is not None and rt.chrooted:
            out.append(Bind(source=self.esp, target=ESP, read_only=False))
        return (*out, *self.binds)

    def all_env(self, rt: Runtime) -> dict[str, str]:
        """The environment for ``rt``'s sysupdate: ``SYSTEMD_ESP_PATH`` when an ESP is given,
        the keyring override where the version honours one."""
        env = dict(self.env)
        if self.esp is not None:
            env["SYSTEMD_ESP_PATH"] = ESP if rt.chrooted else os.fspath(self.esp.absolute())
        rules = dialect.for_version(rt.version)
        if self.keyring is not None and rules.keyring_env is not None:
            seen = rules.keyrings[0] if rt.chrooted else os.fspath(self.keyring.absolute())
            env[rules.keyring_env] = seen
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
    current = None
    if isinstance(doc, dict):  # 262 says "current+pending" when that version is only acquired
        current = doc.get("current", doc.get("current+pending"))
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
        return self.runtime.run(
            [inv.definitions_arg(self.runtime), *args],
            binds=inv.all_binds(self.runtime),
            env=inv.all_env(self.runtime),
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

    def settled(self, inv: Invocation, version: str) -> bool:
        """Whether ``version`` is installed and neither partial nor pending (``list VERSION``).

        260+ keep what a failed or interrupted acquire left as a *partial* or *pending*
        instance (``formats.dialect.partial_instances``), list it as installed, and refuse to
        update that version until ``vacuum`` removes it.

        Raises:
            ApplyError: ``apply.list`` when sysupdate fails or prints something else.
        """
        args = ["--offline", "--json=short", "list", version]
        res = self._run(inv, args, timeout=self.query_timeout_s)
        try:
            doc = json.loads(res.stdout) if res.returncode == 0 else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or doc.get("version") != version:
            raise ApplyError(
                f"systemd-sysupdate list {display(version)} failed: {tail(res.stderr)}",
                code="apply.list",
            )
        return doc.get("installed") is True and not doc.get("partial") and not doc.get("pending")

    def vacuum(self, inv: Invocation) -> None:
        """``vacuum``: partial and pending instances go, and what exceeds ``InstancesMax``.

        (``update`` removes the same and one more, so it takes nothing ``update`` would keep.)

        Raises:
            ApplyError: ``apply.sysupdate``.
        """
        res = self._run(inv, ["--offline", "vacuum"], timeout=self.query_timeout_s)
        if res.returncode != 0:
            raise ApplyError(
                f"systemd-sysupdate vacuum failed: {tail(res.stderr)}", code="apply.sysupdate"
            )

    def list_versions(self, inv: Invocation, *, offline: bool = False) -> Listing:
        """``list --json=short`` (``--offline``: installed versions only, no source read)."""
        args = ["--offline"] if offline else []
        res = self._run(inv, [*args, "--json=short", "list"], timeout=self.query_timeout_s)
        return parse_listing(res)

    def check_new(self, inv: Invocation) -> str | None:
        """``check-new --json=short``: the newest available version, or ``None``.

        It prints ``{"available":"V"}`` or ``{"available":null}``; 257.13 exits 0 either way, 262
        exits 1 when nothing is available (both observed in the runtimes).
        """
        res = self._run(inv, ["--json=short", "check-new"], timeout=self.query_timeout_s)
        try:
            doc = json.loads(res.stdout)
        except ValueError:
            doc = None
        ok = isinstance(doc, dict) and "available" in doc
        if ok and res.returncode == 1 and doc["available"] is None:
            return None
        if res.returncode != 0 or not ok:
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
            runtime_mod.locate(config.runtime_cache, choice=config.runtime),
            timeout_s=config.timeout_s,
        )

    @property
    def runtime(self) -> Runtime:
        """The systemd-sysupdate this applier runs (``airlock status`` shows it)."""
        return self._sysupdate.runtime

    @property
    def dialect(self) -> dialect.Dialect:
        """The rules of that sysupdate's version (``formats.dialect``)."""
        return dialect.for_version(self._sysupdate.runtime.version)

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
        inv = self._invocation(None)
        try:
            listing = self._sysupdate.list_versions(inv, offline=True)
            if not self.dialect.partial_instances or listing.current is None:
                return listing
            # 260+ count a partly acquired version as installed: take the newest settled one.
            newest_first = sorted(listing.versions, key=version_key, reverse=True)
            current = next((v for v in newest_first if self._sysupdate.settled(inv, v)), None)
        except HostError as exc:
            raise ApplyError(
                f"Failed to list installed versions: {exc.message}", code="apply.list"
            ) from exc
        return Listing(current=current, versions=listing.versions)

    def _unsettled(self, inv: Invocation, version: str) -> bool:
        """``version`` is in the target, but only partly acquired or not yet installed."""
        listed = self._sysupdate.list_versions(inv, offline=True).versions
        return version in listed and not self._sysupdate.settled(inv, version)

    def booted(self) -> Assessment:
        """The booted version and the boot entries the host's definitions put in ``$BOOT``."""
        return assessment.observe_host(
            self._definitions, boot=self._config.esp_path, os_release=self._os_release
        )

    def room(self) -> tuple[Room, ...]:
        """The room of each target (``backends.apply.room``): its partitions, ``$BOOT``'s space."""
        try:
            text = self._os_release.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        specifiers = definitions.Specifiers.from_os_release(text)
        transfers = definitions.load_dir(self._definitions, specifiers=specifiers)
        return room_mod.measure(transfers, esp=self._config.esp_path)

    def apply(self, snapshot: Path, *, version: str, progress: ProgressFn) -> None:
        """``systemd-sysupdate update VERSION`` from the read-only snapshot.

        Raises:
            ApplyError: ``apply.sysupdate``.
        """

        def notify(fields: dict[str, str]) -> None:
            raw = fields.get("X_SYSUPDATE_PROGRESS", "")
            if raw.isdigit():
                progress(min(int(raw), 100), 100)

        inv = self._invocation(snapshot)
        try:
            if self.dialect.partial_instances and self._unsettled(inv, version):
                # A partial or pending instance of this version from an interrupted run would
                # make `update` refuse it (260+), or install bytes judged in an earlier run.
                self._sysupdate.vacuum(inv)
            self._sysupdate.update(inv, version=version, notify=notify)
        except HostError as exc:
            raise ApplyError(
                f"systemd-sysupdate failed to install {display(version)}: {exc.message}",
                code="apply.sysupdate",
            ) from exc
        progress(100, 100)
