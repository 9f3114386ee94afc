# SPDX-License-Identifier: MIT
"""The shipped JSON Schema (airlock/schemas/airlock.v1.schema.json): valid, true to the code,
strict enough to catch an undocumented field, and compatible with the first published v1.

Real output of every command is checked where the suite already runs it with --json (each
test helper calls ``schemas.check_output``); the host verbs on a real host in
tests/integration/host/test_json_output.py.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, ValidationError

from airlock import events
from airlock.cli.report import _EVENT_NAMES, SCHEMA_VERSION
from airlock.errors import ExitStatus
from tests.support import schemas

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "tests/data/schemas" / schemas.NAME


def _airlock(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "airlock", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    schemas.check_output(args, done.stdout)
    return done


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(schemas.shipped())


def test_the_version_is_the_one_the_program_prints() -> None:
    assert schemas.shipped()["$defs"]["v"] == {**schemas.shipped()["$defs"]["v"], "const": 1}
    assert SCHEMA_VERSION == 1


@pytest.mark.parametrize("cls", list(_EVENT_NAMES))
def test_every_event_field_is_documented_and_required(cls: type) -> None:
    definition = schemas.shipped()["$defs"][_EVENT_NAMES[cls]]
    fields = {f.name for f in dataclasses.fields(cls)} | {"v", "event"}
    assert set(definition["properties"]) == fields
    assert set(definition["required"]) == fields


def test_steps_and_exit_statuses_are_the_programs() -> None:
    defs = schemas.shipped()["$defs"]
    assert defs["step"]["enum"] == [str(s) for s in events.Step]
    assert defs["exit_status"]["enum"] == [int(s) for s in ExitStatus]


def test_an_undocumented_field_fails_the_tests_but_not_a_consumer() -> None:
    line = {"v": 1, "event": "step-started", "step": "fetch", "detail": "", "new_field": 1}
    with pytest.raises(ValidationError):
        schemas.check(line, "update")  # the suite: every printed field must be documented
    schemas.validator("update", loose=True).validate(line)  # a consumer: additions are fine


@pytest.mark.parametrize(
    ("line", "shape"),
    [
        ({"v": 1, "event": "result", "outcome": "updated"}, "update"),  # exit_status missing
        ({"v": 1, "event": "result", "outcome": "installed", "exit_status": 0}, "update"),
        ({"v": 2, "event": "result", "outcome": "updated", "exit_status": 0}, "update"),
        ({"v": 1, "event": "step-started", "step": "download", "detail": 3}, "agent"),
        ({"v": 1, "event": "error", "code": "Reject digest", "message": "", "exit_status": 21},
         "update"),
    ],
)  # fmt: skip
def test_a_wrong_shape_is_refused(line: dict[str, object], shape: str) -> None:
    with pytest.raises(ValidationError):
        schemas.check(line, shape)


# --- compatibility within v1 --------------------------------------------------------------------


def test_the_schema_is_compatible_with_the_first_published_v1() -> None:
    assert schemas.breaks(json.loads(BASELINE.read_text()), schemas.shipped()) == []


def _edit(path: list[str], change: Any) -> dict[str, Any]:
    new = copy.deepcopy(schemas.shipped())
    node = new
    for key in path[:-1]:
        node = node[key]
    change(node, path[-1])
    return new


@pytest.mark.parametrize(
    ("path", "change", "why"),
    [
        (["$defs", "status", "properties", "floor"], lambda n, k: n.pop(k), "removed"),
        (["$defs", "status", "properties", "floor", "type"],
         lambda n, k: n.__setitem__(k, "string"), "type"),
        (["$defs", "step", "enum"], lambda n, k: n[k].remove("verify"), "enum lost"),
        (["$defs", "update-result", "required"], lambda n, k: n[k].remove("exit_status"),
         "no longer requires"),
        (["$defs", "inspect", "oneOf"], lambda n, k: n[k].pop(), "alternative removed"),
        (["$defs", "key"], lambda n, k: n.pop(k), "removed"),
    ],
)  # fmt: skip
def test_a_removed_or_retyped_field_breaks_the_rule(path: list[str], change: Any, why: str) -> None:
    problems = schemas.breaks(schemas.shipped(), _edit(path, change))
    assert problems
    assert why in problems[0]


def test_an_added_field_or_enum_value_keeps_the_rule() -> None:
    def add(node: dict[str, Any], key: str) -> None:
        node[key]["properties"]["blessed"] = {"type": "boolean"}
        node[key]["required"].append("blessed")

    new = _edit(["$defs", "status"], add)
    new["$defs"]["step"]["enum"].append("bless")
    assert schemas.breaks(schemas.shipped(), new) == []


# --- real output that needs no privilege --------------------------------------------------------


def test_status_json_without_a_configured_host_still_has_the_shape(tmp_path: Path) -> None:
    cfg = tmp_path / "host.toml"
    cfg.write_text(f'[host]\ndefinitions_dir = "{tmp_path}/none"\n[state]\npath = "{tmp_path}/s"\n')
    done = _airlock("status", "--json", "--config", str(cfg))
    assert done.returncode == 0
    body = json.loads(done.stdout)
    assert body["next"]["action"] == "fix"
    assert body["problems"]


def test_usage_and_config_errors_are_error_events(tmp_path: Path) -> None:
    done = _airlock("update", "--json", "--timeout", "soon", str(tmp_path))
    assert (done.returncode, json.loads(done.stdout)["code"]) == (2, "usage.setting")
    done = _airlock("config", "show", "--json", "--config", str(tmp_path / "missing.toml"))
    assert (done.returncode, json.loads(done.stdout)["code"]) == (3, "config.host")


def test_the_cli_prints_the_schema_it_ships() -> None:
    done = _airlock("--json-schema")
    assert done.returncode == 0
    assert json.loads(done.stdout) == schemas.shipped()
