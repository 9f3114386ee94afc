# SPDX-License-Identifier: MIT
"""Boundaries that imports alone cannot express, checked over the source tree (CONTRIBUTING.md,
"Layout")."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "airlock"


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(), filename=str(p))) for p in sorted(SRC.rglob("*.py"))]


def _imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _rel(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def test_only_proc_imports_subprocess() -> None:
    offenders = sorted(_rel(p) for p, t in _modules() if "subprocess" in _imports(t))
    assert offenders == ["proc/__init__.py", "proc/child.py", "proc/teardown.py"]


def test_only_the_guard_and_the_namespace_helpers_fork_or_exec() -> None:
    """Everything else goes through proc, so every child is under a guard (ADR 0005)."""
    starters = {"fork", "forkpty", "posix_spawn", "posix_spawnp"} | {
        f"{p}{s}"
        for p in ("exec", "spawn")
        for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")
    }
    found = set()
    for path, tree in _modules():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
                and node.attr in starters
            ):
                found.add(_rel(path))
    # enter.py and the agent's nsexec.py exec sysupdate in the namespace proc started them in
    assert sorted(found) == ["agent/nsexec.py", "backends/apply/enter.py", "proc/guard.py"]


def test_rich_only_in_cli_report_and_http_client_only_outside_the_host_path() -> None:
    for path, tree in _modules():
        rel = _rel(path)
        imported = {name.split(".")[0] for name in _imports(tree)}
        if "rich" in imported:
            assert rel.startswith(("cli/", "lab/")), rel
        if imported & {"httpx", "urllib3", "requests"}:
            assert rel.startswith(("agent/", "release/")), rel


def test_verified_release_is_built_only_by_the_gate() -> None:
    for path, tree in _modules():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name | ast.Attribute)
                and (getattr(node.func, "id", None) or getattr(node.func, "attr", None))
                == "VerifiedRelease"
            ):
                assert _rel(path) == "trusted/verify.py", _rel(path)


# Modules that write JSON that is not airlock's output, and what it is.
OTHER_JSON = {
    "state.py": "the state file",
    "config.py": "TOML values (JSON's strings, numbers and arrays are TOML)",
    "backends/apply/runtime.py": "the spec handed to enter.py",
    "agent/sysupdate.py": "the spec handed to nsexec.py",
    "lab/spectrum_host.py": "the boot spec handed to lab/spectrum_boot.py",
    "proc/teardown.py": "the steps handed to a teardown guard",
    "release/serve.py": "the lab server's byte log",
}


def _envelope_offences(rel: str, tree: ast.Module) -> list[str]:
    if rel == "cli/jsonout.py":
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if {"v", "event"} <= keys:
                found.append(f"{rel}:{node.lineno}: an envelope built by hand")
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "dumps"
            and isinstance(node.value, ast.Name)
            and node.value.id == "json"
            and rel not in OTHER_JSON
        ):
            found.append(f"{rel}:{node.lineno}: json.dumps")
    return found


def test_one_owner_builds_every_json_envelope() -> None:
    # Every {"v": 1, ...} object airlock prints is built by cli/jsonout.envelope() (which
    # cli/report re-exports).
    assert [o for path, tree in _modules() for o in _envelope_offences(_rel(path), tree)] == []


def test_negative_control_a_hand_built_envelope_is_found() -> None:
    tree = ast.parse('import json\nprint(json.dumps({"v": 1, "event": "x"}))\n')
    assert _envelope_offences("cli/host.py", tree) == [
        "cli/host.py:2: json.dumps",
        "cli/host.py:2: an envelope built by hand",
    ]


def test_no_shell_true_anywhere() -> None:
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "shell":
                pytest.fail(f"shell= keyword in {_rel(path)}")


def test_import_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe is not None, "import-linter is installed by make test"
    result = subprocess.run(
        [exe, "--config", str(SRC.parents[1] / "pyproject.toml")],
        capture_output=True,
        text=True,
        cwd=SRC.parents[1],
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(SRC.parent)},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout and "4 kept" in result.stdout
