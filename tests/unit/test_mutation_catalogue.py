# SPDX-License-Identifier: MIT
"""The mutation catalogue still fits the source: every guard it removes is where it says.

Cheap enough for every run: a refactor that moves or rewrites a guard fails here, so the mutation
check (``make mutation``, docs/mutation.md) is updated with it instead of silently testing nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.mutation.catalogue import MUTATIONS, Mutation
from tests.mutation.run import MutationError, apply

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_mutation_applies_exactly_once(mutation: Mutation, tmp_path: Path) -> None:
    target = tmp_path / "airlock" / mutation.path
    target.parent.mkdir(parents=True)
    original = (ROOT / "src/airlock" / mutation.path).read_text()
    target.write_text(original)
    apply(mutation, tmp_path)
    mutated = target.read_text()
    assert mutated != original
    assert compile(mutated, mutation.path, "exec") is not None


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_mutation_names_existing_tests(mutation: Mutation) -> None:
    assert mutation.tests
    for node in mutation.tests:
        path, _, name = node.partition("::")
        function = re.sub(r"\[.*\]$", "", name)
        assert function, node
        assert f"def {function}(" in (ROOT / path).read_text(), node


def test_negative_control_a_moved_guard_is_reported(tmp_path: Path) -> None:
    mutation = MUTATIONS[0]
    target = tmp_path / "airlock" / mutation.path
    target.parent.mkdir(parents=True)
    target.write_text("# the guard moved elsewhere\n")
    with pytest.raises(MutationError, match="occurs 0 times"):
        apply(mutation, tmp_path)


def test_names_are_unique() -> None:
    names = [m.name for m in MUTATIONS]
    assert len(names) == len(set(names))
