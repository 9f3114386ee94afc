# SPDX-License-Identifier: MIT
"""sysupdate.d definitions: ``*.transfer`` (or ``*.conf``) and ``*.feature`` files → ``Transfer``.

Reproduces systemd 257's ``context_read_definitions()`` (``src/sysupdate/sysupdate.c``): search-path
order, masking, drop-ins, the ``.conf`` fallback and feature gating
(design.md#sysupdate-definitions); each file's keys are read by ``airlock.formats.transfer``
(design.md#sysupdate-keys, design.md#sysupdate-specifiers) and ``airlock.formats.features``
(design.md#sysupdate-features).  This module is the public face: it re-exports ``Transfer``,
``Resource``, ``ResourceType``, ``PathRelativeTo``, ``Feature`` and ``Specifiers``.

What it trusts: definition files are root-owned host configuration; they decide what airlock will
accept from the update VM, so they are parsed *more* strictly than systemd does.  Where systemd 257
logs a warning and ignores a line or a value, airlock refuses the file (docs/adr/0020): unknown keys
and sections, invalid values (booleans, numbers, modes, UUIDs, URLs, partition types, versions),
``MinVersion=`` with a specifier (257 silently drops it), ``Path=auto`` outside a partition target,
escapes in word lists, ``PartitionFlags=`` whose base 257 could read two ways.  The one warning
kept as systemd has it: ``ProtectVersion=`` that expands to an empty string (``%A`` on a host
without ``IMAGE_VERSION``) protects nothing and is not an error.

Refusals raise ``FormatError(code="config.definition")`` whose message names ``file:line`` and the
key; values quoted in messages pass through ``airlock.text.display``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from airlock.formats import sdconf, transfer
from airlock.formats.features import Feature, parse_feature
from airlock.formats.sdvalues import Specifiers
from airlock.formats.transfer import (
    DEFAULT_FILE_INSTANCES_MAX,
    UNLIMITED,
    PathRelativeTo,
    Resource,
    ResourceType,
    Transfer,
)
from airlock.text import display, shown

__all__ = [
    "DEFAULT_FILE_INSTANCES_MAX",
    "DEFAULT_SEARCH_PATHS",
    "UNLIMITED",
    "Feature",
    "PathRelativeTo",
    "Resource",
    "ResourceType",
    "Specifiers",
    "Transfer",
    "component_search_paths",
    "load",
    "load_dir",
    "parse",
    "parse_feature",
]

logger = logging.getLogger(__name__)

DEFAULT_SEARCH_PATHS = tuple(
    Path(p)
    for p in (
        "/etc/sysupdate.d",
        "/run/sysupdate.d",
        "/usr/local/lib/sysupdate.d",
        "/usr/lib/sysupdate.d",
    )
)


def component_search_paths(component: str) -> tuple[Path, ...]:
    """The search path of ``systemd-sysupdate --component=NAME``: ``…/sysupdate.NAME.d``.

    Raises:
        FormatError: code ``config.definition``: ``NAME`` is empty, not printable ASCII, or does
            not make a plain directory name.
    """
    directory = f"sysupdate.{component}.d"
    if (
        not component
        or not component.isascii()
        or not component.isprintable()
        or "/" in component
        or len(directory.encode()) > 255
    ):
        raise sdconf.fail("--component", None, f"invalid component name {display(component)}")
    return tuple(path.parent / directory for path in DEFAULT_SEARCH_PATHS)


def parse(
    text: str, *, origin: str, specifiers: Specifiers, features: Mapping[str, Feature] | None = None
) -> Transfer:
    """Parse one transfer definition (no drop-ins).

    Args:
        text: the file's content.
        origin: its path, used for ``Transfer.name`` (the basename minus ``.transfer``/``.conf``)
            and in messages.
        specifiers: values for ``%A``, ``%a``, ….
        features: the known features by name, for ``Features=``/``RequisiteFeatures=``.

    Returns:
        The transfer with every default filled in.

    Raises:
        FormatError: code ``config.definition``, naming ``file:line`` and the key.
    """
    return transfer.read([(text, origin)], specifiers=specifiers, features=features or {})


def _with_dropins(
    path: Path, directories: Sequence[Path], substitute: Mapping[str, str]
) -> list[tuple[str, str]]:
    dropins = sdconf.list_files([d / f"{path.name}.d" for d in directories], ".conf")
    texts = []
    for p in (path, *dropins):
        text = sdconf.read_text(p)
        for placeholder, value in substitute.items():
            text = text.replace(placeholder, value)
        texts.append((text, os.fspath(p)))
    return texts


def load(
    search_paths: Sequence[Path],
    *,
    specifiers: Specifiers,
    substitute: Mapping[str, str] | None = None,
) -> tuple[Transfer, ...]:
    """Read every transfer the way ``context_read_definitions()`` does.

    ``search_paths`` are in priority order (``DEFAULT_SEARCH_PATHS``: /etc, /run, /usr/local/lib,
    /usr/lib).  A basename in an earlier directory hides the same basename in later ones; an empty
    file or a symlink to /dev/null masks it.  ``*.feature`` files are read first; then
    ``*.transfer``, or ``*.conf`` if there is no ``*.transfer`` at all.  ``NAME.transfer.d/*.conf``
    drop-ins from every search path are applied after the main file, sorted by basename.
    ``substitute`` replaces placeholders in the text before parsing, as Spectrum's update VM
    replaces ``@UPDATE_URL@`` in its transfer templates.

    Returns:
        All transfers, enabled or not, sorted by file name (the order sysupdate acquires and
        installs them in).

    Raises:
        FormatError: code ``config.definition`` for any unreadable or invalid file.
    """
    features: dict[str, Feature] = {}
    for path in sdconf.list_files(search_paths, ".feature"):
        feature = parse_feature(
            _with_dropins(path, search_paths, substitute or {}), specifiers=specifiers
        )
        features[feature.name] = feature
    paths = sdconf.list_files(search_paths, ".transfer")
    if not paths:
        paths = sdconf.list_files(search_paths, ".conf")
        if paths:
            logger.debug(
                "transfer definitions should have the '.transfer' extension (%s)",
                shown(os.fspath(paths[0])),
            )
    return tuple(
        transfer.read(
            _with_dropins(path, search_paths, substitute or {}),
            specifiers=specifiers,
            features=features,
        )
        for path in paths
    )


def load_dir(
    directory: Path, *, specifiers: Specifiers, substitute: Mapping[str, str] | None = None
) -> tuple[Transfer, ...]:
    """The ``--definitions=DIR`` behaviour: exactly that one directory (drop-ins too).

    Raises:
        FormatError: code ``config.definition`` for any unreadable or invalid file.
    """
    return load([directory], specifiers=specifiers, substitute=substitute)
