# SPDX-License-Identifier: MIT
"""Settings declared once: a dataclass field carrying its kind, its help and its flag.

A *section* is a frozen dataclass with a ``SECTION`` class variable naming its TOML table
(``"limits"``, ``"fetcher.qemu"``) whose fields are declared with ``setting()``.  That field is the
one declaration of the setting: its name is the TOML key, its default the default, its ``Kind``
the type and the validation, ``help`` the text of ``--help`` and ``airlock config show``, and
``flag`` the command-line option that overrides it.  Each backend declares its own section next to
its code and receives it as a typed object; ``airlock.config`` assembles the host's sections.

This module is pure (no I/O, standard library only): the VM agent uses it too (``Limits``).
Validation failures raise ``Invalid``; callers turn them into ``ConfigError`` (a file) or
``UsageError`` (a flag), because only they know where the value came from.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)
_KEY = "airlock.setting"


class Origin(enum.StrEnum):
    """Where an effective value came from (``airlock config show``)."""

    DEFAULT = "default"
    SPECTRUM = "spectrum-update"  # spectrum-update's own default where it differs
    FILE = "file"
    FLAG = "flag"


class Shape(enum.Enum):
    """How a setting's flag takes its value on the command line."""

    VALUE = "value"  # --flag VALUE
    SWITCH = "switch"  # --flag (sets true)
    APPEND = "append"  # --flag A --flag B (a list)


