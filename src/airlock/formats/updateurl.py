# SPDX-License-Identifier: MIT
"""The update URL (``/etc/update-url``): one line, checked as Spectrum's update VM checks it.

Spectrum's VM refuses a URL with control characters, whitespace, ``?``, ``#`` or DEL (they would
break appending ``/SHA256SUMS`` or escaping it for ``sed``, design.md#vm-download).  airlock's
agent and host apply the same rule, plus: strict UTF-8, no NUL or backslash, scheme http, https or
file (``file://`` with an absolute path), ASCII only (systemd-sysupdate refuses any other URL in
the ``Path=`` of the VM's transfers), and an http(s) host and port that parse (the agent's HTTP
transport reads both; found by fuzzing, docs/fuzzing.md).  The host checks before it starts the
VM, so a broken file stops the run with exit 3 instead of a VM that sends nothing.

Pure: bytes or text in, the URL or ``ConfigError(code="config.url")`` out.
"""

from __future__ import annotations

import re
import urllib.parse

from airlock.errors import ConfigError
from airlock.text import display

# Spectrum: ^[^\001-\040?#\x7F]+$ (NUL cannot survive the shell).  We also refuse NUL and "\".
_URL_CHARS = re.compile(r"[^\x00-\x20?#\x7f\\]+")
_URL_SCHEME = re.compile(r"(https?)://[^/]+(/.*)?|file://(localhost)?(/.*)")


def validate(raw: bytes | str) -> str:
    """Return the update URL without trailing newlines, or raise.

    Raises:
        ConfigError: ``config.url`` naming the rule the URL breaks (the URL escaped).
    """
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise ConfigError(
                f"Bad update URL from host: not UTF-8: {display(raw)}", code="config.url"
            ) from None
    else:
        text = raw
    text = text.rstrip("\n")  # as the shell's $(cat /etc/update-url) in Spectrum
    if not _URL_CHARS.fullmatch(text):
        raise ConfigError(
            "Bad update URL from host: control characters, whitespace, query parameters, "
            f"and fragment specifiers not allowed: {display(text)}",
            code="config.url",
        )
    if not _URL_SCHEME.fullmatch(text):
        raise ConfigError(
            f"Bad update URL from host: scheme must be http, https or file: {display(text)}",
            code="config.url",
        )
    _check_parts(text)
    return text


def _check_parts(text: str) -> None:
    """Refuse what sysupdate's URL check or the agent's ``urllib.parse`` cannot take."""
    if not text.isascii():
        raise ConfigError(
            f"Bad update URL from host: not ASCII (systemd-sysupdate refuses it): {display(text)}",
            code="config.url",
        )
    try:
        parts = urllib.parse.urlsplit(text)
        port_ok = parts.port is None or parts.port >= 0
    except ValueError:
        port_ok = False
    if not port_ok or (parts.scheme != "file" and not parts.hostname):
        raise ConfigError(
            f"Bad update URL from host: its host or port does not parse: {display(text)}",
            code="config.url",
        )
