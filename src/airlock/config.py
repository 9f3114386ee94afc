# SPDX-License-Identifier: MIT
"""Limits, policy and host configuration: frozen values with Spectrum's defaults.

``Limits`` keeps every cap in one place (the role of python-tuf's ``UpdaterConfig``).  The defaults
admit Spectrum's real release sizes (a root image of about 20 GB) and refuse absurd ones.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from airlock.errors import ConfigError

GIB = 1 << 30
MIB = 1 << 20
KIB = 1 << 10


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Caps on everything read from untrusted sources."""

    max_entries: int = 4096
    max_file_bytes: int = 64 * GIB
    max_total_bytes: int = 128 * GIB
    max_manifest_bytes: int = 1 * MIB
    max_manifest_lines: int = 4096
    max_signature_bytes: int = 64 * KIB
    max_keyring_bytes: int = 1 * MIB
    max_name_bytes: int = 255
    hash_threads: int = 2
    hash_buffer_bytes: int = 4 * MIB
    signature_timeout_s: float = 30.0


# --- Host configuration ---------------------------------------------------------------------------

SPECTRUM_VM = "sys.appvm-systemd-sysupdate"


@dataclass(frozen=True, slots=True, kw_only=True)
class HostConfig:
    """Everything the host pipeline needs to know about this machine.

    The defaults reproduce Spectrum's ``spectrum-update`` (design §3.1, §6): its lock, VM name,
    transfer directories, URL file, keyring, sysupdate binary and read-only mount point.  Tests and
    the lab point every path elsewhere through a TOML file (``load``).
    """

    lock_path: Path = Path("/run/update-lock")
    vm_name: str = SPECTRUM_VM
    definitions_dir: Path = Path("/etc/sysupdate.d")
    vm_definitions_dir: Path = Path("/etc/vm-sysupdate.d")
    update_url_file: Path = Path("/etc/update-url")
    keyring: Path = Path("/etc/systemd/import-pubring.gpg")
    sysupdate_path: Path = Path("/usr/lib/systemd/systemd-sysupdate")
    sysupdate_runtime_cache: Path | None = None
    mount_point: str = "/run/updater"
    os_release: Path = Path("/etc/os-release")
    state_file: Path = Path("/var/lib/airlock/state.json")
    fetcher: str = "spectrum"
    vm_timeout_s: float = 3600.0
    fetch_command: tuple[str, ...] = ("/usr/bin/airlock", "agent", "--share", "/host")
    sandbox_root: str = "/host"
    sandbox_netns: str | None = None
    sandbox_ro_binds: tuple[Path, ...] = ()
    esp_path: Path | None = None
    apply_binds: tuple[Path, ...] = ()
    apply_timeout_s: float = 6 * 3600.0
    qgroup_limit_bytes: int | None = None
    trusted_fingerprints: tuple[str, ...] = ()
    threshold: int = 1
    require_fresh: bool = False
    verifier: str = "auto"
    # Spectrum fetcher (docs/vm.md): None means Spectrum's own paths and commands.
    spectrum_run_dir: Path | None = None
    spectrum_vm_start: tuple[str, ...] | None = None
    spectrum_vm_stop: tuple[str, ...] | None = None
    spectrum_stop_timeout_s: float | None = None
    # QEMU fetcher (docs/vm.md): None means the fetcher's defaults.
    qemu_guest_dir: Path | None = None
    qemu_accel: str | None = None
    qemu_server: str | None = None
    qemu_memory_mib: int | None = None
    qemu_cpus: int | None = None
    limits: Limits = dataclasses.field(default_factory=Limits)


_PATH_FIELDS = {
    "lock_path",
    "definitions_dir",
    "vm_definitions_dir",
    "update_url_file",
    "keyring",
    "sysupdate_path",
    "os_release",
    "state_file",
}
_OPT_PATH_FIELDS = {"sysupdate_runtime_cache", "esp_path", "spectrum_run_dir", "qemu_guest_dir"}
_PATH_TUPLE_FIELDS = {"sandbox_ro_binds", "apply_binds"}
_STR_FIELDS = {"vm_name", "mount_point", "fetcher", "sandbox_root", "verifier"}
_FLOAT_FIELDS = {"vm_timeout_s", "apply_timeout_s", "spectrum_stop_timeout_s"}
_ARGV_FIELDS = {"fetch_command", "spectrum_vm_start", "spectrum_vm_stop"}
_SMALL_INT_FIELDS = {"qemu_memory_mib": (64, 65536), "qemu_cpus": (1, 64)}


