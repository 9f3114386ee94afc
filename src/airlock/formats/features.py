# SPDX-License-Identifier: MIT
"""sysupdate.d ``*.feature`` files (design.md#sysupdate-features) and the transfer enable rule.

A feature is ``[Feature]`` with ``Description=``, ``Documentation=``, ``AppStream=`` and
``Enabled=`` (default **false**); drop-ins (``NAME.feature.d/*.conf``) usually switch it on.  A
transfer is enabled when every ``RequisiteFeatures=`` entry names an enabled feature and, if
``Features=`` is not empty, at least one of those is enabled (``transfer_decide_if_enabled()``);
unknown feature names count as disabled.

What it trusts: feature files are root-owned configuration.  Unknown keys and invalid values are
refused (``FormatError``, code ``config.definition``, ``file:line`` and key), not ignored as
systemd does (docs/adr/0020).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from airlock.formats import sdconf
from airlock.formats.sdconf import fail
from airlock.formats.sdvalues import Specifiers, expand, parse_boolean, url_is_valid
from airlock.text import display


@dataclass(frozen=True, slots=True, kw_only=True)
class Feature:
    """A ``*.feature`` file (design.md#sysupdate-features)."""

    name: str
    origin: str
    description: str | None = None
    documentation: str | None = None
    appstream: str | None = None
    enabled: bool = False


def stem(origin: str) -> str:
    """The definition id: the basename minus ``.transfer``, ``.conf`` or ``.feature``."""
    base = os.path.basename(origin)
    for suffix in (".transfer", ".conf", ".feature"):
        if base.endswith(suffix) and base != suffix:
            return base[: -len(suffix)]
    return base


def transfer_enabled(
    features: tuple[str, ...], requisite: tuple[str, ...], known: Mapping[str, Feature]
) -> bool:
    """``transfer_decide_if_enabled()``: all requisites on, and any listed feature on."""
    if not all(f in known and known[f].enabled for f in requisite):
        return False
    return not features or any(f in known and known[f].enabled for f in features)


def parse_feature(sources: Sequence[tuple[str, str]], *, specifiers: Specifiers) -> Feature:
    """Parse a ``*.feature`` file and its drop-ins, given as ``(text, origin)`` pairs in order.

    Raises:
        FormatError: code ``config.definition``, naming ``file:line`` and the key.
    """
    texts: dict[str, str | None] = {}
    enabled = False
    for text, origin in sources:
        parsed = sdconf.read_assignments(text, origin=origin, sections=frozenset({"Feature"}))
        for a in parsed.assignments:
            if a.key == "Description":
                texts[a.key] = a.value
            elif a.key in ("Documentation", "AppStream"):
                url = expand(a.value, specifiers, origin=a.origin, line=a.line, key=a.key)
                if url and (not url.startswith(("http://", "https://")) or not url_is_valid(url)):
                    raise fail(a.origin, a.line, f"not an http(s) URL: {display(url)}", key=a.key)
                texts[a.key] = url or None
            elif a.key == "Enabled":
                parsed_bool = parse_boolean(a.value)
                if parsed_bool is None:
                    raise fail(a.origin, a.line, f"not a boolean: {display(a.value)}", key=a.key)
                enabled = parsed_bool
            elif not a.key.startswith("X-"):
                raise fail(a.origin, a.line, "unknown key in [Feature]", key=display(a.key)[1:-1])
    origin = sources[0][1]
    return Feature(
        name=stem(origin),
        origin=origin,
        description=texts.get("Description"),
        documentation=texts.get("Documentation"),
        appstream=texts.get("AppStream"),
        enabled=enabled,
    )
