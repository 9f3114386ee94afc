# SPDX-License-Identifier: MIT
"""Every ``reject.*`` code is the verdict of at least one run of the whole ``airlock update``.

The codes are those of ``docs/error-codes.md`` (generated from the source; ``test_docs`` keeps it
current).  The pipeline cases are ``tests.support.refusals.pipeline_cases()``, which
``tests/integration/host/test_update_corpus.py`` runs.  A code may be left out only through
``refusals.UNREACHABLE``, with a reason; the reasons that can be checked are checked here.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

from airlock import errors
from tests.support.corpus import Case, all_cases
from tests.support.refusals import (
    COULD_NOT_CHECK,
    DEFAULT_OF,
    EXCLUDED,
    UNREACHABLE,
    pipeline_cases,
    pipeline_verdict,
)

ROOT = Path(__file__).resolve().parents[2]
_ROW = re.compile(r"^\| `(reject\.[a-z-]+)` \| 21 \| (.*) \|$")


def _documented() -> dict[str, str]:
    """``reject.*`` code → its "raised in" column of docs/error-codes.md."""
    text = (ROOT / "docs/error-codes.md").read_text()
    return {m.group(1): m.group(2) for m in map(_ROW.match, text.splitlines()) if m}


def uncovered(cases: Iterable[Case]) -> set[str]:
    """Documented reject codes that no case in ``cases`` ends with (less the unreachable)."""
    verdicts = {pipeline_verdict(c)[0] for c in cases if c.expect}
    return set(_documented()) - verdicts - set(UNREACHABLE)


def test_every_reject_code_is_refused_through_airlock_update() -> None:
    assert uncovered(pipeline_cases()) == set()


def test_negative_control_a_code_without_a_pipeline_case_is_reported() -> None:
    fewer = [c for c in pipeline_cases() if c.expect != "reject.ambiguous"]
    assert uncovered(fewer) == {"reject.ambiguous"}


def test_pipeline_cases_name_only_documented_codes() -> None:
    assert {c.expect for c in pipeline_cases()} <= set(_documented())
    assert set(UNREACHABLE) <= set(_documented())
    names = {c.name for c in all_cases()}
    assert set(EXCLUDED) <= names, "an exclusion names a case that no longer exists"
    assert set(COULD_NOT_CHECK) <= names


def _calls_without_code(class_name: str) -> list[str]:
    found = []
    for path in sorted((ROOT / "src/airlock").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == class_name
                and not any(k.arg == "code" for k in node.keywords)
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_default_only_codes_are_never_raised() -> None:
    documented = _documented()
    for code, class_name in DEFAULT_OF.items():
        assert getattr(errors, class_name).default_code == code
        assert documented[code] == "`errors.py`", f"{code} is raised somewhere now"
        assert _calls_without_code(class_name) == [], f"{class_name} raised without a code"
        assert code in UNREACHABLE


def test_negative_control_the_default_code_scan_finds_bare_raises() -> None:
    # SignatureError is raised without a code in the OpenPGP backends (its default,
    # reject.signature, is a real verdict): the scan must see those calls.
    assert _calls_without_code("SignatureError") != []
