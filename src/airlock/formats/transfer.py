# SPDX-License-Identifier: MIT
"""One transfer: the ``[Transfer]``, ``[Source]`` and ``[Target]`` keys and their defaults.

The Python form of systemd 257's ``transfer_read_definition()`` and ``transfer_finalize()``
(``src/sysupdate/sysupdate-transfer.c``; design.md#sysupdate-keys): every key with its
default, accumulation and reset rules, target-type inference and source/target compatibility.
File discovery (search paths, masking, drop-ins, ``.conf`` fallback) is in
``airlock.formats.definitions``, which re-exports the types defined here.

What it trusts: definition files are root-owned host configuration, parsed *more* strictly than
systemd does (docs/adr/0020): where 257 warns and ignores a value, this module refuses the file with
``FormatError(code="config.definition")`` naming ``file:line`` and the key; quoted values pass
through ``airlock.text.display``.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from airlock.errors import FormatError
from airlock.formats import features as features_mod
from airlock.formats import pattern, sdconf, sdvalues, version
from airlock.formats.features import Feature
from airlock.formats.sdconf import fail
from airlock.formats.sdvalues import UINT64_MAX, Specifiers, expand
from airlock.text import display

logger = logging.getLogger(__name__)

DEFAULT_FILE_INSTANCES_MAX = 3
UNLIMITED = UINT64_MAX


class ResourceType(enum.StrEnum):
    """``Type=`` of a source or target."""

    URL_FILE = "url-file"
    URL_TAR = "url-tar"
    TAR = "tar"
    REGULAR_FILE = "regular-file"
    DIRECTORY = "directory"
    SUBVOLUME = "subvolume"
    PARTITION = "partition"


class PathRelativeTo(enum.StrEnum):
    """``PathRelativeTo=``."""

    ROOT = "root"
    ESP = "esp"
    XBOOTLDR = "xbootldr"
    BOOT = "boot"
    EXPLICIT = "explicit"


_SOURCE_TYPES = frozenset(ResourceType) - {ResourceType.PARTITION}
_URL_TYPES = frozenset({ResourceType.URL_FILE, ResourceType.URL_TAR})
_FILE_SOURCES = frozenset({ResourceType.URL_FILE, ResourceType.REGULAR_FILE})
_TREE_SOURCES = frozenset(
    {ResourceType.URL_TAR, ResourceType.TAR, ResourceType.DIRECTORY, ResourceType.SUBVOLUME}
)
_FILE_TARGETS = frozenset({ResourceType.PARTITION, ResourceType.REGULAR_FILE})
_TREE_TARGETS = frozenset({ResourceType.DIRECTORY, ResourceType.SUBVOLUME})
_BOOT_RELATIVE_TYPES = frozenset({ResourceType.REGULAR_FILE, ResourceType.DIRECTORY})


@dataclass(frozen=True, slots=True, kw_only=True)
class Resource:
    """A ``[Source]`` or ``[Target]``.  ``path`` is ``"auto"`` only for partition targets."""

    type: ResourceType
    path: str
    path_relative_to: PathRelativeTo = PathRelativeTo.ROOT
    match_patterns: tuple[pattern.Pattern, ...]
    match_partition_type: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer:
    """One transfer definition, as systemd 257 would run it.

    ``None`` means "not configured": the engine then takes the value from the source pattern
    (``@u @f @a @r @g @m @l @d``) or the resource (design.md#sysupdate-keys);
    ``tries_left``/``tries_done`` fall back to 3/0 only when the first target pattern uses
    ``@l``/``@d``.  ``size_max`` has no key in systemd 257 and is always ``None`` (kept for
    docs/dev/interfaces.md).  ``current_symlink`` (``CurrentSymlink=``) is an addition to the
    interface.
    """

    name: str
    origin: str
    min_version: str | None = None
    protect_versions: tuple[str, ...] = ()
    changelog: tuple[str, ...] = ()
    appstream: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    requisite_features: tuple[str, ...] = ()
    verify: bool = True
    enabled: bool = True
    source: Resource
    target: Resource
    instances_max: int = DEFAULT_FILE_INSTANCES_MAX
    remove_temporary: bool = True
    mode: int | None = None
    size_max: int | None = None
    tries_left: int | None = None
    tries_done: int | None = None
    partition_uuid: str | None = None
    partition_flags: int | None = None
    read_only: bool | None = None
    no_auto: bool | None = None
    growfs: bool | None = None
    current_symlink: str | None = None


class _Draft:
    """The mutable state ``transfer_read_definition()`` fills in, one assignment at a time."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.lists: dict[str, list[str]] = {}
        self.patterns: dict[str, list[pattern.Pattern]] = {"Source": [], "Target": []}
        self.where: dict[str, tuple[str, int]] = {}

    def get_str(self, slot: str) -> str | None:
        value = self.values.get(slot)
        if value is None or isinstance(value, str):
            return value
        raise RuntimeError(f"{slot} holds {type(value).__name__}")

    def get_int(self, slot: str) -> int | None:
        value = self.values.get(slot)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise RuntimeError(f"{slot} holds {type(value).__name__}")

    def get_bool(self, slot: str) -> bool | None:
        value = self.values.get(slot)
        if value is None or isinstance(value, bool):
            return value
        raise RuntimeError(f"{slot} holds {type(value).__name__}")


def _tristate(a: sdconf.Assignment) -> bool | None:
    if not a.value:
        return None
    parsed = sdvalues.parse_boolean(a.value)
    if parsed is None:
        raise fail(a.origin, a.line, f"not a boolean: {display(a.value)}", key=a.key)
    return parsed


def _u64(a: sdconf.Assignment) -> int:
    parsed = sdvalues.parse_u64(a.value)
    if parsed is None:
        raise fail(
            a.origin, a.line, f"not an unsigned 64-bit number: {display(a.value)}", key=a.key
        )
    return parsed


def _add_patterns(d: _Draft, a: sdconf.Assignment, spec: Specifiers) -> None:
    current = d.patterns[a.section]
    if not a.value:
        current.clear()
        return
    for word in sdvalues.split_words(a.value, origin=a.origin, line=a.line, key=a.key):
        text = expand(word, spec, origin=a.origin, line=a.line, key=a.key)
        try:
            compiled = pattern.compile(text)
        except FormatError as exc:
            raise fail(a.origin, a.line, f"invalid pattern: {exc.message}", key=a.key) from None
        if all(p.text != compiled.text for p in current):
            current.append(compiled)


def _min_version(d: _Draft, a: sdconf.Assignment, spec: Specifiers) -> None:
    # 257 checks validity before expanding specifiers, so it drops this (design.md#sysupdate-keys)
    if "%" in a.value:
        raise fail(a.origin, a.line, "specifiers are not honoured here by systemd 257", key=a.key)
    if not version.is_valid(a.value):
        raise fail(a.origin, a.line, f"not a valid version: {display(a.value)}", key=a.key)
    d.values[a.slot] = a.value


def _protect_version(d: _Draft, a: sdconf.Assignment, spec: Specifiers) -> None:
    expanded = expand(a.value, spec, origin=a.origin, line=a.line, key=a.key)
    if not expanded:
        logger.debug("%s:%d: ProtectVersion= expands to nothing, ignored", a.origin, a.line)
    elif not version.is_valid(expanded):
        raise fail(a.origin, a.line, f"not a valid version: {display(expanded)}", key=a.key)
    elif expanded not in d.lists.setdefault(a.slot, []):
        d.lists[a.slot].append(expanded)


def _url_list(d: _Draft, a: sdconf.Assignment, spec: Specifiers) -> None:
    if not a.value:
        d.lists[a.slot] = []
        return
    url = expand(a.value, spec, origin=a.origin, line=a.line, key=a.key)
    if not url.startswith(("http://", "https://")) or not sdvalues.url_is_valid(url):
        raise fail(a.origin, a.line, f"not an http(s) URL: {display(url)}", key=a.key)
    d.lists.setdefault(a.slot, []).append(url)


def _word_list(d: _Draft, a: sdconf.Assignment, spec: Specifiers) -> None:
    if not a.value:
        d.lists[a.slot] = []
        return
    words = sdvalues.split_words(a.value, origin=a.origin, line=a.line, key=a.key)
    d.lists.setdefault(a.slot, []).extend(words)


def _boolean(d: _Draft, a: sdconf.Assignment, spec: Specifiers) -> None:
    d.values[a.slot] = _tristate(a)


def _resource_type(d: _Draft, a: sdconf.Assignment, spec: Specifiers) -> None:
    try:
        d.values[a.slot] = ResourceType(a.value)
    except ValueError:
        raise fail(a.origin, a.line, f"unknown type {display(a.value)}", key=a.key) from None


def _path(d: _Draft, a: sdconf.Assignment, spec: Specifiers) -> None:
    d.values[a.slot] = expand(a.value, spec, origin=a.origin, line=a.line, key=a.key)


def _relative_to(d: _Draft, a: sdconf.Assignment, spec: Specifiers) -> None:
    try:
        d.values[a.slot] = PathRelativeTo(a.value) if a.value else PathRelativeTo.ROOT
    except ValueError:
        raise fail(a.origin, a.line, f"unknown value {display(a.value)}", key=a.key) from None


def _partition_type(d: _Draft, a: sdconf.Assignment, spec: Specifiers) -> None:
    v = a.value
    if v and not (sdvalues.UUID_RE.fullmatch(v) or v in sdvalues.PARTITION_TYPE_NAMES):
        raise fail(a.origin, a.line, f"unknown partition type {display(v)}", key=a.key)
    is_uuid = sdvalues.UUID_RE.fullmatch(v) is not None
    d.values[a.slot] = (v.replace("-", "").lower() if is_uuid else v) or None


def _partition_uuid(d: _Draft, a: sdconf.Assignment, spec: Specifiers) -> None:
    if a.value and not sdvalues.UUID_RE.fullmatch(a.value):
        raise fail(a.origin, a.line, f"not a UUID: {display(a.value)}", key=a.key)
    d.values[a.slot] = a.value.replace("-", "").lower() or None


def _partition_flags(d: _Draft, a: sdconf.Assignment, spec: Specifiers) -> None:
    # 257 reads base 0 (measured), later systemd base 16 (safe_atoux64): accept only spellings
    # that mean the same in both (one digit, or 0x…), docs/adr/0020.
    if a.value and not sdvalues.HEX_FLAGS_RE.fullmatch(a.value):
        raise fail(
            a.origin, a.line, "write flags as one digit or in hex with a 0x prefix", key=a.key
        )
    d.values[a.slot] = int(a.value, 0) if a.value else None


def _mode(d: _Draft, a: sdconf.Assignment, spec: Specifiers) -> None:
    v = a.value
    if not re.fullmatch(r"[0-7]{1,5}", v) or int(v, 8) > 0o7777:
        raise fail(a.origin, a.line, f"not an octal file mode: {display(v)}", key=a.key)
    if int(v, 8) & ~0o775:
        raise fail(
            a.origin, a.line, "refusing world-writable, setuid, setgid or sticky modes", key=a.key
        )
    d.values[a.slot] = int(v, 8)


def _number(d: _Draft, a: sdconf.Assignment, spec: Specifiers) -> None:
    d.values[a.slot] = _u64(a)


def _instances_max(d: _Draft, a: sdconf.Assignment, spec: Specifiers) -> None:
    number = _u64(a) if a.value else 0
    if number == 1:
        logger.debug("%s:%d: InstancesMax=1 bumped to 2, as systemd does", a.origin, a.line)
    d.values[a.slot] = 2 if number == 1 else number


def _current_symlink(d: _Draft, a: sdconf.Assignment, spec: Specifiers) -> None:
    d.values[a.slot] = _symlink(a, spec) if a.value else None


_Handler = Callable[[_Draft, sdconf.Assignment, Specifiers], None]

# The keys of systemd 257's ``transfer_read_definition()`` table, each with its parser.
_KEYS: dict[str, _Handler] = {
    "Transfer.MinVersion": _min_version,
    "Transfer.ProtectVersion": _protect_version,
    "Transfer.ChangeLog": _url_list,
    "Transfer.AppStream": _url_list,
    "Transfer.Features": _word_list,
    "Transfer.RequisiteFeatures": _word_list,
    "Transfer.Verify": _boolean,
    "Source.Type": _resource_type,
    "Source.Path": _path,
    "Source.PathRelativeTo": _relative_to,
    "Source.MatchPattern": _add_patterns,
    "Target.Type": _resource_type,
    "Target.Path": _path,
    "Target.PathRelativeTo": _relative_to,
    "Target.MatchPattern": _add_patterns,
    "Target.MatchPartitionType": _partition_type,
    "Target.PartitionUUID": _partition_uuid,
    "Target.PartitionFlags": _partition_flags,
    "Target.PartitionNoAuto": _boolean,
    "Target.PartitionGrowFileSystem": _boolean,
    "Target.ReadOnly": _boolean,
    "Target.Mode": _mode,
    "Target.TriesLeft": _number,
    "Target.TriesDone": _number,
    "Target.InstancesMax": _instances_max,
    "Target.RemoveTemporary": _boolean,
    "Target.CurrentSymlink": _current_symlink,
}


def _assign(d: _Draft, a: sdconf.Assignment, spec: Specifiers) -> None:
    """Apply one assignment through the key table (``_KEYS``)."""
    handler = _KEYS.get(a.slot)
    if handler is None:
        raise fail(a.origin, a.line, f"unknown key in [{a.section}]", key=display(a.key)[1:-1])
    d.where[a.slot] = (a.origin, a.line)
    handler(d, a, spec)


def _symlink(a: sdconf.Assignment, spec: Specifiers) -> str:
    path = expand(a.value, spec, origin=a.origin, line=a.line, key=a.key)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts or not parts or not path.isprintable():
        raise fail(a.origin, a.line, f"not a usable path: {display(path)}", key=a.key)
    return ("/" if path.startswith("/") else "") + "/".join(parts)


# --- finalize (transfer_finalize) --------------------------------------------------------------


_Bad = Callable[[str, "str | None", str], FormatError]


def _types_and_paths(d: _Draft, bad: _Bad) -> tuple[ResourceType, str, ResourceType, str]:
    """Source type and path, target path, and the target type (inferred,
    design.md#sysupdate-keys)."""
    source_type = d.values.get("Source.Type")
    if not isinstance(source_type, ResourceType):
        raise bad("Source", None, "[Source] lacks Type=")
    if source_type not in _SOURCE_TYPES:
        raise bad(
            "Source",
            "Type",
            "source Type= must be one of url-file, url-tar, tar, regular-file, directory,"
            " subvolume",
        )
    source_path = d.values.get("Source.Path")
    if not isinstance(source_path, str) or not source_path:
        raise bad("Source", None, "[Source] lacks Path=")
    target_path = d.values.get("Target.Path")
    if not isinstance(target_path, str) or not target_path:
        raise bad("Target", None, "[Target] lacks Path=")
    target_type = d.values.get("Target.Type")
    if not isinstance(target_type, ResourceType):
        if source_type in _FILE_SOURCES:
            partition = target_path.startswith("/dev/")
            target_type = ResourceType.PARTITION if partition else ResourceType.REGULAR_FILE
        elif source_type == ResourceType.SUBVOLUME:
            target_type = ResourceType.SUBVOLUME
        else:
            target_type = ResourceType.DIRECTORY
    if target_type not in _FILE_TARGETS | _TREE_TARGETS:
        raise bad(
            "Target",
            "Type",
            "target Type= must be one of partition, regular-file, directory, subvolume",
        )
    if (source_type in _FILE_SOURCES and target_type not in _FILE_TARGETS) or (
        source_type in _TREE_SOURCES and target_type not in _TREE_TARGETS
    ):
        raise bad(
            "Target",
            "Type",
            f"target type {target_type} is incompatible with source type {source_type}",
        )
    return source_type, source_path, target_type, target_path


def _relative_bases(
    d: _Draft, source_type: ResourceType, target_type: ResourceType, bad: _Bad
) -> tuple[PathRelativeTo, PathRelativeTo]:
    """``PathRelativeTo=`` of source and target, where each is allowed."""
    source_rel = PathRelativeTo(d.get_str("Source.PathRelativeTo") or PathRelativeTo.ROOT)
    target_rel = PathRelativeTo(d.get_str("Target.PathRelativeTo") or PathRelativeTo.ROOT)
    if target_rel == PathRelativeTo.EXPLICIT:
        raise bad("Target", "PathRelativeTo", "explicit can only be used in [Source]")
    for section, rel, rtype in (
        ("Source", source_rel, source_type),
        ("Target", target_rel, target_type),
    ):
        if rel not in (PathRelativeTo.ROOT, PathRelativeTo.EXPLICIT) and (
            rtype not in _BOOT_RELATIVE_TYPES
        ):
            raise bad(
                section,
                "PathRelativeTo",
                f"{rel} is only allowed for regular-file and directory resources",
            )
    return source_rel, target_rel


def _check_paths(
    source: tuple[ResourceType, str], target: tuple[ResourceType, str], bad: _Bad
) -> None:
    """URLs for url sources, normalized absolute paths otherwise, ``auto`` only for partitions."""
    (source_type, source_path), (target_type, target_path) = source, target
    if source_path == "auto":
        raise bad("Source", "Path", "Path=auto is only valid in a partition [Target]")
    if source_type in _URL_TYPES:
        if not sdvalues.url_is_valid(source_path):
            raise bad("Source", "Path", f"not a valid http(s) or file URL: {display(source_path)}")
    elif not sdvalues.path_is_normalized(source_path):
        raise bad("Source", "Path", f"not a normalized, absolute path: {display(source_path)}")
    if target_path == "auto":
        if target_type != ResourceType.PARTITION:
            raise bad("Target", "Path", "Path=auto is only valid for partition targets")
    elif not sdvalues.path_is_normalized(target_path):
        raise bad("Target", "Path", f"not a normalized, absolute path: {display(target_path)}")


def _check_partition_keys(d: _Draft, target_type: ResourceType, bad: _Bad) -> None:
    symlink = d.get_str("Target.CurrentSymlink")
    partition = target_type == ResourceType.PARTITION
    if symlink is not None and partition and not symlink.startswith("/"):
        raise bad("Target", "CurrentSymlink", "must be an absolute path for a partition target")
    if d.get_str("Target.MatchPartitionType") is not None and not partition:
        raise bad("Target", "MatchPartitionType", "only meaningful for partition targets")


def _finalize(
    d: _Draft, *, name: str, origin: str, sections: Mapping[str, int], known: Mapping[str, Feature]
) -> Transfer:
    """``transfer_finalize()``: required keys, inferred target type, compatibility, defaults."""

    def bad(section: str, key: str | None, problem: str) -> FormatError:
        file, line = d.where.get(f"{section}.{key}", (origin, sections.get(section, 1)))
        return fail(file, line, problem, key=key)

    source_type, source_path, target_type, target_path = _types_and_paths(d, bad)
    source_rel, target_rel = _relative_bases(d, source_type, target_type, bad)
    _check_paths((source_type, source_path), (target_type, target_path), bad)
    if not d.patterns["Source"]:
        raise bad("Source", None, "[Source] lacks MatchPattern=")
    _check_partition_keys(d, target_type, bad)
    instances_max = d.get_int("Target.InstancesMax") or 0
    if instances_max == 0:
        partition = target_type == ResourceType.PARTITION
        instances_max = UNLIMITED if partition else DEFAULT_FILE_INSTANCES_MAX
    features = tuple(d.lists.get("Transfer.Features", ()))
    requisite = tuple(d.lists.get("Transfer.RequisiteFeatures", ()))
    return Transfer(
        name=name,
        origin=origin,
        min_version=d.get_str("Transfer.MinVersion"),
        protect_versions=tuple(d.lists.get("Transfer.ProtectVersion", ())),
        changelog=tuple(d.lists.get("Transfer.ChangeLog", ())),
        appstream=tuple(dict.fromkeys(d.lists.get("Transfer.AppStream", ()))),
        features=features,
        requisite_features=requisite,
        verify=d.get_bool("Transfer.Verify") is not False,
        enabled=features_mod.transfer_enabled(features, requisite, known),
        source=Resource(
            type=source_type,
            path=source_path,
            path_relative_to=source_rel,
            match_patterns=tuple(d.patterns["Source"]),
        ),
        target=Resource(
            type=target_type,
            path=target_path,
            path_relative_to=target_rel,
            match_patterns=tuple(d.patterns["Target"] or d.patterns["Source"]),
            match_partition_type=d.get_str("Target.MatchPartitionType"),
        ),
        instances_max=instances_max,
        remove_temporary=d.get_bool("Target.RemoveTemporary") is not False,
        mode=d.get_int("Target.Mode"),
        tries_left=d.get_int("Target.TriesLeft"),
        tries_done=d.get_int("Target.TriesDone"),
        partition_uuid=d.get_str("Target.PartitionUUID"),
        partition_flags=d.get_int("Target.PartitionFlags"),
        read_only=d.get_bool("Target.ReadOnly"),
        no_auto=d.get_bool("Target.PartitionNoAuto"),
        growfs=d.get_bool("Target.PartitionGrowFileSystem"),
        current_symlink=d.get_str("Target.CurrentSymlink"),
    )


# --- reading one definition -------------------------------------------------------------------

_TRANSFER_SECTIONS = frozenset({"Transfer", "Source", "Target"})


def read(
    sources: Sequence[tuple[str, str]], *, specifiers: Specifiers, features: Mapping[str, Feature]
) -> Transfer:
    """Parse a main file then its drop-ins, given as ``(text, origin)`` pairs in order.

    Args:
        sources: the main file first, then each drop-in in the order systemd applies them.
        specifiers: values for ``%A``, ``%a``, ….
        features: the known features by name, for ``Features=``/``RequisiteFeatures=``.

    Returns:
        The transfer, named after the main file, with every default filled in.

    Raises:
        FormatError: code ``config.definition``, naming ``file:line`` and the key.
    """
    draft = _Draft()
    sections: dict[str, int] = {}
    main_origin = sources[0][1]
    for text, origin in sources:
        parsed = sdconf.read_assignments(text, origin=origin, sections=_TRANSFER_SECTIONS)
        if origin == main_origin:
            sections.update(parsed.section_lines)
        for assignment in parsed.assignments:
            if assignment.key.startswith("X-"):
                continue  # systemd ignores X- keys silently; so do we
            _assign(draft, assignment, specifiers)
    return _finalize(
        draft,
        name=features_mod.stem(main_origin),
        origin=main_origin,
        sections=sections,
        known=features,
    )
