# SPDX-License-Identifier: MIT
"""The lab flow end to end: ``airlock demo`` as a user runs it, and every attack on one world.

Real everything: EROFS + dm-verity images, a GPT disk image with Spectrum's A/B layout, btrfs on a
loop file, the agent in bubblewrap inside a network namespace, ``airlock serve``, the host's
judgement and systemd-sysupdate (257, and the main flow again with 262) writing the slots.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airlock.lab.disk import EMPTY_ROOT_UUID, EMPTY_VERITY_UUID, format_uuid
from tests.support import schemas
from tests.support.oracles import RUNTIMES, require_runtime

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.btrfs,
    pytest.mark.sandbox,
    pytest.mark.sysupdate,
    pytest.mark.slow,
    pytest.mark.timeout(900),
]


def _slots(state: dict[str, Any]) -> list[tuple[str, str, str]]:
    # A parsed JSON report: its shape is what the test asserts, not a type mypy can know.
    return [(s["label"], s["partuuid"], s["content"]) for s in state["slots"]]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_demo_updates_a_to_b_to_a_and_refuses_a_tampered_image(
    tmp_path: Path, runtime: str
) -> None:
    # Once per systemd-sysupdate runtime (make demo DEMO_ARGS="--runtime 262").
    rt = require_runtime(runtime)
    work = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "airlock",
            "demo",
            "--workdir",
            str(work),
            "--json",
            "--attack",
            "tampered",
            "--runtime",
            runtime,
        ],
        capture_output=True,
        text=True,
        timeout=850,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    where = "the host's own" if rt.name == "host" else f"runtime {runtime},"
    assert f"systemd-sysupdate {rt.version} applies ({where}" in result.stderr
    (report,) = schemas.check_output(("demo", "--json"), result.stdout)
    h = report["roothashes"]
    states = {s["when"]: s for s in report["states"]}
    assert _slots(states["initial"]) == [
        ("Spectrum_1.0.verity", format_uuid(h["1.0"][32:]), "verity 1.0"),
        ("Spectrum_1.0", format_uuid(h["1.0"][:32]), "root 1.0"),
        ("_empty", EMPTY_VERITY_UUID, "empty"),
        ("_empty", EMPTY_ROOT_UUID, "empty"),
    ]
    # 1.0 -> 2.0: slot B written, PARTUUIDs from the root hash halves carried by @u.
    assert _slots(states["after update 1.0 → 2.0"])[2:] == [
        ("Spectrum_2.0.verity", format_uuid(h["2.0"][32:]), "verity 2.0"),
        ("Spectrum_2.0", format_uuid(h["2.0"][:32]), "root 2.0"),
    ]
    assert states["after update 1.0 → 2.0"]["boot"] == [
        {"name": "Spectrum_1.0.efi", "content": "kernel 1.0"},
        {"name": "Spectrum_2.0.efi", "content": "kernel 2.0"},
    ]
    # Booted 2.0 -> 3.0 goes into slot A; 2.0 (booted, protected) stays; UKIs: 2 instances.
    final = states["after update 2.0 → 3.0"]
    assert _slots(final) == [
        ("Spectrum_3.0.verity", format_uuid(h["3.0"][32:]), "verity 3.0"),
        ("Spectrum_3.0", format_uuid(h["3.0"][:32]), "root 3.0"),
        ("Spectrum_2.0.verity", format_uuid(h["2.0"][32:]), "verity 2.0"),
        ("Spectrum_2.0", format_uuid(h["2.0"][:32]), "root 2.0"),
    ]
    assert [b["name"] for b in final["boot"]] == ["Spectrum_2.0.efi", "Spectrum_3.0.efi"]
    runs = {r["label"]: r for r in report["runs"]}
    assert runs["update 1.0 → 2.0"]["outcome"] == "updated"
    assert runs["update 1.0 → 2.0"]["payload_bytes"] > 2_000_000
    noop = runs["no-op rerun"]
    assert noop["outcome"] == "up-to-date"
    assert noop["payload_bytes"] == 0
    assert "apply" not in noop["steps"]
    # The attack's verdict as the CLI gave it (the run's own exit status and JSON code), not
    # the demo's summary; the disk evidence is checked byte for byte in the test below.
    attack = runs["attack: tampered"]
    assert (attack["exit_status"], attack["code"]) == (21, "reject.digest")
    assert "apply" not in attack["steps"]
    assert report["attack"]["name"] == "tampered"
    assert not work.exists(), "the demo removes its work directory"


ATTACK_CODES = {
    "symlink": (21, "reject.type"),
    "tampered": (21, "reject.digest"),
    "rollback": (21, "reject.replay"),  # the older release was also signed earlier
    "expired": (21, "reject.expired"),
    "never-exits": (20, "fetch.timeout"),
}


def test_every_attack_is_refused_and_leaves_the_disk_unchanged(tmp_path: Path) -> None:
    # The Lab enters a private mount namespace; do it in a child so pytest's own stays intact.
    # The evidence is the test's own: SHA-256 of the whole disk image, of every file in $BOOT
    # and of the state file, taken here before and after each attack (not the lab's summary).
    script = f"""
