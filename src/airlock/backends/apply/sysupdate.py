# SPDX-License-Identifier: MIT
"""SysupdateApplier: a thin, documented wrapper over ``systemd-sysupdate`` verbs (257 and later).

It only assembles the invocation; ``runtime.Runtime.run`` does the isolation.  Every invocation:

* binds the transfer definitions read-only at ``/run/airlock/definitions`` and passes
  ``--definitions=`` (so nothing in the runtime's ``/etc/sysupdate.d`` can leak in);
* when ``keyring`` is given, binds it read-only over **every** keyring path the runtime's
  sysupdate may read (``formats.dialect``: 257 falls back to the vendor keyring under
  ``/usr/lib`` when ``/etc``'s is missing, threat model C6; 258+ reads ``.pgp`` names; 262 trusts
  the vendor keyring *in addition* to ``/etc``'s, and both runtimes ship one) and, where the
  version honours it, points ``SYSTEMD_OPENPGP_KEYRING`` at it: only the host's keys count;
* when ``esp`` is given, binds it writable at ``/run/airlock/esp`` and sets ``SYSTEMD_ESP_PATH``;
* adds the caller's extra binds (sources, targets, image files) unchanged.

Trusts its caller (the host pipeline) for every argument; the versions that come back from
``list``/``check-new`` derive from untrusted file names and are returned raw: display them with
``airlock.text.display()``.  Failures of the verbs that change the system raise ``ApplyError``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airlock import proc
from airlock.backends.apply.runtime import Bind, Notify, Runtime
from airlock.errors import ApplyError, HostError
from airlock.formats import dialect
from airlock.text import display, tail

DEFINITIONS = "/run/airlock/definitions"
ESP = "/run/airlock/esp"


def keyring_targets(rt: Runtime) -> tuple[str, ...]:
    """The keyring paths ``rt``'s sysupdate may read, to bind the host keyring over.

    In a runtime root every one (a missing mount point is made in the run's overlay); on the host,
    only those that exist: sysupdate reads no keyring path that does not exist, and a bind needs
    an existing target there.
    """
    paths = dialect.for_version(rt.version).keyrings
    return paths if rt.chrooted else tuple(p for p in paths if os.path.lexists(p))


@dataclass(frozen=True, slots=True, kw_only=True)
class Invocation:
    """Where sysupdate finds its definitions, keyring, ESP and data."""

    definitions: Path
    keyring: Path | None = None
    esp: Path | None = None
    binds: tuple[Bind, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def all_binds(self, rt: Runtime) -> tuple[Bind, ...]:
        """The binds ``rt.run`` needs for this invocation.

        Raises:
            HostError: ``host.sysupdate`` when a keyring is given but ``rt`` (the host's own
                sysupdate) has no keyring path to bind it over.
        """
        out = [Bind(source=self.definitions, target=DEFINITIONS, read_only=True)]
        if self.keyring is not None:
            targets = keyring_targets(rt)
            if not targets:
                raise HostError(
                    "The host's systemd-sysupdate has no keyring file to bind the host keyring"
                    f" over (looked for {', '.join(dialect.for_version(rt.version).keyrings)})",
                    code="host.sysupdate",
                )
            out += [Bind(source=self.keyring, target=t, read_only=True) for t in targets]
        if self.esp is not None:
            out.append(Bind(source=self.esp, target=ESP, read_only=False))
        return (*out, *self.binds)

    def all_env(self, rt: Runtime) -> dict[str, str]:
        """The environment for ``rt``'s sysupdate: ``SYSTEMD_ESP_PATH`` when an ESP is bound,
        the keyring override where the version honours one."""
        env = dict(self.env)
        if self.esp is not None:
            env["SYSTEMD_ESP_PATH"] = ESP
        rules = dialect.for_version(rt.version)
        if self.keyring is not None and rules.keyring_env is not None:
            env[rules.keyring_env] = keyring_targets(rt)[0]
        return env


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """``list --json=short``: the installed version and every version sysupdate sees."""

    current: str | None
    all: tuple[str, ...]


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
            [f"--definitions={DEFINITIONS}", *args],
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
            raise ApplyError(
                f"systemd-sysupdate update failed with status {res.returncode}: "
                f"{tail(res.stderr)}",
                code="apply.sysupdate",
            )
        return res

    def apply(
        self,
        snapshot: Path,
        *,
        definitions: Path,
        mount_point: str,
        esp: Path | None,
        keyring: Path,
        binds: Sequence[Bind] = (),
        version: str | None = None,
        env: Mapping[str, str] | None = None,
        notify: Notify | None = None,
    ) -> proc.Completed:
        """Install from a verified, read-only snapshot (the host pipeline's entry point).

        ``snapshot`` is bound read-only (``ro,nosuid,nodev,noexec``) at ``mount_point``, where the
        definitions' sources point (e.g. ``Path=file:///run/airlock/release``); ``keyring`` replaces
        every keyring sysupdate may read; ``binds`` adds targets (image files, directories).
        sysupdate verifies again (``--verify=yes``): our judgement and its own must both pass.
        """
        inv = Invocation(
            definitions=definitions,
            keyring=keyring,
            esp=esp,
            env=dict(env or {}),
            binds=(Bind(source=snapshot, target=mount_point, read_only=True), *binds),
        )
        return self.update(inv, version=version, verify=True, notify=notify)

    def list_versions(self, inv: Invocation) -> Listing:
        """``list --json=short`` → ``Listing``."""
        res = self._run(inv, ["--json=short", "list"], timeout=self.query_timeout_s)
        if res.returncode != 0:
            raise ApplyError(
                f"systemd-sysupdate list failed: {tail(res.stderr)}", code="apply.sysupdate"
            )
        try:
            doc = json.loads(res.stdout)
            current = doc.get("current")
            versions = tuple(str(v) for v in doc.get("all", ()))
        except (ValueError, AttributeError, TypeError):
            raise ApplyError(
                f"systemd-sysupdate list printed {display(res.stdout)}", code="apply.sysupdate"
            ) from None
        return Listing(current=str(current) if current is not None else None, all=versions)

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
