# SPDX-License-Identifier: MIT
"""Apply backends: install a verified, read-only snapshot with systemd-sysupdate.

``Applier`` is the role the pipeline talks to; ``sysupdate.SysupdateHostApplier`` plays it with the
host's ``[apply]`` settings (``ApplyConfig``), ``runtime`` finds the chosen systemd-sysupdate (the
host's if ≥ 257, or a runtime root: 257, 262) and runs it in a private mount namespace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from airlock import settings
from airlock.assessment import Assessment
from airlock.formats import dialect
from airlock.layout import Layout
from airlock.settings import PATH, SECONDS, list_of, optional, setting
from airlock.trusted.policy import Room

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """What systemd-sysupdate reports (``list --json=short``): the newest installed, and all.

    Versions derive from file names that were untrusted once: display them escaped.
    """

    current: str | None
    versions: tuple[str, ...] = ()


class Applier(Protocol):
    """Installs a verified snapshot with systemd-sysupdate."""

    @property
    def dialect(self) -> dialect.Dialect:
        """The rules of this sysupdate's version (the judge requires the signature it reads)."""

    def installed(self) -> Listing:
        """The versions sysupdate sees installed on the host.

        Raises:
            ApplyError: sysupdate could not list them.
        """

    def booted(self) -> Assessment:
        """What booted and what the boot entries in ``$BOOT`` say (``airlock.assessment``).

        Raises:
            ConfigError: the host's definitions do not parse.
        """

    def room(self) -> tuple[Room, ...]:
        """How large a payload each target can take (``backends.apply.room``), measured now.

        Raises:
            ConfigError: the host's definitions do not parse.
        """

    def apply(self, snapshot: Path, *, version: str, progress: ProgressFn) -> None:
        """Install ``version`` from the read-only snapshot.

        Raises:
            ApplyError: sysupdate failed.
        """


def _mount_point(value: object) -> str:
    path = PATH.parse(value)
    if path == Path("/") or ".." in path.parts:
        raise settings.Invalid("must be an absolute path other than /")
    return str(path)


def runtime_choices() -> tuple[str, ...]:
    """What ``[apply] runtime`` accepts: ``auto``, ``host`` or a runtime ``layout.env`` declares."""
    return ("auto", "host", *(b.name for b in Layout.load().runtimes))


def _runtime(value: object) -> str:
    allowed = runtime_choices()
    if value not in allowed:
        raise settings.Invalid("must be one of " + ", ".join(allowed))
    return str(value)


RUNTIME = settings.Kind(
    parse=_runtime,
    dump=lambda v: v,
    metavar="|".join(runtime_choices()),
    doc="one of " + ", ".join(f"`{c}`" for c in runtime_choices()),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyConfig:
    """``[apply]``: how systemd-sysupdate installs from the snapshot."""

    SECTION: ClassVar[str] = "apply"

    mount_point: str = setting(
        "/run/updater",
        kind=settings.Kind(
            parse=_mount_point, dump=lambda v: v, metavar="PATH", doc="absolute path"
        ),
        help="where sysupdate sees the read-only snapshot (the host transfers' Path=)",
    )
    esp_path: Path | None = setting(
        None, kind=optional(PATH), help="the ESP, for SYSTEMD_ESP_PATH (unset: sysupdate finds it)"
    )
    binds: tuple[Path, ...] = setting(
        (), kind=list_of(PATH), help="host paths sysupdate writes (disk images, devices)"
    )
    timeout_s: float = setting(
        6 * 3600.0, kind=SECONDS, help="bound of one systemd-sysupdate update"
    )
    runtime: str = setting(
        "auto",
        kind=RUNTIME,
        flag="--runtime",
        help="which systemd-sysupdate applies: auto (the host's if >= 257, else the default"
        " runtime), host, or a runtime by its systemd version (docs/sysupdate-versions.md)",
    )
    runtime_cache: Path | None = setting(
        None,
        kind=optional(PATH),
        help="cache holding the sysupdate runtimes (make runtime builds them)"
        " (unset: $AIRLOCK_CACHE or the default)",
    )
