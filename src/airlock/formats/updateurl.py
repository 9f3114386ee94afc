# SPDX-License-Identifier: MIT
"""The update URL (``/etc/update-url``): one line, checked as Spectrum's update VM checks it.

Spectrum's VM refuses a URL with control characters, whitespace, ``?``, ``#`` or DEL (they would
break appending ``/SHA256SUMS`` or escaping it for ``sed``, design.md#vm-download).  airlock's
agent and host apply the same rule, plus: strict UTF-8, no NUL or backslash, scheme http, https or
file (``file://`` with an absolute path).  The host checks before it starts the VM, so a broken
file stops the run with exit 3 instead of a VM that sends nothing.

Pure: bytes or text in, the URL or ``ConfigError(code="config.url")`` out.
"""

from __future__ import annotations

import re

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
    return text
