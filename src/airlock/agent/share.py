# SPDX-License-Identifier: MIT
"""Read the share's read-only ``etc/`` and render the VM transfer files (inside the VM).

Trusts: the share's ``etc/`` as the host's word (update URL, transfer files, keyring) — but still
reads it with bounds, without following symlinks, and validates the URL exactly as Spectrum's
``download-update`` does (plus a scheme check).  Refuses: a URL with whitespace, control
characters, DEL, ``?``, ``#`` or a backslash, a scheme other than http/https/file, transfers whose
source is not one ``url-file`` URL or whose target is not a regular-file directory.

Writes nothing into ``etc/``: ``@UPDATE_URL@`` is substituted into in-memory copies (native mode)
or copies in a private temporary directory (sysupdate mode), and the transfers' target ``Path=`` is
rewritten there to the share's ``updates/``.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from airlock.errors import ConfigError
from airlock.formats import definitions, updateurl
from airlock.text import display

URL_PLACEHOLDER = "@UPDATE_URL@"
MAX_URL_BYTES = 4096
MAX_TRANSFER_BYTES = 64 * 1024
MAX_TRANSFERS = 64
MAX_OS_RELEASE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ShareConfig:
    """What the host told the VM, validated."""

    share: Path
    updates: Path
    url: str
    keyring: Path
    transfer_texts: tuple[tuple[str, str], ...]  # (file name, rendered text), sorted by name


def validate_url(raw: bytes | str) -> str:
    """The update URL by Spectrum's rule (``formats.updateurl``); raises ``ConfigError``."""
    return updateurl.validate(raw)


def escape_for_definition(url: str) -> str:
    """The URL as a literal in a transfer file: ``%`` doubled so specifier expansion keeps it."""
    return url.replace("%", "%%")


def _read_bounded(dir_fd: int, name: str, limit: int, what: str) -> bytes:
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd
        )
    except OSError as exc:
        raise ConfigError(f"Failed to open {what}: {exc.strerror}", code="config.share") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"Refusing {what}: not a regular file", code="config.share")
        data = bytearray()
        while chunk := os.read(fd, 65536):
            data += chunk
            if len(data) > limit:
                raise ConfigError(
                    f"Refusing {what}: larger than {limit} bytes", code="config.share"
                )
        return bytes(data)
    finally:
        os.close(fd)


