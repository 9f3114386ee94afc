# SPDX-License-Identifier: MIT
"""Target ``url``: the update URL (``formats.updateurl.validate``) and what the VM does with it.

``validate`` may raise only ``ConfigError`` (``config.url``).  An accepted URL must be usable by
the agent without an exception: ``urllib.parse.urlsplit`` with its host and port (the agent's
HTTP transport reads both), the file name join, and the agent's transfer rendering: the rendered
definition must parse, with the URL as its source ``Path=``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from airlock.agent import share, transport
from airlock.errors import ConfigError
from airlock.formats import definitions
from fuzz.common import check, refusals

_SPECIFIERS = definitions.Specifiers.from_os_release("ID=spectrum\nIMAGE_VERSION=1\n")
_TEMPLATE = (
    "[Source]\nType=url-file\nPath=@UPDATE_URL@\nMatchPattern=Spectrum_@v.efi\n\n"
    "[Target]\nType=regular-file\nPath=/boot\nMatchPattern=Spectrum_@v.efi\n"
)


def test_one(data: bytes) -> None:
    """Validate ``data`` as /etc/update-url; check that an accepted URL is usable."""
    with refusals((ConfigError,), "config.url"):
        url = share.validate_url(data)
        check(share.validate_url(url) == url, "validate() is not idempotent")
        parts = urllib.parse.urlsplit(url)
        check(parts.scheme in ("http", "https", "file"), f"scheme {parts.scheme!r} accepted")
        if parts.scheme != "file":
            check(bool(parts.hostname), f"no host in {url!r}")
            _ = parts.port  # the agent's HTTP connection reads it (ValueError on a bad port)
        transport.join(url, "SHA256SUMS")
        text = share.render_transfer(_TEMPLATE, url=url, updates=Path("/run/updates"))
        parsed = definitions.parse(text, origin="fuzz.transfer", specifiers=_SPECIFIERS)
        check(parsed.source.path == url, f"rendered Path= reads back as {parsed.source.path!r}")


def seeds() -> Iterator[bytes]:
    """Good URLs of each scheme and the characters Spectrum's rule refuses."""
    for url in (
        "https://updates.example/spectrum",
        "http://192.0.2.1:8080/",
        "http://[2001:db8::1]:8080/x",
        "file:///run/updater",
        "file://localhost/srv/u",
        "https://u.example/a%20b\n",
        "https://u.example/?q",
        "https://u.example/#f",
        "https://u.example/a b",
        "https://u.example/\\x",
        "ftp://u.example/",
        "https://u.example:8080",
        "https://u\u00e9.example/",
    ):
        yield url.encode()
    yield b"https://u.example/\xff"
