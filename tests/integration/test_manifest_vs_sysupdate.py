# SPDX-License-Identifier: MIT
"""Differential: airlock.formats.manifest against the real SHA256SUMS readers of 257 and 262.

Each manifest is served to each runtime (run the way ``airlock update`` runs it:
``tests.support.oracles``) as a ``file://`` url-file source (``--verify=no list``, no network,
nothing installed) and parsed by airlock.  Where sysupdate refuses, airlock refuses (at the same
line when it names one); where it accepts, airlock accepts and lists the same versions — except
for the documented extra refusals of ADR 0021 (duplicates, malformed BEST-BEFORE markers), which
both accept, and the names only one version refuses (``/`` in 257, ``%`` in 262: airlock refuses
both, ADR 0130).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from airlock.backends.apply.runtime import Runtime
from airlock.errors import ManifestError
from airlock.formats import dialect, manifest
from tests.support.oracles import WORK, sysupdate

pytestmark = pytest.mark.sysupdate

TRANSFER = f"""\
[Source]
Type=url-file
Path=file://{WORK}/src
MatchPattern=os_@v.raw

[Target]
Path=/run/targets
"""

H = "0123456789abcdef" * 4
E = manifest.EMPTY_SHA256


@dataclass(frozen=True, slots=True)
class Listed:
    returncode: int
    stdout: str
    stderr: str


def sysupdate_list(rt: Runtime, tmp_path: Path, raw: bytes) -> Listed:
    defs, src = tmp_path / "defs", tmp_path / "src"
    defs.mkdir()
    src.mkdir()
    (defs / "10-os.transfer").write_text(TRANSFER)
    (src / "SHA256SUMS").write_bytes(raw)
    done = sysupdate(
        rt, tmp_path, f"--definitions={WORK}/defs", "--verify=no", "--json=short", "list"
    )
    return Listed(
        returncode=done.returncode,
        stdout=done.stdout.decode(errors="replace"),
        stderr=done.stderr.decode(errors="replace"),
    )


def versions(m: manifest.Manifest) -> set[str]:
    found = (re.match(r"os_([A-Za-z0-9.,_+-]+?)\.raw", e.name) for e in m.entries)
    return {match.group(1) for match in found if match}


ACCEPTED = {
    "binary": f"{H} *os_1.raw\n{H} *os_2.raw\n",
    "text-mode-uppercase": f"{H.upper()}  os_1.raw\n",
    "unmatched-names": f"{H} *README with spaces\n{H} *ü.txt\n{H} *os_3.raw\n",
    "best-before": f"{E} *BEST-BEFORE-2099-01-01\n{H} *os_4.raw\n",
}

BOTH_REFUSE = {
    "truncated": (f"{H} *os_1.raw\n{H} *os_2.raw", 2),
    "blank-line": (f"{H} *os_1.raw\n\n{H} *os_2.raw\n", 2),
    "comment": (f"# {'x' * 70}\n{H} *os_1.raw\n", 1),
    "bad-digest": (f"{H[:-1]}g *os_1.raw\n", 1),
    "single-space": (f"{H} os_1.raw\n{H} *os_2.raw\n", 1),
    "tab-separator": (f"{H}\t*os_1.raw\n", 1),
    "escaped-name": (f"\\{H} *os_1.raw\n", 1),
    "empty-name": (f"{H} *\n{H} *os_1.raw\n", 1),
    "dot-dot": (f"{H} *..\n", 1),
    "escape-sequence": (f"{H} *os_1\x1b[2J.raw\n", 1),
    "crlf": (f"{H} *os_1.raw\r\n", 1),
    "nul": (f"{H} *os_1.raw\n{H} *os\0.raw\n", None),
    "long-name": (f"{H} *os_{'1' * 260}.raw\n", 1),
}

# name: (manifest, line, does this version refuse it?) — airlock refuses every one of them.
SOME_REFUSE: dict[str, tuple[str, int, Callable[[dialect.Dialect], bool]]] = {
    "subdirectory": (f"{H} *os_1.raw\n{H} *sub/os_2.raw\n", 2, lambda r: not r.manifest_subpaths),
    "percent": (f"{H} *os_1.raw\n{H} *os_%32.raw\n", 2, lambda r: "%" in r.manifest_refused_chars),
}

AIRLOCK_ONLY_REFUSES = {
    "duplicate": f"{H} *os_1.raw\n{'f' * 64} *os_1.raw\n",
    "bad-best-before-date": f"{E} *BEST-BEFORE-2099-13-01\n{H} *os_1.raw\n",
    "best-before-wrong-digest": f"{H} *BEST-BEFORE-2099-01-01\n{H} *os_1.raw\n",
    "two-best-before": f"{E} *BEST-BEFORE-2099-01-01\n{E} *BEST-BEFORE-2098-01-01\n",
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_both_accept_and_list_the_same_versions(
    systemd_runtime: Runtime, tmp_path: Path, name: str
) -> None:
    raw = ACCEPTED[name].encode()
    parsed = manifest.parse(raw)
    result = sysupdate_list(systemd_runtime, tmp_path, raw)
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)["all"]) == versions(parsed)


@pytest.mark.parametrize("name", sorted(BOTH_REFUSE))
def test_both_refuse_at_the_same_line(systemd_runtime: Runtime, tmp_path: Path, name: str) -> None:
    text, line = BOTH_REFUSE[name]
    raw = text.encode()
    result = sysupdate_list(systemd_runtime, tmp_path, raw)
    assert result.returncode != 0
    assert "refusing" in result.stderr
    theirs = re.search(r"manifest line (\d+)|at line (\d+)", result.stderr)
    with pytest.raises(ManifestError) as info:
        manifest.parse(raw)
    if theirs is not None:
        assert info.value.line == int(theirs.group(1) or theirs.group(2))
    assert info.value.line == line if line is not None else info.value.line is not None


def test_empty_manifest_parses_but_257_cannot_download_it(
    systemd_runtime: Runtime, tmp_path: Path
) -> None:
    # 257's parser accepts 0 bytes (design.md#sysupdate-manifest), but systemd-pull refuses any
    # download shorter than 6 bytes ("Premature connection termination."), so 257 never sees an
    # empty manifest; 262 downloads it and lists nothing (dialect.min_url_file_bytes).  airlock's
    # parser follows the parser: no entries, hence nothing to install (ADR 0021).
    assert manifest.parse(b"") == manifest.Manifest(entries=())
    result = sysupdate_list(systemd_runtime, tmp_path, b"")
    if dialect.for_version(systemd_runtime.version).min_url_file_bytes == 0:
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["all"] == []
        return
    assert result.returncode != 0
    assert "Premature connection termination" in result.stderr


@pytest.mark.parametrize("name", sorted(SOME_REFUSE))
def test_what_one_version_refuses_airlock_refuses(
    systemd_runtime: Runtime, tmp_path: Path, name: str
) -> None:
    text, line, refused_by = SOME_REFUSE[name]
    result = sysupdate_list(systemd_runtime, tmp_path, text.encode())
    rules = dialect.for_version(systemd_runtime.version)
    assert (result.returncode != 0) is refused_by(rules), result.stderr
    assert {refused_by(dialect.V257), refused_by(dialect.V262)} == {True, False}
    with pytest.raises(ManifestError) as info:
        manifest.parse(text.encode())
    assert info.value.line == line


def test_both_refuse_invalid_utf8(systemd_runtime: Runtime, tmp_path: Path) -> None:
    raw = f"{H} *os_1.raw\n{H} *os_".encode() + b"\xff.raw\n"
    result = sysupdate_list(systemd_runtime, tmp_path, raw)
    assert result.returncode != 0
    assert "not valid UTF-8" in result.stderr
    with pytest.raises(ManifestError, match="line 2: not valid UTF-8"):
        manifest.parse(raw)


@pytest.mark.parametrize("name", sorted(AIRLOCK_ONLY_REFUSES))
def test_airlock_refuses_what_257_accepts(
    systemd_runtime: Runtime, tmp_path: Path, name: str
) -> None:
    raw = AIRLOCK_ONLY_REFUSES[name].encode()
    result = sysupdate_list(systemd_runtime, tmp_path, raw)
    assert result.returncode == 0, result.stderr  # the gap ADR 0021 closes
    with pytest.raises(ManifestError):
        manifest.parse(raw)