class Invalid(ValueError):
    """A value breaks its setting's rule.  ``why`` completes "KEY …" (e.g. "must be …")."""

    def __init__(self, why: str, *, key: str | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.key = key


@dataclass(frozen=True, slots=True, kw_only=True)
class Kind:
    """How a raw value (TOML, or a flag's text) becomes a typed one, and back for display.

    Attributes:
        parse: TOML value → typed value; raises ``Invalid`` with a "must be …" reason.
        dump: typed value → TOML/JSON value (``None`` for an unset optional value).
        from_flag: a flag's text → the TOML-like value ``parse`` takes.
        shape: how the flag takes its value.
        metavar: placeholder shown in ``--help``.
        doc: what the value is, in words, for the generated reference (docs/config.md).
    """

    parse: Callable[[object], Any]
    dump: Callable[[Any], object]
    from_flag: Callable[[str], object] = str
    shape: Shape = Shape.VALUE
    metavar: str = "VALUE"
    doc: str = "a value"


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """The declaration attached to a section field (see the module docstring)."""

    kind: Kind
    help: str
    flag: str | None = None
    default_doc: str | None = None  # how docs show a computed default


class Section(Protocol):
    """A settings section: a dataclass with a ``SECTION`` table name."""

    SECTION: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


S = TypeVar("S", bound=Section)


def setting(
    default: T,
    *,
    kind: Kind,
    help: str,
    flag: str | None = None,
) -> T:
    """Declare a setting with a constant (immutable) default."""
    decl = Setting(kind=kind, help=help, flag=flag)
    field: T = dataclasses.field(default=default, metadata={_KEY: decl})
    return field


def setting_from(
    factory: Callable[[], T],
    *,
    kind: Kind,
    help: str,
    default_doc: str,
    flag: str | None = None,
) -> T:
    """Declare a setting whose default is computed when the section is made (e.g. from layout).

    ``default_doc`` says in words what the default is, for the generated reference.
    """
    decl = Setting(kind=kind, help=help, flag=flag, default_doc=default_doc)
    field: T = dataclasses.field(default_factory=factory, metadata={_KEY: decl})
    return field


def declarations(section: type[Section] | Section) -> Iterator[tuple[str, Setting]]:
    """``(key, Setting)`` for every setting of ``section``, in declaration order."""
    for f in dataclasses.fields(section):
        decl = f.metadata.get(_KEY)
        if isinstance(decl, Setting):
            yield f.name, decl


def declaration(section: type[Section], key: str) -> Setting:
    """The declaration of ``key`` in ``section``.

    Raises:
        Invalid: no such setting.
    """
    for name, decl in declarations(section):
        if name == key:
            return decl
    raise Invalid("is not a setting", key=key)


def build(section: type[S], raw: Mapping[str, object]) -> S:
    """Make ``section`` from raw values (missing keys keep their defaults).

    Raises:
        Invalid: an unknown key, a value its kind refuses, or a rule between settings
            (``__post_init__``), with ``key`` set.
    """
    values: dict[str, object] = {}
    for key, value in raw.items():
        decl = declaration(section, key)
        try:
            values[key] = decl.kind.parse(value)
        except Invalid as exc:
            raise Invalid(exc.why, key=key) from None
    return section(**values)


# --- kinds -----------------------------------------------------------------------------------


def _same(value: Any) -> object:
    return value


def _abs(value: object) -> Path:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise Invalid("must be an absolute path")
    return Path(value)


PATH = Kind(
    parse=_abs, dump=os.fspath, from_flag=os.path.abspath, metavar="PATH", doc="absolute path"
)


def optional(kind: Kind) -> Kind:
    """``kind`` or unset: ``""`` in TOML (and an absent key) means ``None``."""
    return dataclasses.replace(
        kind,
        parse=lambda v: None if v == "" else kind.parse(v),
        dump=lambda v: None if v is None else kind.dump(v),
        doc=f"{kind.doc}, or unset",
    )


def list_of(kind: Kind, *, non_empty: bool = False) -> Kind:
    """A TOML array of ``kind`` values, held as a tuple (a repeated flag appends)."""

    def parse(value: object) -> tuple[object, ...]:
        if not isinstance(value, list) or (non_empty and not value):
            raise Invalid("must be a non-empty list" if non_empty else "must be a list")
        return tuple(kind.parse(v) for v in value)

    return Kind(
        parse=parse,
        dump=lambda v: [kind.dump(x) for x in v],
        from_flag=kind.from_flag,
        shape=Shape.APPEND,
        metavar=kind.metavar,
        doc=f"list of {kind.doc}s",
    )


def _argv(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise Invalid("must be a non-empty list of strings")
    if any("\0" in v for v in value):
        raise Invalid("must not contain NUL bytes")
    return tuple(value)


ARGV = Kind(parse=_argv, dump=list, metavar="ARG", doc="command (non-empty list of strings)")


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
        raise Invalid("must be a positive number of seconds")
    return float(value)


def _number(text: str) -> object:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text  # parse() refuses it with the kind's own reason


SECONDS = Kind(parse=_seconds, dump=_same, from_flag=_number, metavar="S", doc="seconds")


def integer(low: int, high: int | None = None, *, unit: str = "") -> Kind:
    """An integer from ``low`` to ``high`` (inclusive; no upper bound when ``None``)."""
    what = f"an integer{' ' + unit if unit else ''}"
    why = f"must be {what} from {low} to {high}" if high else f"must be {what} of at least {low}"

    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(why)
        if value < low or (high is not None and value > high):
            raise Invalid(why)
        return value

    span = f"{low}–{high}" if high else f"≥ {low}"
    return Kind(parse=parse, dump=_same, from_flag=_number, metavar="N", doc=f"{what} {span}")


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise Invalid("must be true or false")
    return value


BOOL = Kind(
    parse=_bool, dump=_same, from_flag=lambda _: True, shape=Shape.SWITCH, doc="true or false"
)


def choice(enum_cls: type[E]) -> Kind:
    """One of the values of ``enum_cls`` (held as the enum member)."""
    allowed = [str(m.value) for m in enum_cls]
    why = "must be one of " + ", ".join(allowed)

    def parse(value: object) -> E:
        try:
            return enum_cls(value)
        except ValueError:
            raise Invalid(why) from None

    return Kind(
        parse=parse,
        dump=lambda v: v.value,
        metavar="|".join(allowed),
        doc="one of " + ", ".join(f"`{a}`" for a in allowed),
    )


def matching(regex: str, why: str, *, metavar: str = "NAME", doc: str = "name") -> Kind:
    """A string matching ``regex`` as a whole."""
    compiled = re.compile(regex)

    def parse(value: object) -> str:
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise Invalid(why)
        return value

    return Kind(parse=parse, dump=_same, metavar=metavar, doc=doc)
