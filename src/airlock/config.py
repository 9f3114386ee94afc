# SPDX-License-Identifier: MIT
"""The host config: every section in one frozen value, from defaults, a TOML file and flags.

Each section is declared next to the code that reads it (``airlock.settings`` explains the
declarations) and handed to it as its own typed object:

======================  ============================================  ============================
table                   read by                                       class
======================  ============================================  ============================
``[host]``              the judge, apply, the fetch step, ``status``  ``HostFiles`` (here)
``[lock]``              the lock step                                 ``lock.LockConfig``
``[staging]``           the btrfs staging backend                     ``BtrfsStaging``'s config
``[fetcher]``           the fetch step (which backend, what it gets)  ``FetcherConfig``
``[fetcher.sandbox]``   ``SandboxFetcher``                            ``SandboxConfig``
``[fetcher.qemu]``      ``QemuFetcher``                               ``QemuConfig``
``[fetcher.spectrum]``  ``SpectrumFetcher``                           ``SpectrumConfig``
``[policy]``            the judge                                     ``PolicyConfig``
``[limits]``            the judge (walk, manifest, signatures, hash)  ``Limits``
``[apply]``             ``SysupdateHostApplier``                      ``ApplyConfig``
``[state]``             the inspect and record steps, ``status``      ``state.StateConfig``
======================  ============================================  ============================

Every default is Spectrum's.  ``load()`` is the one way values are combined: defaults, then the
file, then the command-line flags the verb registered with ``add_flags()``; it remembers where
each effective value came from (``airlock config show``).  The flat keys of the first config
format are refused with the name of their new place (docs/adr/0120).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from airlock import settings
from airlock.errors import ConfigError, UsageError
from airlock.settings import PATH, Origin, Section, Setting, Shape, setting
from airlock.text import shown

if TYPE_CHECKING:  # imported when first used (_section_class): a verb loads only its sections
    from airlock.backends.apply import ApplyConfig
    from airlock.backends.fetcher import FetcherConfig
    from airlock.backends.fetcher.qemu import QemuConfig
    from airlock.backends.fetcher.sandbox import SandboxConfig
    from airlock.backends.fetcher.spectrum import SpectrumConfig
    from airlock.backends.staging.btrfs import StagingConfig
    from airlock.limits import Limits
    from airlock.lock import LockConfig
    from airlock.state import StateConfig
    from airlock.trusted.policy import PolicyConfig

S = TypeVar("S", bound=Section)


@dataclass(frozen=True, slots=True, kw_only=True)
class HostFiles:
    """``[host]``: the host's own trusted files (Spectrum's read-only image by default)."""

    SECTION: ClassVar[str] = "host"

    definitions_dir: Path = setting(
        Path("/etc/sysupdate.d"),
        kind=PATH,
        flag="--definitions",
        help="the host's transfer definitions (the judge's allowlist, sysupdate's targets)",
    )
    keyring: Path = setting(
        Path("/etc/systemd/import-pubring.gpg"),
        kind=PATH,
        flag="--keyring",
        help="the pinned OpenPGP keyring (binary or armoured)",
    )
    os_release: Path = setting(
        Path("/etc/os-release"),
        kind=PATH,
        help="the running system's os-release (specifiers such as %A, the booted version)",
    )


# ``{table: HostConfig attribute}``, in ``HostConfig`` order.  The section classes live with the
# code that reads them (backends among it) and are imported only when a verb uses their table:
# ``airlock inspect`` reads ``[host]``, ``[policy]`` and ``[limits]`` and never loads a backend.
TABLES: dict[str, str] = {
    "host": "host",
    "lock": "lock",
    "staging": "staging",
    "fetcher": "fetcher",
    "fetcher.sandbox": "sandbox",
    "fetcher.qemu": "qemu",
    "fetcher.spectrum": "spectrum",
    "policy": "policy",
    "limits": "limits",
    "apply": "apply",
    "state": "state",
}


def _section_class(table: str) -> type[Section]:
    """The class of ``table`` (a key of ``TABLES``), imported on first use."""
    if table == "host":
        return HostFiles
    if table == "lock":
        from airlock.lock import LockConfig

        return LockConfig
    if table == "staging":
        from airlock.backends.staging.btrfs import StagingConfig

        return StagingConfig
    if table == "fetcher":
        from airlock.backends.fetcher import FetcherConfig

        return FetcherConfig
    if table == "fetcher.sandbox":
        from airlock.backends.fetcher.sandbox import SandboxConfig

        return SandboxConfig
    if table == "fetcher.qemu":
        from airlock.backends.fetcher.qemu import QemuConfig

        return QemuConfig
    if table == "fetcher.spectrum":
        from airlock.backends.fetcher.spectrum import SpectrumConfig

        return SpectrumConfig
    if table == "policy":
        from airlock.trusted.policy import PolicyConfig

        return PolicyConfig
    if table == "limits":
        from airlock.limits import Limits

        return Limits
    if table == "apply":
        from airlock.backends.apply import ApplyConfig

        return ApplyConfig
    if table == "state":
        from airlock.state import StateConfig

        return StateConfig
    raise KeyError(table)


def _default(table: str) -> Callable[[], Any]:
    return lambda: _section_class(table)()


@dataclass(frozen=True, slots=True, kw_only=True)
class HostConfig:
    """Every section of the host config (each field is one section, see the module docstring)."""

    host: HostFiles = field(default_factory=HostFiles)
    lock: LockConfig = field(default_factory=_default("lock"))
    staging: StagingConfig = field(default_factory=_default("staging"))
    fetcher: FetcherConfig = field(default_factory=_default("fetcher"))
    sandbox: SandboxConfig = field(default_factory=_default("fetcher.sandbox"))
    qemu: QemuConfig = field(default_factory=_default("fetcher.qemu"))
    spectrum: SpectrumConfig = field(default_factory=_default("fetcher.spectrum"))
    policy: PolicyConfig = field(default_factory=_default("policy"))
    limits: Limits = field(default_factory=_default("limits"))
    apply: ApplyConfig = field(default_factory=_default("apply"))
    state: StateConfig = field(default_factory=_default("state"))


def sections() -> dict[str, tuple[str, type[Section]]]:
    """``{table: (HostConfig attribute, section class)}``, in ``HostConfig`` order."""
    return {table: (attr, _section_class(table)) for table, attr in TABLES.items()}


def lookup(name: str) -> tuple[str, str, Setting]:
    """``(table, key, declaration)`` of the dotted setting ``name`` (``"fetcher.qemu.accel"``).

    Imports only the class of that setting's table.

    Raises:
        KeyError: no such setting.
    """
    table, _, key = name.rpartition(".")
    if table not in TABLES:
        raise KeyError(name)
    try:
        return table, key, settings.declaration(_section_class(table), key)
    except settings.Invalid:
        raise KeyError(name) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Effective:
    """The effective config, where each value came from (``"table.key"`` → origin), the file."""

    config: HostConfig
    origins: Mapping[str, Origin]
    file: Path | None = None

    def origin(self, name: str) -> Origin:
        """Where the dotted setting ``name`` came from."""
        return self.origins.get(name, Origin.DEFAULT)


# --- the first (flat) format: refused with a pointer to the new place --------------------------

MOVED: dict[str, str] = {
    "lock_path": "[lock] path",
    "vm_name": "[fetcher.spectrum] vm_name",
    "definitions_dir": "[host] definitions_dir",
    "keyring": "[host] keyring",
    "os_release": "[host] os_release",
    "vm_definitions_dir": "[fetcher] vm_definitions_dir",
    "update_url_file": "[fetcher] update_url_file",
    "fetcher": "[fetcher] backend",
    "vm_timeout_s": "[fetcher] timeout_s",
    "fetch_command": "[fetcher] command",
    "sandbox_root": "[fetcher.sandbox] root",
    "sandbox_netns": "[fetcher.sandbox] netns",
    "sandbox_ro_binds": "[fetcher.sandbox] ro_binds",
    "mount_point": "[apply] mount_point",
    "esp_path": "[apply] esp_path",
    "apply_binds": "[apply] binds",
    "apply_timeout_s": "[apply] timeout_s",
    "sysupdate_runtime_cache": "[apply] runtime_cache",
    "state_file": "[state] path",
    "qgroup_limit_bytes": "[staging] qgroup_limit_bytes",
    "trusted_fingerprints": "[policy] trusted_fingerprints",
    "threshold": "[policy] threshold",
    "require_fresh": "[policy] require_fresh",
    "verifier": "[policy] verifier",
    **{f"spectrum_{k}": f"[fetcher.spectrum] {k}" for k in ("run_dir", "vm_start", "vm_stop")},
    "spectrum_stop_timeout_s": "[fetcher.spectrum] stop_timeout_s",
    **{f"qemu_{k}": f"[fetcher.qemu] {k}" for k in ("guest_dir", "accel", "server", "cpus")},
    "qemu_memory_mib": "[fetcher.qemu] memory_mib",
}
REMOVED: dict[str, str] = {
    "sysupdate_path": "it was never read: the sysupdate runtime is located ([apply] runtime_cache)",
    "fetcher.qemu.forwarder": "QEMU starts no forwarder any more; one host relay carries the"
    " guest's connections ([fetcher.qemu] max_connections, ADR 0172)",
}


# --- reading ---------------------------------------------------------------------------------


def _bad(where: str, name: str, why: str) -> ConfigError:
    return ConfigError(f"Invalid host config {where}: {name}: {why}", code="config.host")


def _read(path: Path) -> dict[str, Any]:
    import tomllib  # here: only a verb that reads a file pays for the TOML parser

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"Failed to read config {shown(path)}: {exc.strerror}", code="config.host"
        ) from exc
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Invalid TOML in {shown(path)}: {exc}", code="config.host") from exc


def _tables(data: Mapping[str, Any], where: str) -> dict[str, dict[str, object]]:
    """Split a parsed file into ``{table: {key: raw value}}``; refuse unknown names."""
    known = TABLES
    out: dict[str, dict[str, object]] = {}

    def walk(table: Mapping[str, Any], prefix: str) -> None:
        for key, value in table.items():
            name = f"{prefix}.{key}" if prefix else key
            if name in REMOVED:
                raise _bad(where, name, f"no longer a setting: {REMOVED[name]}")
            if not prefix and key in MOVED and not isinstance(value, dict):
                raise _bad(where, key, f"moved to {MOVED[key]} (docs/update.md)")
            if name in known:
                if not isinstance(value, dict):
                    raise _bad(where, f"[{name}]", "must be a table")
                out[name] = {}
                walk(value, name)
            elif prefix in known:
                out[prefix][key] = value
            else:
                raise _bad(where, f"[{name}]" if isinstance(value, dict) else name, "unknown")

    walk(data, "")
    return out


def _flag_tables(flags: Mapping[str, object]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for name, raw in flags.items():
        table, key, _ = lookup(name)
        out.setdefault(table, {})[key] = raw
    return out


# The host config every host verb reads when no --config is given and it exists: how an
# integrator configures ``spectrum-update``, which takes no options (docs/spectrum.md).
DEFAULT_FILE = Path("/etc/airlock/host.toml")
# Where ``spectrum-update``'s defaults differ from ``airlock update``'s: it waits for the lock,
# as Spectrum's s6-setlock does.
SPECTRUM_DEFAULTS: Mapping[str, object] = {"lock.wait": True}


def load(
    path: Path | None,
    *,
    flags: Mapping[str, object] | None = None,
    preset: Mapping[str, object] | None = None,
) -> Effective:
    """The effective host config: defaults, ``preset``, then the file at ``path``, then ``flags``.

    ``flags`` maps dotted setting names to raw values, as ``given_flags()`` returns them; this is
    the one place where a command-line value overrides a configured one.  ``preset`` holds the
    defaults of ``spectrum-update`` where they differ (``SPECTRUM_DEFAULTS``).

    Raises:
        ConfigError: ``config.host`` for an unreadable file, bad TOML, an unknown or moved key, or a
            value its setting refuses.
        UsageError: ``usage.setting`` for a flag value its setting refuses.
    """
    where = shown(path) if path is not None else "(defaults)"
    from_file = _tables(_read(path), where) if path is not None else {}
    from_flags = _flag_tables(flags or {})
    from_preset = _flag_tables(preset or {})
    origins: dict[str, Origin] = {}
    values: dict[str, Section] = {}
    for table, (attr, cls) in sections().items():
        file_part, flag_part = from_file.get(table, {}), from_flags.get(table, {})
        preset_part = from_preset.get(table, {})
        origins.update({f"{table}.{k}": Origin.SPECTRUM for k in preset_part})
        origins.update({f"{table}.{k}": Origin.FILE for k in file_part})
        origins.update({f"{table}.{k}": Origin.FLAG for k in flag_part})
        values[attr] = _build(cls, where, table, preset_part | file_part, flag_part)
    config = HostConfig(**values)  # type: ignore[arg-type]  # one section per attribute
    return Effective(config=config, origins=origins, file=path)


def _build(
    cls: type[S], where: str, table: str, below: Mapping[str, object], flags: Mapping[str, object]
) -> S:
    """One section from raw values (``flags`` last); a refused flag value is a usage error."""
    try:
        return settings.build(cls, {**below, **flags})
    except settings.Invalid as exc:
        key = exc.key or "?"
        if key in flags:
            flag = settings.declaration(cls, key).flag or key
            raise UsageError(f"{flag}: {exc.why}", code="usage.setting") from None
        raise _bad(where, f"[{table}] {key}", exc.why) from None


def load_section(cls: type[S], *, flags: Mapping[str, object] | None = None) -> S:
    """The section ``cls`` exactly as ``load(None, flags=flags).config`` holds it.

    For a verb that reads no config file and needs only some sections (``airlock inspect``): the
    other sections' classes, and the backends that declare them, are never imported.

    Raises:
        UsageError: ``usage.setting`` for a flag value its setting refuses.
    """
    table = cls.SECTION
    if table not in TABLES or _section_class(table) is not cls:
        raise KeyError(table)
    return _build(cls, "(defaults)", table, {}, _flag_tables(flags or {}).get(table, {}))


# --- command-line flags ------------------------------------------------------------------------

_DEST = "setting:"


def add_flags(
    parser: argparse.ArgumentParser, names: Sequence[str], *, required: Sequence[str] = ()
) -> None:
    """Register the flag of each dotted setting in ``names`` (its help and shape declared once)."""
    for name in names:
        _, _, decl = lookup(name)
        if decl.flag is None:
            raise RuntimeError(f"setting {name} declares no flag")
        kw: dict[str, Any] = {
            "dest": _DEST + name,
            "help": f"{decl.help} (setting {name})",
            "default": argparse.SUPPRESS,
            "required": name in required,
        }
        if decl.kind.shape is Shape.SWITCH:
            kw["action"] = "store_true"
        else:
            kw["metavar"] = decl.kind.metavar
            kw["action"] = "append" if decl.kind.shape is Shape.APPEND else "store"
        parser.add_argument(decl.flag, **kw)


def given_flags(args: argparse.Namespace) -> dict[str, object]:
    """The settings given as flags: ``{dotted name: raw value}`` for ``load(flags=...)``."""
    out: dict[str, object] = {}
    for dest, value in vars(args).items():
        if dest.startswith(_DEST):
            _, _, decl = lookup(dest[len(_DEST) :])
            if isinstance(value, list):
                out[dest[len(_DEST) :]] = [decl.kind.from_flag(v) for v in value]
            elif isinstance(value, str):
                out[dest[len(_DEST) :]] = decl.kind.from_flag(value)
            else:
                out[dest[len(_DEST) :]] = value
    return out


# --- writing and showing -----------------------------------------------------------------------


def _toml(value: object) -> str:
    # JSON's strings, numbers, booleans and arrays of them are valid TOML values.
    return json.dumps(value)


def toml_value(value: object) -> str:
    """``value`` as the TOML file would hold it (the man page shows defaults so)."""
    return _toml(value)


def render(values: Mapping[str, object]) -> str:
    """A TOML host config from ``{dotted setting name: value}`` (checked against declarations).

    Paths may be given as ``Path``; tuples as lists.  Used by the lab, the tests and the
    benchmarks to write the configs they run with.

    Raises:
        KeyError: a name that is not a setting.
    """
    tables: dict[str, list[str]] = {}
    for name, value in values.items():
        table, key, _ = lookup(name)
        plain = os.fspath(value) if isinstance(value, os.PathLike) else value
        if isinstance(plain, tuple | list):
            plain = [os.fspath(v) if isinstance(v, os.PathLike) else v for v in plain]
        tables.setdefault(table, []).append(f"{key} = {_toml(plain)}")
    order = list(sections())
    chunks = [f"[{t}]\n" + "\n".join(tables[t]) + "\n" for t in order if t in tables]
    return "\n".join(chunks)


def _rows(effective: Effective) -> Iterator[tuple[str, str, Setting, object, Origin]]:
    for table, (attr, cls) in sections().items():
        section = getattr(effective.config, attr)
        for key, decl in settings.declarations(cls):
            value = decl.kind.dump(getattr(section, key))
            yield table, key, decl, value, effective.origin(f"{table}.{key}")


def show(effective: Effective) -> str:
    """The effective config as TOML: each value with its help above and its origin after it."""
    source = shown(effective.file) if effective.file else "none"
    out = [f"# effective host config (file: {source}); after each value, where it came from"]
    last = None
    for table, key, decl, value, origin in _rows(effective):
        if table != last:
            out += ["", f"[{table}]"]
            last = table
        how = f"flag {decl.flag}" if origin is Origin.FLAG else str(origin)
        line = f"# {key} is not set" if value is None else f"{key} = {_toml(value)}"
        out += [f"# {decl.help}", f"{line}  # {how}"]
    return "\n".join(out) + "\n"


def show_json(effective: Effective) -> dict[str, object]:
    """The effective config for ``--json``: ``{table: {key: {value, origin}}}`` and the file."""
    body: dict[str, dict[str, object]] = {}
    for table, key, _, value, origin in _rows(effective):
        body.setdefault(table, {})[key] = {"value": value, "origin": str(origin)}
    return {"file": os.fspath(effective.file) if effective.file else None, "sections": body}


def reference() -> str:
    """docs/config.md: every section and setting, generated from the declarations."""
    out = [
        "# Host configuration reference",
        "",
        "Generated by `scripts/config-reference.py` from the settings' declarations (a test keeps",
        "it current). The host config is a TOML file: `--config FILE`, else",
        "`/etc/airlock/host.toml` when it exists (how `spectrum-update`, which takes no options,",
        "is configured). Every key is optional and every default is Spectrum's",
        "(`spectrum-update` also waits for the lock).",
        "A flag, where a setting has one, overrides the file;",
        "`airlock config show [--config FILE] [--json]` prints the effective value of every",
        "setting and where it came from (`default`, `file` or `flag`). How the sections fit",
        "together: [update.md](update.md#configuration).",
    ]
    defaults = HostConfig()
    for table, (attr, cls) in sections().items():
        doc = (cls.__doc__ or "").strip().split("\n")[0].split(": ", 1)[-1]
        out += ["", f"## `[{table}]`", "", doc[:1].upper() + doc[1:], ""]
        out += ["| key | value | default | flag | meaning |", "|---|---|---|---|---|"]
        for key, decl in settings.declarations(cls):
            value = decl.kind.dump(getattr(getattr(defaults, attr), key))
            shown_default = decl.default_doc or ("unset" if value is None else _toml(value))
            flag = f"`{decl.flag}`" if decl.flag else ""
            out.append(f"| `{key}` | {decl.kind.doc} | `{shown_default}` | {flag} | {decl.help} |")
    return "\n".join(out) + "\n"