def _open_dir(path: Path | str, *, dir_fd: int | None = None, what: str) -> int:
    try:
        return os.open(
            path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError as exc:
        raise ConfigError(f"Failed to open {what}: {exc.strerror}", code="config.share") from exc


_TARGET_PATH = re.compile(r"[ \t]*Path[ \t]*=.*")
_SECTION = re.compile(r"[ \t]*\[([^\]]*)\][ \t]*")


def render_transfer(text: str, *, url: str, updates: Path) -> str:
    """Substitute ``@UPDATE_URL@`` and point every ``[Target]`` ``Path=`` at ``updates``."""
    out: list[str] = []
    section = ""
    for line in text.replace(URL_PLACEHOLDER, escape_for_definition(url)).split("\n"):
        if m := _SECTION.fullmatch(line):
            section = m.group(1)
        elif section == "Target" and _TARGET_PATH.fullmatch(line):
            line = "Path=" + escape_for_definition(os.fspath(updates))
        out.append(line)
    return "\n".join(out)


def read_share(share: Path) -> ShareConfig:
    """Read and validate ``share/etc``; the returned transfer texts are already rendered."""
    share = Path(os.path.abspath(share))
    updates = share / "updates"
    share_fd = _open_dir(share, what=f"the share {display(os.fspath(share))}")
    try:
        updates_fd = _open_dir("updates", dir_fd=share_fd, what="the share's updates/")
        os.close(updates_fd)
        etc_fd = _open_dir("etc", dir_fd=share_fd, what="the share's etc/")
        try:
            url = validate_url(_read_bounded(etc_fd, "update-url", MAX_URL_BYTES, "etc/update-url"))
            sysd_fd = _open_dir("systemd", dir_fd=etc_fd, what="etc/systemd/")
            try:
                keyring_fd = os.open(
                    "import-pubring.gpg",
                    os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                    dir_fd=sysd_fd,
                )
            except OSError as exc:
                raise ConfigError(
                    f"Failed to open etc/systemd/import-pubring.gpg: {exc.strerror}",
                    code="config.keyring",
                ) from exc
            finally:
                os.close(sysd_fd)
            os.close(keyring_fd)
            texts = _read_transfers(etc_fd, url=url, updates=updates)
        finally:
            os.close(etc_fd)
    finally:
        os.close(share_fd)
    return ShareConfig(
        share=share,
        updates=updates,
        url=url,
        keyring=share / "etc" / "systemd" / "import-pubring.gpg",
        transfer_texts=texts,
    )


def _read_transfers(etc_fd: int, *, url: str, updates: Path) -> tuple[tuple[str, str], ...]:
    dfd = _open_dir("vm-sysupdate.d", dir_fd=etc_fd, what="etc/vm-sysupdate.d/")
    try:
        names = sorted(n for n in os.listdir(dfd) if n.endswith(".transfer"))
        if not names:
            raise ConfigError("No transfer files in etc/vm-sysupdate.d/", code="config.definition")
        if len(names) > MAX_TRANSFERS:
            raise ConfigError(
                f"Refusing etc/vm-sysupdate.d/: more than {MAX_TRANSFERS} transfer files",
                code="config.definition",
            )
        result = []
        for name in names:
            if "/" in name or name.startswith("."):
                continue
            what = f"etc/vm-sysupdate.d/{display(name)}"
            raw = _read_bounded(dfd, name, MAX_TRANSFER_BYTES, what)
            try:
                text = raw.decode("utf-8", errors="strict")
            except UnicodeDecodeError:
                raise ConfigError(f"Refusing {what}: not UTF-8", code="config.definition") from None
            result.append((name, render_transfer(text, url=url, updates=updates)))
        return tuple(result)
    finally:
        os.close(dfd)


def load_specifiers() -> definitions.Specifiers:
    """Specifiers from the VM's own os-release (empty when it has none)."""
    for candidate in ("/etc/os-release", "/usr/lib/os-release"):
        with contextlib.suppress(OSError, ConfigError, UnicodeDecodeError):
            fd = _open_dir(os.path.dirname(candidate), what=candidate)
            try:
                raw = _read_bounded(
                    fd, os.path.basename(candidate), MAX_OS_RELEASE_BYTES, candidate
                )
            finally:
                os.close(fd)
            return definitions.Specifiers.from_os_release(raw.decode("utf-8", errors="strict"))
    return definitions.Specifiers.from_os_release("")


@contextlib.contextmanager
def rendered_definitions(config: ShareConfig) -> Iterator[Path]:
    """A private temporary directory holding the rendered ``*.transfer`` files (removed after)."""
    with tempfile.TemporaryDirectory(prefix="airlock-agent-") as tmp:
        directory = Path(tmp)
        for name, text in config.transfer_texts:
            fd = os.open(
                directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
            )
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
        yield directory


def parse_transfers(config: ShareConfig) -> tuple[definitions.Transfer, ...]:
    """Parse the rendered transfers in memory (native mode needs no writable directory)."""
    specifiers = load_specifiers()
    transfers = tuple(
        definitions.parse(text, origin=f"etc/vm-sysupdate.d/{name}", specifiers=specifiers)
        for name, text in config.transfer_texts
    )
    return check_transfers(transfers)


def load_transfers(directory: Path) -> tuple[definitions.Transfer, ...]:
    """Parse the rendered directory as ``systemd-sysupdate --definitions=`` will, and check it."""
    return check_transfers(definitions.load_dir(directory, specifiers=load_specifiers()))


def check_transfers(
    transfers: tuple[definitions.Transfer, ...],
) -> tuple[definitions.Transfer, ...]:
    """Check the transfers fit the agent: url-file sources with one URL, regular-file targets."""
    enabled = tuple(t for t in transfers if t.enabled)
    if not enabled:
        raise ConfigError("No enabled transfer in etc/vm-sysupdate.d/", code="config.definition")
    for t in enabled:
        if t.source.type != "url-file":
            raise ConfigError(
                f"Refusing transfer {display(t.name)}: source type must be url-file",
                code="config.definition",
            )
        if t.target.type != "regular-file":
            raise ConfigError(
                f"Refusing transfer {display(t.name)}: target type must be regular-file",
                code="config.definition",
            )
    urls = {t.source.path.rstrip("/") for t in enabled}
    if len(urls) != 1:
        raise ConfigError(
            "Refusing etc/vm-sysupdate.d/: the transfers name more than one source URL",
            code="config.definition",
        )
    validate_url(urls.pop())
    return transfers
