# SPDX-License-Identifier: MIT
"""Proof by booting: QEMU boots the disk airlock updated, and refuses what it must.

One lab world (boot counting on, 2 tries), eight boot attempts in all, each through OVMF,
systemd-boot, a UKI and its initramfs (roothash= → PARTUUIDs → dm-verity → EROFS):

1. before any update the disk boots 1.0 from slot A;
2. after ``airlock update`` 1.0 → 2.0 it boots 2.0 from slot B, dm-verity verified, and the booted
   system blesses its entry (the counter leaves the file name);
3. after 2.0 → 3.0 it boots 3.0 from slot A again — but first, on copies of that disk, the two
   negative controls: one byte of 3.0's root partition flipped stops the boot in dm-verity, and
   without 3.0's UKI systemd-boot boots 2.0;
4. a release whose root cannot be mounted (validly signed, so airlock installs it) is tried twice,
   then systemd-boot falls back to 3.0 by itself.

The evidence is the guest's own console: what the root's init read from its os-release, the root
hash in the kernel's dm-verity table, the kernel's verity status, the partition behind it.  The
lab runs in a child process (it enters a private mount namespace).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.btrfs,
    pytest.mark.sandbox,
    pytest.mark.sysupdate,
    pytest.mark.vm,
    pytest.mark.boot,
    pytest.mark.slow,
    pytest.mark.timeout(2400),
]

SCRIPT = """
import json, sys
from pathlib import Path
from airlock.lab import booting
from airlock.lab.world import Lab, VERSIONS

out = {"boots": {}, "status": {}}
def record(label, boot, **extra):
    out["boots"][label] = {**boot.as_json(), **extra}
def status(label):
    s = lab.status()
    out["status"][label] = {k: s.get(k) for k in
                            ("booted", "blessed", "pending", "failed", "floor")}

with Lab(Path(sys.argv[1]), boot_tries=2) as lab:
    out["roothash"] = {v: img.roothash for v, img in lab.images.items()}
    record("1.0", lab.reboot("before any update"))
    lab.publish(VERSIONS[0]); lab.publish(VERSIONS[1])
    out["update 2.0"] = lab.update("1.0 -> 2.0").outcome
    status("2.0 installed")
    out["boot before 2.0"] = [name for name, _ in lab.state().boot]
    record("2.0", lab.reboot("after 1.0 -> 2.0"))
    out["boot after 2.0"] = [name for name, _ in lab.state().boot]
    lab.publish(VERSIONS[2])
    out["update 3.0"] = lab.update("2.0 -> 3.0").outcome
    status("3.0 installed")
    what, flipped = lab.boot_copy("3.0, one root byte flipped", booting.flip_root_byte("3.0"))
    record("flipped", flipped, what=what)
    what, no_uki = lab.boot_copy("3.0 without its UKI", booting.remove_uki("3.0"))
    record("no uki", no_uki, what=what)
    record("3.0", lab.reboot("after 2.0 -> 3.0"))
    out["boot after 3.0"] = [name for name, _ in lab.state().boot]
    bad = lab.add_release("4.0", broken=True)
    out["roothash"]["4.0"] = bad.roothash
    lab.publish("4.0")
    out["update 4.0"] = lab.update("3.0 -> 4.0 (cannot boot)").outcome
    status("4.0 installed")
    out["boot before 4.0"] = [name for name, _ in lab.state().boot]
    record("fallback", lab.reboot("4.0, tried then abandoned", attempts=3))
    out["boot after fallback"] = [name for name, _ in lab.state().boot]
    out["os-release after fallback"] = (lab.etc / "os-release").read_text()
    status("after the fallback")
    out["rerun after fallback"] = lab.update("after the fallback").outcome
    status("recorded after the fallback")
    out["status text"] = lab.status_text()