import hashlib, json, sys
from pathlib import Path
from airlock.lab.world import Lab, VERSIONS

def evidence(lab):
    h = hashlib.sha256()
    with open(lab.disk, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    boot = {{str(p.relative_to(lab.esp)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(lab.esp.rglob("*")) if p.is_file()}}
    state = lab.w / "state" / "state.json"
    return {{"disk": h.hexdigest(), "boot": boot,
            "state": hashlib.sha256(state.read_bytes()).hexdigest() if state.exists() else ""}}

out = {{}}
with Lab(Path({str(tmp_path / "lab")!r})) as lab:
    for v in VERSIONS[:2]:
        lab.publish(v)
    first = lab.update("1->2")
    out["first"] = [first.exit_status, first.outcome]
    lab.boot(VERSIONS[1]); lab.publish(VERSIONS[2])
    for name in {sorted(ATTACK_CODES)!r}:
        before = evidence(lab)
        run = lab.attack(name)
        after = evidence(lab)
        out[name] = [run.exit_status, run.code, before, after]
    last_before = evidence(lab)
    last = lab.update("2->3")
    out["last"] = [last.exit_status, last.outcome, last_before, evidence(lab)]
print(json.dumps(out))
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=850,
        check=False,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["first"] == [0, "updated"]
    for name, expected in ATTACK_CODES.items():
        status, code, before, after = out[name]
        assert (status, code) == expected, name
        assert before["state"], "the state file exists after the first update"
        assert after == before, name
    # Negative control of the evidence: the genuine update after the attacks goes through and
    # changes the disk image, $BOOT and the state file, so the comparison above could fail.
    status, outcome, before, after = out["last"]
    assert (status, outcome) == (0, "updated")
    assert after["disk"] != before["disk"]
    assert after["boot"] != before["boot"]
    assert after["state"] != before["state"]


@pytest.mark.vm
def test_demo_with_the_agent_in_a_qemu_vm(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "airlock",
            "demo",
            "--workdir",
            str(tmp_path / "demo"),
            "--json",
            "--fetcher",
            "qemu",
        ],
        capture_output=True,
        text=True,
        timeout=850,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    h = report["roothashes"]
    final = report["states"][-1]
    assert _slots(final) == [
        ("Spectrum_3.0.verity", format_uuid(h["3.0"][32:]), "verity 3.0"),
        ("Spectrum_3.0", format_uuid(h["3.0"][:32]), "root 3.0"),
        ("Spectrum_2.0.verity", format_uuid(h["2.0"][32:]), "verity 2.0"),
        ("Spectrum_2.0", format_uuid(h["2.0"][:32]), "root 2.0"),
    ]
    runs = {r["label"]: r for r in report["runs"]}
    assert runs["no-op rerun"]["payload_bytes"] == 0
    assert runs["update 1.0 → 2.0"]["payload_bytes"] > 2_000_000
