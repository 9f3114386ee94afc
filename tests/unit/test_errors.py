# SPDX-License-Identifier: MIT
"""errors.py: every code raised in the source has the prefix of its class's exit status.

A code's prefix is what docs/error-codes.md and scripts read as its exit status
(``errors.CODE_PREFIXES``); the class decides the status the process really exits with.  This
walks the source for every ``SomeError(..., code=...)`` and every ``default_code`` and checks that
the two agree.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock import errors
from airlock.backends.fetcher.sandbox import SandboxConfig, SandboxFetcher
from airlock.errors import CODE_PREFIXES, AirlockError, ConfigError, ExitStatus

SRC = Path(__file__).resolve().parents[2] / "src" / "airlock"


def _module(path: Path) -> str:
    return "airlock." + ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(
        ".__init__"
    )


def _error_classes(tree: ast.Module, module: str) -> dict[str, type[AirlockError]]:
    """Names in ``module`` that are AirlockError subclasses (imported or defined there)."""
    mod = importlib.import_module(module)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {
        a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names
    }
    out = {}
    for name in names:
        obj = getattr(mod, name, None)
        if isinstance(obj, type) and issubclass(obj, AirlockError):
            out[name] = obj
    return out


def _prefix(node: ast.expr, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.split(".")[0]
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and "." in str(first.value):
            return str(first.value).split(".")[0]
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id].split(".")[0]
    return None


def raised_codes(path: Path, tree: ast.Module) -> Iterator[tuple[str, int, str, ExitStatus]]:
    """``(where, line, prefix, exit status of the class)`` for each code given to a class."""
    classes = _error_classes(tree, _module(path))
    constants = {
        t.id: n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
        for t in n.targets
        if isinstance(t, ast.Name) and isinstance(n.value.value, str)
    }
    rel = path.relative_to(SRC).as_posix()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            cls = classes.get(node.func.id)
            for kw in node.keywords:
                if cls is not None and kw.arg == "code":
                    prefix = _prefix(kw.value, constants)
                    if prefix is not None:
                        yield rel, node.lineno, prefix, cls.exit_status
        if isinstance(node, ast.ClassDef):
            cls = classes.get(node.name)
            for stmt in node.body:
                if (
                    cls is not None
                    and isinstance(stmt, ast.Assign)
                    and any(
                        isinstance(t, ast.Name) and t.id == "default_code" for t in stmt.targets
                    )
                ):
                    prefix = _prefix(stmt.value, constants)
                    if prefix is not None:
                        yield rel, stmt.lineno, prefix, cls.exit_status


def _all_codes() -> list[tuple[str, int, str, ExitStatus]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        out += list(raised_codes(path, ast.parse(path.read_text(), filename=str(path))))
    return out


def test_every_code_prefix_matches_the_exit_status_of_its_class() -> None:
    found = _all_codes()
    assert len(found) > 150  # the walk really sees the source
    wrong = [
        f"{where}:{line}: {prefix}.* raised as exit {int(status)}"
        for where, line, prefix, status in found
        if CODE_PREFIXES.get(prefix) != status
    ]
    assert wrong == []


def test_negative_control_a_mismatched_code_is_found(tmp_path: Path) -> None:
    # What sandbox.py did before: a config.* code on a HostError (exit 5, documented as 3).
    bad = SRC / "backends" / "fetcher" / "sandbox.py"
    tree = ast.parse(
        "from airlock.errors import HostError\nHostError('x', code='config.sandbox')\n"
    )
    found = list(raised_codes(bad, tree))
    assert found == [("backends/fetcher/sandbox.py", 2, "config", ExitStatus.HOST)]
    assert CODE_PREFIXES["config"] != found[0][3]


def test_a_bad_sandbox_root_is_a_config_error_exiting_3() -> None:
    with pytest.raises(ConfigError) as info:
        SandboxFetcher(SandboxConfig(root="relative"))
    assert info.value.code == "config.sandbox"
    assert info.value.exit_status == ExitStatus.CONFIG
    assert int(info.value.exit_status) == 3


def test_every_class_default_code_and_prefix_table_agree() -> None:
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, AirlockError) and cls is not AirlockError:
            assert CODE_PREFIXES[cls.default_code.split(".")[0]] == cls.exit_status, cls


def test_subject_is_kept_escaped() -> None:
    exc = errors.InspectionError("Refusing it", code="reject.name", subject=b"a\x1b[2J\xff")
    assert exc.subject == "'a\\x1b[2J\\\\xff'"
    assert errors.HostError("x").subject is None
