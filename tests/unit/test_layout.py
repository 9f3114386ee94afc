# SPDX-License-Identifier: MIT
"""tests for airlock/layout.py: the setup scripts, the Makefile and Python agree on every stamp."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from airlock import layout

ROOT = Path(__file__).resolve().parents[2]
ENV = ROOT / "src/airlock/layout.env"
# Literals that may appear only in layout.env: a second copy is how a stamp name drifted before.
_LITERALS = (
    ".airlock-runtime-",
    ".airlock-guest-",
    ".airlock-debs-",
    ".airlock-spectrum-host-",
    ".airlock-installed",
    "/var/cache/airlock",
)
_SCANNED = ("scripts", "src", "tests", "bench", "fuzz", "Makefile", ".ci")


def test_bash_and_python_read_the_same_values() -> None:
    names = sorted(layout.values())
    script = f'set -eu; . "{ENV}"; ' + " ".join(f'printf "%s\\n" "${n}";' for n in names)
    out = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True, timeout=30
    )
    assert dict(zip(names, out.stdout.splitlines(), strict=True)) == layout.values()


def test_make_reads_the_same_values() -> None:
    names = sorted(layout.values())
    rule = "show:\n\t@printf '%s\\n' " + " ".join(f"'$({n})'" for n in names) + "\n"
    out = subprocess.run(
        ["make", "-s", "-f", "-", "-f", "Makefile", "show"],
        input=f"include src/airlock/layout.env\n{rule}",
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert dict(zip(names, out.stdout.splitlines(), strict=True)) == layout.values()


def test_every_script_sources_the_layout() -> None:
    for script in ("make-runtime.sh", "make-guest.sh", "fetch-debs.sh", "make-spectrum-host.sh"):
        text = (ROOT / "scripts" / script).read_text()
        assert '. "$here/src/airlock/layout.env"' in text, script
    assert "include src/airlock/layout.env" in (ROOT / "Makefile").read_text()


# A layout variable as the scripts and the Makefile expand it: $X, ${X}, $(X).  Names built at
# run time (RUNTIME_${name}_DIR, read through ${!var}) have no '$' before them and are not matched.
_EXPANDED = re.compile(r"\$[{(]?((?:RUNTIME|GUEST|SPECTRUM_HOST|VENV|AIRLOCK_CACHE)[A-Z0-9_]*)")


def test_scripts_expand_only_declared_layout_variables() -> None:
    # A variable layout.env no longer declares (RUNTIME_DIR became RUNTIME_257_DIR) would expand
    # to nothing, or stop a `set -u` script only when it runs.
    declared = {*layout.values(), "AIRLOCK_CACHE", "VENV"}  # the environment, the Makefile's own
    texts = {p.name: p.read_text() for p in (ROOT / "scripts").glob("*.sh")}
    texts["Makefile"] = (ROOT / "Makefile").read_text()
    used = {(name, m) for name, text in texts.items() for m in _EXPANDED.findall(text)}
    assert {m for _, m in used} >= {"RUNTIMES", "RUNTIME_DEFAULT", "GUEST_DIR"}
    assert sorted(u for u in used if u[1] not in declared) == []
    assert _EXPANDED.findall('runtime="$cache/$RUNTIME_DIR"') == ["RUNTIME_DIR"]  # control


def test_no_second_copy_of_a_stamp_or_cache_path() -> None:
    listed = (
        subprocess.run(
            [
                "git",
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
                "--",
                *_SCANNED,
            ],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=30,
        )
        .stdout.decode()
        .split("\0")
    )
    offenders = []
    for name in filter(None, listed):
        path = ROOT / name
        if path in (ENV, Path(__file__)) or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        offenders += [f"{name}: {lit}" for lit in _LITERALS if lit in text]
    assert len(listed) > 100
    assert offenders == []


def test_layout_follows_the_cache_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRLOCK_CACHE", str(tmp_path))
    lay = layout.Layout.load()
    v = layout.values()
    for name in v["RUNTIMES"].split(","):
        build = lay.runtime(name)
        assert build.stamp == tmp_path / v[f"RUNTIME_{name}_DIR"] / v[f"RUNTIME_{name}_STAMP"]
        assert build.suite == v[f"RUNTIME_{name}_SUITE"]
        assert build.major == int(name)
    assert lay.runtime() == lay.runtime(v["RUNTIME_DEFAULT"])
    assert lay.guest == tmp_path / v["GUEST_DIR"]
    assert lay.spectrum_host == tmp_path / v["SPECTRUM_HOST_DIR"]
    monkeypatch.delenv("AIRLOCK_CACHE")
    assert layout.Layout.load().cache == Path(v["AIRLOCK_CACHE_DEFAULT"])


@pytest.mark.parametrize("line", ["X='a'", "x=1", "X=$HOME", "X=a b", "X"])
def test_a_line_that_is_not_key_value_is_refused(line: str) -> None:
    with pytest.raises(ValueError, match="line 1"):
        layout.parse(line)


def test_comments_and_blank_lines_are_skipped() -> None:
    assert layout.parse("# c\n\nA=b\n") == {"A": "b"}
    assert re.fullmatch(r"\.airlock-runtime-v\d+", layout.values()["RUNTIME_257_STAMP"])


def test_every_runtime_is_declared_completely_and_once() -> None:
    v = layout.values()
    names = v["RUNTIMES"].split(",")
    assert len(names) == len(set(names)) >= 2
    assert v["RUNTIME_DEFAULT"] in names
    declared = {k for k in v if k.startswith("RUNTIME_") and k != "RUNTIME_DEFAULT"}
    expected = {f"RUNTIME_{n}_{part}" for n in names for part in ("SUITE", "DIR", "STAMP")}
    assert declared == expected
    for n in names:  # a name is the systemd major version the root must hold
        assert n.isdigit()
        assert re.fullmatch(r"\.airlock-runtime-v\d+", v[f"RUNTIME_{n}_STAMP"])
    dirs = [v[f"RUNTIME_{n}_DIR"] for n in names]
    assert len(set(dirs)) == len(dirs)
    with pytest.raises(KeyError):
        layout.Layout.load().runtime("999")
