# SPDX-License-Identifier: MIT
"""``airlock render``: the build-time files that point a Spectrum system at its update server.

Produces, under ``OUT``: ``etc/os-release`` (with ``IMAGE_VERSION``), ``etc/update-url``,
``etc/systemd/import-pubring.gpg``, the host's ``etc/sysupdate.d/*.transfer`` and the VM's
``etc/vm-sysupdate.d/*.transfer``, from templates shipped in the package (the defaults reproduce
Spectrum's files, design.md#transfers-host, design.md#os-release) or from ``--templates DIR`` with
the same layout.

Template rule: files whose name ends in ``.in`` get ``@VERSION@`` and ``@UPDATE_URL@`` replaced
(and the ``.in`` dropped); any other ``@NAME@`` left over is an error.  Other files are copied
byte for byte, so the VM files keep Spectrum's literal ``@UPDATE_URL@``, which the update VM
replaces at run time from ``etc/update-url``.

Boot counting is opt-in (``--boot-tries N``, 1–15): the host files in the templates'
``boot-counting/sysupdate.d/`` then replace the same-named defaults, with ``@TRIES_LEFT@`` set to
``N`` (the package's replace only the kernel transfer: its UKI pattern gains ``+@l-@d`` and it
sets ``TriesLeft=N``, as systemd's automatic boot assessment expects).  Without it Spectrum's
files are rendered unchanged.

Trusts: the maintainer's inputs only after checking them.  Refuses (``ConfigError``/``UsageError``,
nothing written): a URL that is not plain http(s) or contains whitespace, controls, non-ASCII,
``?``, ``#``, ``%`` (systemd expands ``%`` specifiers in ``Path=``) or a trailing ``/``; a version
outside sysupdate's charset, with ``_`` (the file-name separator) or a leading ``-``; a signing key
that is not a binary public keyring (armoured, secret material, garbage); templates that do not
parse as transfer files, or host source patterns that no VM target pattern produces.
"""

from __future__ import annotations

import logging
import os
import re
import string
import urllib.parse
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from airlock import fsutil
from airlock.errors import AirlockError, ConfigError, UsageError
from airlock.formats import definitions, version
from airlock.release import pubring
from airlock.text import display

logger = logging.getLogger(__name__)

HOST_DIR = "sysupdate.d"
VM_DIR = "vm-sysupdate.d"
OS_RELEASE = "os-release.in"
BOOT_COUNTING_DIR = "boot-counting"
MAX_BOOT_TRIES = 15
MAX_TEMPLATE_BYTES = 64 * 1024
MAX_URL_BYTES = 2048
_URL_CHARS = frozenset(string.ascii_letters + string.digits + "-._~:/@!$&'()*+,;=[]")
_LEFTOVER = re.compile(r"@[A-Z][A-Z0-9_]*@")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendered:
    """What ``render`` wrote: paths relative to ``out`` and the keyring's fingerprints."""

    out: Path
    files: tuple[str, ...]
    fingerprints: tuple[str, ...]


def default_templates() -> Path:
    """The templates shipped in the package."""
    return Path(str(resources.files("airlock.release") / "templates"))  # a real directory


def check_url(url: str) -> str:
    """Return ``url`` if it is a plain http(s) base URL sysupdate can use, else raise."""

    def bad(why: str) -> UsageError:
        return UsageError(f"Refusing update URL {display(url)}: {why}", code="usage.url")

    if not url:
        raise bad("it is empty")
    if len(url.encode("utf-8", errors="replace")) > MAX_URL_BYTES:
        raise bad(f"longer than {MAX_URL_BYTES} bytes")
    if any(c.isspace() for c in url):
        raise bad("it contains whitespace")
    if not url.isascii() or not url.isprintable():
        raise bad("it contains control or non-ASCII characters")
    for char, why in (
        ("?", "a query"),
        ("#", "a fragment"),
        ("%", "'%' (sysupdate expands % specifiers in Path=)"),
    ):
        if char in url:
            raise bad(f"it contains {why}")
    if url.endswith("/"):
        raise bad("it ends in '/' (sysupdate appends '/NAME' itself)")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise bad("only http:// and https:// URLs are supported")
    if set(url) - _URL_CHARS:
        raise bad(f"it contains {display(''.join(sorted(set(url) - _URL_CHARS)))}")
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError as exc:
        raise bad(f"it does not parse ({exc})") from exc
    if not host or "@" in parts.netloc:
        raise bad("it names no host, or carries credentials")
    if not rest.partition("/")[0]:
        raise bad("it names no host")
    return url


