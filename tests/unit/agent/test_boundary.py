# SPDX-License-Identifier: MIT
"""The agent runs inside the VM: it imports only the parts of airlock meant for it."""

from __future__ import annotations

import ast
from pathlib import Path

AGENT = Path(__file__).resolve().parents[3] / "src" / "airlock" / "agent"
ALLOWED = (
    "airlock.agent",
    "airlock.formats",
    "airlock.text",
    "airlock.proc",
    "airlock.events",
    "airlock.limits",
    "airlock.settings",
    "airlock.errors",
    "airlock.backends.openpgp",
)


def _airlock_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n.startswith("airlock")}


def test_agent_imports_only_what_the_vm_may_run() -> None:
    modules = sorted(AGENT.glob("*.py"))
    assert len(modules) >= 8
    for path in modules:
        for name in _airlock_imports(path):
            if name == "airlock.__version__":
                continue
            assert name.startswith(ALLOWED), f"{path.name} imports {name}"


def test_negative_control_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from airlock.trusted import verify\nimport airlock.pipeline.update\n")
    found = _airlock_imports(bad)
    assert {"airlock.trusted.verify", "airlock.pipeline.update"} <= found
    assert not any(n.startswith(ALLOWED) for n in found)
