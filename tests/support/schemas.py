# SPDX-License-Identifier: MIT
"""Check airlock's --json output against the JSON Schema it ships (``airlock/schemas/``).

The shipped schema lets consumers' validators accept fields added later (the compatibility rule);
the tests are stricter: every object that lists its properties gets ``additionalProperties:
false``, so a field the program prints but the schema does not document fails here, and the
schema cannot fall behind the output.  ``date-time`` strings are checked as ISO 8601 with a zone,
``date`` strings as ISO 8601 dates.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from datetime import date, datetime
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match

NAME = "airlock.v1.schema.json"


def shipped() -> dict[str, Any]:
    """The schema as the package installs it."""
    text = resources.files("airlock").joinpath("schemas", NAME).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def strict(node: Any) -> Any:
    """``node`` with ``additionalProperties: false`` wherever properties are listed."""
    if isinstance(node, dict):
        out = {k: strict(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [strict(v) for v in node]
    return copy.deepcopy(node)


_formats = FormatChecker()


@_formats.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


@_formats.checks("date", raises=ValueError)
def _date(value: object) -> bool:
    return not isinstance(value, str) or bool(date.fromisoformat(value))


@cache
def validator(shape: str, *, loose: bool = False) -> Draft202012Validator:
    """A validator for one output (a ``$defs`` name: ``update``, ``status``, ``inspect``, …)."""
    base = shipped() if loose else strict(shipped())
    base.pop("anyOf")
    return Draft202012Validator({**base, "$ref": f"#/$defs/{shape}"}, format_checker=_formats)


def check(obj: object, shape: str) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``obj`` is a valid ``shape`` (strictly)."""
    validator(shape).validate(obj)


# The output of each verb with --json (an error event may replace it, or end it).
SHAPES = {
    "update": "update", "check": "update", "agent": "agent", "status": "status",
    "config": "config", "inspect": "inspect", "manifest": "manifest-check",
    "pattern": "pattern-match", "publish": "published", "render": "rendered", "keygen": "key",
    "demo": "demo", "state": "state",
}  # fmt: skip


@cache
def _output_validator(shape: str) -> Draft202012Validator:
    base = strict(shipped())
    base.pop("anyOf")
    refs = [{"$ref": f"#/$defs/{shape}"}, {"$ref": "#/$defs/error"}]
    return Draft202012Validator({**base, "anyOf": refs}, format_checker=_formats)


def check_output(args: Sequence[str], stdout: str) -> list[dict[str, Any]]:
    """Check what ``airlock ARGS`` printed, when ARGS asked for JSON; return the objects.

    Test helpers that run the CLI call this, so every --json run in the suite is checked.
    """
    if "--json" not in args:
        return []
    verb = next(a for a in args if not a.startswith("-"))
    objects = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    for obj in objects:
        if (error := best_match(_output_validator(SHAPES[verb]).iter_errors(obj))) is not None:
            where = "/".join(map(str, error.absolute_path)) or "the object"
            raise AssertionError(f"airlock {verb} --json: {where}: {error.message}\n{obj}")
    return objects


def check_lines(stdout: str, shape: str) -> list[dict[str, Any]]:
    """Parse and check every line of ``stdout``; return the objects."""
    objects = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert objects, "no JSON output"
    for obj in objects:
        check(obj, shape)
    return objects


# --- the compatibility rule: within one "v", fields are only added ------------------------------


def breaks(old: Any, new: Any, where: str = "#") -> list[str]:
    """Why ``new`` breaks consumers of ``old`` (empty: compatible).

    A property of ``old`` must still exist in ``new`` with the same type, const and reference; a
    required one must stay required; an enumeration may gain values but not lose one; every
    alternative of a ``oneOf``/``anyOf`` must still be offered.  Additions are always allowed.
    """
    if not isinstance(old, dict):
        return [] if old == new else [f"{where}: {old!r} became {new!r}"]
    if not isinstance(new, dict):
        return [f"{where}: is no longer a schema"]
    out: list[str] = []
    for key in ("type", "const", "$ref", "format", "pattern"):
        if key in old and _norm(old[key]) != _norm(new.get(key)):
            out.append(f"{where}: {key} {old[key]!r} became {new.get(key)!r}")
    if "enum" in old and not set(map(json.dumps, old["enum"])) <= set(
        map(json.dumps, new.get("enum", []))
    ):
        out.append(f"{where}: enum lost a value")
    for name, sub in old.get("properties", {}).items():
        if name not in new.get("properties", {}):
            out.append(f"{where}/properties/{name}: removed")
        else:
            out += breaks(sub, new["properties"][name], f"{where}/properties/{name}")
    if missing := set(old.get("required", ())) - set(new.get("required", ())):
        out.append(f"{where}: no longer requires {sorted(missing)}")
    for key in ("items", "additionalProperties"):
        if isinstance(old.get(key), dict):
            out += breaks(old[key], new.get(key), f"{where}/{key}")
    for key in ("oneOf", "anyOf"):
        for index, alternative in enumerate(old.get(key, ())):
            if alternative not in new.get(key, ()) and index < len(new.get(key, ())):
                out += breaks(alternative, new[key][index], f"{where}/{key}/{index}")
            elif alternative not in new.get(key, ()):
                out.append(f"{where}/{key}/{index}: alternative removed")
    for name, sub in old.get("$defs", {}).items():
        if name not in new.get("$defs", {}):
            out.append(f"#/$defs/{name}: removed")
        else:
            out += breaks(sub, new["$defs"][name], f"#/$defs/{name}")
    return out


def _norm(value: Any) -> Any:
    return sorted(value) if isinstance(value, list) else value