def check_version(text: str) -> str:
    """Return ``text`` if it is a version Spectrum's file names and sysupdate both accept."""
    if not version.is_valid(text):
        raise UsageError(
            f"Refusing version {display(text)}: every supported sysupdate accepts only 1-255 of"
            " [A-Za-z0-9._+-]",
            code="usage.version",
        )
    if "_" in text:
        raise UsageError(
            f"Refusing version {display(text)}: '_' separates the version in Spectrum's names",
            code="usage.version",
        )
    if text.startswith("-"):
        raise UsageError(
            f"Refusing version {display(text)}: it starts with '-'", code="usage.version"
        )
    return text


def check_key(path: Path) -> pubring.PublicKeyring:
    """Read ``path`` and check it is a binary public keyring; cross-check with the verifier."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"Failed to read signing key {display(os.fspath(path))}: " f"{exc.strerror}",
            code="config.key",
        ) from exc
    ring = pubring.parse(data)
    from airlock.backends import openpgp  # the verifier's own reading of the same bytes

    try:
        seen = openpgp.keyring_fingerprints(path)
    except AirlockError as exc:
        raise ConfigError(
            f"Refusing signing key: the verifier cannot read it: {exc.message}", code="config.key"
        ) from exc
    if tuple(seen) != ring.fingerprints:
        raise ConfigError(
            "Refusing signing key: the verifier reads different keys than the file holds "
            f"({', '.join(seen) or 'none'} vs {', '.join(ring.fingerprints)})",
            code="config.key",
        )
    return ring


def _read_template(path: Path) -> str:
    try:
        if path.is_symlink() or not path.is_file():
            raise ConfigError(
                f"Template {display(os.fspath(path))} is not a regular file", code="config.template"
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"Failed to read template {display(os.fspath(path))}: " f"{exc.strerror}",
            code="config.template",
        ) from exc
    if len(raw) > MAX_TEMPLATE_BYTES:
        raise ConfigError(
            f"Template {display(os.fspath(path))} is too large", code="config.template"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"Template {display(os.fspath(path))} is not UTF-8", code="config.template"
        ) from exc


def _instantiate(path: Path, *, ver: str, url: str, tries: int | None = None) -> tuple[str, str]:
    """(output name, text) of one template file."""
    text = _read_template(path)
    if not path.name.endswith(".in"):
        return path.name, text
    text = text.replace("@VERSION@", ver).replace("@UPDATE_URL@", url)
    if tries is not None:
        text = text.replace("@TRIES_LEFT@", str(tries))
    if (left := _LEFTOVER.search(text)) is not None:
        raise ConfigError(
            f"Template {display(os.fspath(path))} uses unknown placeholder "
            f"{display(left.group(0))}",
            code="config.template",
        )
    return path.name[:-3], text


def _transfers(directory: Path, *, ver: str, url: str, tries: int | None = None) -> dict[str, str]:
    if not directory.is_dir():
        raise ConfigError(
            f"Template directory {display(os.fspath(directory))} is missing", code="config.template"
        )
    out: dict[str, str] = {}
    for path in sorted(directory.iterdir()):
        name, text = _instantiate(path, ver=ver, url=url, tries=tries)
        if not name.endswith(".transfer"):
            raise ConfigError(
                f"Unexpected template {display(os.fspath(path))}", code="config.template"
            )
        out[name] = text
    if not out:
        raise ConfigError(
            f"No transfer templates in {display(os.fspath(directory))}", code="config.template"
        )
    return out


def _validate(host: dict[str, str], vm: dict[str, str], *, os_release: str, url: str) -> None:
    """Every file parses as systemd 257 would read it; VM targets produce the host's sources."""
    specs = definitions.Specifiers.from_os_release(os_release)
    host_sources: list[str] = []
    vm_targets: set[str] = set()
    for side, files in (("host", host), ("VM", vm)):
        for name, text in files.items():
            concrete = text.replace("@UPDATE_URL@", url) if side == "VM" else text
            transfer = definitions.parse(
                concrete, origin=f"{side} template {name}", specifiers=specs
            )
            if side == "host":
                host_sources += [p.text for p in transfer.source.match_patterns]
            else:
                vm_targets.update(p.text for p in transfer.target.match_patterns)
    missing = [p for p in host_sources if p not in vm_targets]
    if missing:
        raise ConfigError(
            f"Host source pattern {display(missing[0])} is not a target pattern of any VM "
            "transfer, so the host would never find what the VM downloads",
            code="config.template",
        )