def _bad(key: str, why: str) -> ConfigError:
    return ConfigError(f"Invalid host config: {key}: {why}", code="config.host")


def _abs(key: str, value: object) -> Path:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise _bad(key, "must be an absolute path")
    return Path(value)


def _convert(key: str, value: object) -> object:
    if key in _PATH_FIELDS:
        return _abs(key, value)
    if key in _OPT_PATH_FIELDS:
        return None if value == "" else _abs(key, value)
    if key in _PATH_TUPLE_FIELDS:
        if not isinstance(value, list):
            raise _bad(key, "must be a list of absolute paths")
        return tuple(_abs(key, v) for v in value)
    if key in _STR_FIELDS:
        if not isinstance(value, str) or not value or not value.isprintable():
            raise _bad(key, "must be a non-empty string")
        return value
    if key in _FLOAT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise _bad(key, "must be a positive number of seconds")
        return float(value)
    if key == "sandbox_netns":
        if value == "":
            return None
        if not isinstance(value, str) or not value.replace("-", "").replace("_", "").isalnum():
            raise _bad(key, "must be a network namespace name")
        return value
    if key in _ARGV_FIELDS:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise _bad(key, "must be a non-empty list of strings")
        return tuple(value)
    if key in _SMALL_INT_FIELDS:
        low, high = _SMALL_INT_FIELDS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _bad(key, f"must be an integer from {low} to {high}")
        return value
    if key == "qemu_accel":
        if value not in ("tcg", "kvm", "auto"):
            raise _bad(key, "must be tcg, kvm or auto")
        return value
    if key == "qemu_server":
        if not isinstance(value, str) or not value.isascii() or not value.isprintable():
            raise _bad(key, "must be HOST:PORT on loopback")
        return value
    if key == "qgroup_limit_bytes":
        if value in (0, None):
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1 * MIB:
            raise _bad(key, "must be a byte count of at least 1 MiB (0 for none)")
        return value
    if key == "trusted_fingerprints":
        if not isinstance(value, list) or not all(
            isinstance(v, str) and len(v) == 40 and all(c in "0123456789ABCDEF" for c in v.upper())
            for v in value
        ):
            raise _bad(key, "must be a list of 40-hex-digit fingerprints")
        return tuple(v.upper() for v in value)
    if key == "threshold":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _bad(key, "must be a positive integer")
        return value
    if key == "require_fresh":
        if not isinstance(value, bool):
            raise _bad(key, "must be true or false")
        return value
    raise _bad(key, "unknown key")


def _limits(table: object) -> Limits:
    if not isinstance(table, dict):
        raise _bad("limits", "must be a table")
    known = {f.name: f for f in dataclasses.fields(Limits)}
    values: dict[str, object] = {}
    for key, value in table.items():
        if key not in known:
            raise _bad(f"limits.{key}", "unknown key")
        default = getattr(Limits(), key)
        if isinstance(value, bool) or not isinstance(value, type(default) | int) or value <= 0:
            raise _bad(f"limits.{key}", "must be a positive number")
        values[key] = type(default)(value)
    return Limits(**values)  # type: ignore[arg-type]  # keys and types checked above


def host_config_from_mapping(data: Mapping[str, object]) -> HostConfig:
    """Build a HostConfig from a parsed TOML mapping (top-level keys, optional ``[limits]``).

    Raises:
        ConfigError: unknown key or invalid value.
    """
    values: dict[str, object] = {}
    for key, value in data.items():
        if key == "limits":
            values["limits"] = _limits(value)
        else:
            values[key] = _convert(key, value)
    if "threshold" in values and "trusted_fingerprints" in values:
        fprs = values["trusted_fingerprints"]
        assert isinstance(fprs, tuple)  # noqa: S101 - built by _convert above
        if fprs and int(values["threshold"]) > len(fprs):  # type: ignore[call-overload]  # int
            raise _bad("threshold", "larger than the number of trusted fingerprints")
    return HostConfig(**values)  # type: ignore[arg-type]  # keys and types checked above


def load_host_config(path: Path | None) -> HostConfig:
    """Load a TOML host config (``None``: Spectrum's defaults).

    Raises:
        ConfigError: unreadable file, bad TOML, unknown key or invalid value.
    """
    if path is None:
        return HostConfig()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"Failed to read config {os.fspath(path)}: {exc.strerror}", code="config.host"
        ) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Invalid TOML in {os.fspath(path)}: {exc}", code="config.host") from exc
    return host_config_from_mapping(data)
