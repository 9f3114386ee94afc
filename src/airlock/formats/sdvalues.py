# SPDX-License-Identifier: MIT
"""Value grammars of systemd's configuration files, and specifier expansion.

Specifiers as in design.md#sysupdate-specifiers.  Companion of ``airlock.formats.sdconf`` (the line
dialect) and ``airlock.formats.definitions`` (what each sysupdate key means).  Everything here is a
pure function of its arguments: booleans (``parse_boolean()``), unsigned numbers (``safe_atou64()``,
design.md#sysupdate-numbers), UUIDs, GPT partition type names, URLs, normalised paths, and ``%X``
specifiers whose values the caller supplies (``Specifiers``); nothing reads the host.

What it refuses: anything the grammar does not accept returns ``None``/``False`` or raises
``FormatError(code="config.definition")`` naming ``file:line`` and the key; quoted values pass
through ``airlock.text.display``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airlock.formats.sdconf import fail
from airlock.text import display

UINT64_MAX = (1 << 64) - 1


# --- values -----------------------------------------------------------------------------------

_TRUE = frozenset({"1", "yes", "y", "true", "t", "on"})
_FALSE = frozenset({"0", "no", "n", "false", "f", "off"})


def parse_boolean(value: str) -> bool | None:
    """systemd's ``parse_boolean()``: ``None`` if ``value`` is not a boolean."""
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


def parse_u64(value: str) -> int | None:
    """systemd's ``safe_atou64()`` (base 0 plus ``0b``/``0o``), ``None`` if it fails
    (design.md#sysupdate-numbers)."""
    s = value.lstrip(" \t\n\r\v\f")
    negative = False
    if s[:1] in ("+", "-"):
        negative = s[0] == "-"
        s = s[1:]
    base = 10
    if s[:2].lower() == "0b":
        base, s = 2, s[2:]
    elif s[:2].lower() == "0o":
        base, s = 8, s[2:]
    elif s[:2].lower() == "0x":
        base, s = 16, s[2:]
    elif s.startswith("0") and len(s) > 1:
        base, s = 8, s[1:]
    digits = "0123456789abcdef"[:base]
    if not s or any(c not in digits for c in s.lower()):
        return None
    number = int(s, base)
    if number > UINT64_MAX or (negative and number != 0):
        return None
    return number


def split_words(value: str, *, origin: str, line: int, key: str) -> tuple[str, ...]:
    """Whitespace-separated words; quotes and backslash escapes are refused, not interpreted."""
    if any(c in value for c in "\"'\\"):
        raise fail(origin, line, "quotes and backslash escapes are not supported", key=key)
    return tuple(value.split())


# --- sysupdate value grammars ------------------------------------------------------------------

UUID_RE = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_ARCHES = (
    "alpha",
    "arc",
    "arm",
    "arm64",
    "ia64",
    "loongarch64",
    "mips-le",
    "mips64-le",
    "parisc",
    "ppc",
    "ppc64",
    "ppc64-le",
    "riscv32",
    "riscv64",
    "s390",
    "s390x",
    "tilegx",
    "x86",
    "x86-64",
)
PARTITION_TYPE_NAMES = frozenset(
    [
        f"{base}{arch}{kind}"
        for base in ("root", "usr")
        for arch in ("", *(f"-{a}" for a in _ARCHES))
        for kind in ("", "-verity", "-verity-sig")
    ]
    + ["esp", "xbootldr", "swap", "home", "srv", "var", "tmp", "user-home", "linux-generic"]
)
HEX_FLAGS_RE = re.compile(r"0[xX][0-9a-fA-F]{1,16}|[0-9]")


def url_is_valid(value: str) -> bool:
    rest = value.removeprefix("http://").removeprefix("https://")
    if rest == value:
        rest = value.removeprefix("file:/")
        if rest == value:
            return False
    return bool(rest) and rest.isascii() and rest.isprintable() and " " not in rest


def path_is_normalized(value: str) -> bool:
    if not value.startswith("/") or len(value.encode()) >= 4096 or "//" in value:
        return False
    return not any(part in (".", "..") for part in value.split("/"))