def check_boot_tries(tries: int) -> int:
    """Return ``tries`` if it is a sensible initial ``TriesLeft=``, else raise ``UsageError``."""
    if not 1 <= tries <= MAX_BOOT_TRIES:
        raise UsageError(
            f"Refusing --boot-tries {tries}: give 1 to {MAX_BOOT_TRIES} tries",
            code="usage.boot-tries",
        )
    return tries


def _boot_counting(
    host: dict[str, str], templates: Path, *, ver: str, url: str, tries: int
) -> None:
    """Replace host files by their boot-counting variants (``BOOT_COUNTING_DIR``)."""
    overlay = _transfers(templates / BOOT_COUNTING_DIR / HOST_DIR, ver=ver, url=url, tries=tries)
    for name, text in overlay.items():
        if name not in host:
            raise ConfigError(
                f"Boot-counting template {display(name)} replaces no host transfer",
                code="config.template",
            )
        host[name] = text


def plan(
    *, ver: str, update_url: str, key: bytes, templates: Path, boot_tries: int | None = None
) -> dict[str, bytes]:
    """The files to write, relative path → bytes (pure apart from reading templates)."""
    os_name, os_release = _instantiate(templates / OS_RELEASE, ver=ver, url=update_url)
    if not re.search(rf"^IMAGE_VERSION={re.escape(ver)}$", os_release, re.MULTILINE):
        raise ConfigError(
            "The os-release template does not set IMAGE_VERSION=@VERSION@", code="config.template"
        )
    host = _transfers(templates / HOST_DIR, ver=ver, url=update_url)
    if boot_tries is not None:
        _boot_counting(host, templates, ver=ver, url=update_url, tries=boot_tries)
    vm = _transfers(templates / VM_DIR, ver=ver, url=update_url)
    _validate(host, vm, os_release=os_release, url=update_url)
    files = {
        f"etc/{os_name}": os_release.encode(),
        "etc/update-url": update_url.encode() + b"\n",
        "etc/systemd/import-pubring.gpg": key,
    }
    files |= {f"etc/{HOST_DIR}/{n}": t.encode() for n, t in host.items()}
    files |= {f"etc/{VM_DIR}/{n}": t.encode() for n, t in vm.items()}
    return files


def render(
    *,
    ver: str,
    update_url: str,
    signing_key: Path,
    out: Path,
    templates: Path | None = None,
    boot_tries: int | None = None,
) -> Rendered:
    """Validate everything, then write the files atomically under ``out``.

    Raises:
        UsageError: bad URL or version.
        ConfigError: bad key or templates.
    """
    check_version(ver)
    check_url(update_url)
    if boot_tries is not None:
        check_boot_tries(boot_tries)
    ring = check_key(signing_key)
    files = plan(
        ver=ver,
        update_url=update_url,
        key=ring.raw,
        templates=templates or default_templates(),
        boot_tries=boot_tries,
    )
    for rel, data in sorted(files.items()):
        target = out / rel
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fsutil.atomic_write(target, data, mode=0o644)
        except OSError as exc:
            raise ConfigError(
                f"Failed to write {display(os.fspath(target))}: {exc.strerror}",
                code="config.render",
            ) from exc
        logger.debug("wrote %s", display(os.fspath(target)))
    return Rendered(out=out, files=tuple(sorted(files)), fingerprints=ring.fingerprints)