print(json.dumps(out))
"""


def _good(boot: dict[str, object], version: str, roothash: str, device: str) -> dict[str, object]:
    assert boot["powered_off"] and not boot["timed_out"], boot
    final = boot["attempts"][-1]  # type: ignore[index]
    assert final["ok"], final
    assert final["version"] == version, final
    assert final["roothash"] == roothash, final
    assert final["verity"] == "V", final
    assert final["data_device"] == device, final
    assert final["failure"] is None, final
    return final  # type: ignore[no-any-return]


def test_the_updated_disk_boots_and_the_controls_fail_as_they_must(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "lab")],
        capture_output=True,
        text=True,
        timeout=2300,
        check=False,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads(result.stdout.splitlines()[-1])
    h = out["roothash"]
    boots = out["boots"]
    for label, boot in boots.items():  # the real figures, in the test log
        attempts = ", ".join(f"{a['seconds']} s" for a in boot["attempts"])
        print(f"boot {label}: {boot['seconds']} s in all; attempts {attempts}")
    print(out["status text"])

    # 1. Before the update: 1.0 from slot A (vda3 behind the ESP), no boot counter on its entry.
    first = _good(boots["1.0"], "1.0", h["1.0"], "vda3")
    assert first["blessed"] is None
    # 2. 1.0 -> 2.0: sysupdate wrote the UKI with 2 tries; 2.0 boots from slot B and blesses it.
    assert out["update 2.0"] == "updated"
    assert out["boot before 2.0"] == ["Spectrum_1.0.efi", "Spectrum_2.0+2-0.efi"]
    second = _good(boots["2.0"], "2.0", h["2.0"], "vda5")
    assert second["blessed"] == "/EFI/Linux/Spectrum_2.0+1-1.efi -> /EFI/Linux/Spectrum_2.0.efi"
    assert out["boot after 2.0"] == ["Spectrum_1.0.efi", "Spectrum_2.0.efi"]
    assert len(boots["2.0"]["attempts"]) == 1
    # 3. Negative control: one flipped byte of 3.0's root -> dm-verity stops the boot, visibly.
    assert out["update 3.0"] == "updated"
    flipped = boots["flipped"]
    assert "partition 3 (Spectrum_3.0)" in flipped["what"]
    attempt = flipped["attempts"][-1]
    assert not attempt["ok"] and attempt["version"] is None
    assert attempt["failure"] == "cannot mount the root file system"
    assert any("device-mapper: verity" in line and "data block 0 is corrupted" in line
               for line in attempt["lines"]), attempt["lines"]  # fmt: skip
    assert not any(line.startswith("airlock-root:") for line in attempt["lines"])
    # Negative control: without 3.0's UKI, systemd-boot boots the old version.
    assert "Spectrum_3.0+2-0.efi" in boots["no uki"]["what"]
    _good(boots["no uki"], "2.0", h["2.0"], "vda5")
    # ... and the very disk both controls were copied from boots 3.0, from slot A again.
    third = _good(boots["3.0"], "3.0", h["3.0"], "vda3")
    assert third["blessed"] == "/EFI/Linux/Spectrum_3.0+1-1.efi -> /EFI/Linux/Spectrum_3.0.efi"
    assert out["boot after 3.0"] == ["Spectrum_2.0.efi", "Spectrum_3.0.efi"]
    # 4. A release that cannot boot: tried twice, then systemd-boot falls back to 3.0 by itself.
    assert out["update 4.0"] == "updated"
    assert out["boot before 4.0"] == ["Spectrum_3.0.efi", "Spectrum_4.0+2-0.efi"]
    fallback = boots["fallback"]
    tried = fallback["attempts"][:-1]
    assert len(tried) == 2, fallback["attempts"]
    for attempt in tried:
        assert attempt["failure"] == "cannot mount the root file system", attempt
        assert any(h["4.0"] in line for line in attempt["lines"]), attempt["lines"]
    last = _good(fallback, "3.0", h["3.0"], "vda3")
    assert last["blessed"] is None  # 3.0 was blessed at its first boot
    assert out["boot after fallback"] == ["Spectrum_3.0.efi", "Spectrum_4.0+0-2.efi"]
    assert "IMAGE_VERSION=3.0" in out["os-release after fallback"]

    # 5. What airlock's state knows about it (``airlock status --json``).  The floor rises only
    # once a version has booted and been blessed: while 2.0 waits for its first boot the floor is
    # still 1.0; 2.0's good boot (seen by the next run) raises it to 2.0; 4.0 never raised it.
    st = out["status"]
    assert st["2.0 installed"] == {"booted": "1.0", "blessed": True, "pending": ["2.0"],
                                   "failed": [], "floor": "1.0"}  # fmt: skip
    assert st["3.0 installed"]["floor"] == "2.0"  # the run that installed 3.0 saw 2.0 blessed
    assert st["3.0 installed"]["booted"] == "2.0"
    assert st["3.0 installed"]["pending"] == ["3.0"]
    assert st["4.0 installed"]["floor"] == "3.0"
    assert st["4.0 installed"]["pending"] == ["4.0"]
    # After the fallback the ESP says it (4.0 has no try left, 3.0 runs); the next run records it.
    assert st["after the fallback"]["booted"] == "3.0"
    assert st["after the fallback"]["failed"] == ["4.0"]
    assert st["after the fallback"]["pending"] == []
    assert out["rerun after fallback"] == "up-to-date"
    assert st["recorded after the fallback"] == {"booted": "3.0", "blessed": True,
                                                 "pending": [], "failed": ["4.0"],
                                                 "floor": "3.0"}  # fmt: skip
    assert "failed:      4.0 (did not boot; rolled back)" in out["status text"]
    assert "booted:      3.0 (blessed)" in out["status text"]