# --- specifiers (design.md#sysupdate-specifiers) --------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Specifiers:
    """Values for the specifiers of ``system_and_tmp_specifier_table``
    (design.md#sysupdate-specifiers).

    os-release values default to ``""``, which is what systemd expands an unset field to.  Host
    values (``%a %b %H %l %q %m %v``) default to ``None``: expanding one that the caller did not
    supply is an error rather than a silent empty string.  ``%l`` falls back to ``hostname`` up to
    its first dot.
    """

    architecture: str | None = None  # %a, systemd's name (x86-64, arm64, …)
    image_version: str = ""  # %A  IMAGE_VERSION
    boot_id: str | None = None  # %b
    build_id: str = ""  # %B  BUILD_ID
    hostname: str | None = None  # %H
    short_hostname: str | None = None  # %l
    pretty_hostname: str | None = None  # %q
    machine_id: str | None = None  # %m
    image_id: str = ""  # %M  IMAGE_ID
    os_id: str = ""  # %o  ID
    kernel_release: str | None = None  # %v
    version_id: str = ""  # %w  VERSION_ID
    variant_id: str = ""  # %W  VARIANT_ID
    tmp_dir: str = "/tmp"  # %T  # noqa: S108 - systemd's default, only expanded into text
    var_tmp_dir: str = "/var/tmp"  # %V  # noqa: S108 - as above

    @classmethod
    def from_os_release(cls, text: str, **host: str | None) -> Specifiers:
        """Build specifiers from os-release text plus host values given as keywords.

        Args:
            text: the content of ``os-release`` (``KEY=value`` lines, optional quotes).
            **host: any other field of this class, e.g. ``architecture="x86-64"``.

        Returns:
            The specifier values.

        Raises:
            TypeError: an unknown keyword (a programming error).
        """
        env = parse_os_release(text)
        fields = {
            "image_version": env.get("IMAGE_VERSION", ""),
            "build_id": env.get("BUILD_ID", ""),
            "image_id": env.get("IMAGE_ID", ""),
            "os_id": env.get("ID", ""),
            "version_id": env.get("VERSION_ID", ""),
            "variant_id": env.get("VARIANT_ID", ""),
        }
        return cls(**fields, **host)  # type: ignore[arg-type]  # keyword types checked by the class

    def value(self, letter: str) -> str | None:
        """The expansion of ``%letter``, ``None`` if unavailable; ``KeyError`` if unknown."""
        if letter == "l" and self.short_hostname is None and self.hostname is not None:
            return self.hostname.split(".", 1)[0]
        return {
            "a": self.architecture,
            "A": self.image_version,
            "b": self.boot_id,
            "B": self.build_id,
            "H": self.hostname,
            "l": self.short_hostname,
            "q": self.pretty_hostname,
            "m": self.machine_id,
            "M": self.image_id,
            "o": self.os_id,
            "v": self.kernel_release,
            "w": self.version_id,
            "W": self.variant_id,
            "T": self.tmp_dir,
            "V": self.var_tmp_dir,
        }[letter]


def expand(value: str, specifiers: Specifiers, *, origin: str, line: int, key: str) -> str:
    """``specifier_printf()``: replace ``%X`` and ``%%``.

    Raises:
        FormatError: an unknown specifier, one whose value the caller did not supply, or a stray
            ``%`` at the end (systemd keeps it; airlock refuses the ambiguity).
    """
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(value):
            raise fail(origin, line, "stray '%' at the end of the value (write '%%')", key=key)
        letter = value[i + 1]
        if letter == "%":
            out.append("%")
        else:
            try:
                expansion = specifiers.value(letter)
            except KeyError:
                raise fail(
                    origin, line, f"unknown specifier {display('%' + letter)}", key=key
                ) from None
            if expansion is None:
                raise fail(origin, line, f"specifier %{letter} has no value on this host", key=key)
            out.append(expansion)
        i += 2
    return "".join(out)


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release's ``KEY=value`` lines (shell-style quotes, ``#`` comments).

    Malformed lines are skipped, as systemd's ``parse_env_file()`` skips them.
    """
    env: dict[str, str] = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not eq or not key.replace("_", "").isalnum():
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            quote, value = value[0], value[1:-1]
            if quote == '"':
                value = (
                    value.replace('\\"', '"')
                    .replace("\\$", "$")
                    .replace("\\`", "`")
                    .replace("\\\\", "\\")
                )
        env[key] = value
    return env
