# SPDX-License-Identifier: MIT
"""``airlock update`` end to end: real btrfs, real bubblewrap, real systemd-sysupdate writing a
Spectrum A/B GPT image and an ESP directory.  v1 → v2 and a no-op rerun with each runtime (257,
262: ``[apply] runtime``), an interrupted apply resumed, hostile fetchers (default runtime)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from airlock import state
from airlock.formats import dialect
from airlock.fsutil import mounts_below
from airlock.lab import disk
from tests.support.oracles import RUNTIMES, require_runtime

from .world import V1_HASH, V2_HASH, World, events

pytestmark = [pytest.mark.btrfs, pytest.mark.sandbox, pytest.mark.sysupdate]


def assert_no_leftovers(w: World) -> None:
    assert not os.path.lexists(w.staging / "snapshot")
    assert mounts_below(w.staging) == []
    assert mounts_below(w.root) == []


def assert_v2_installed(w: World, *, read_only: bool = True) -> None:
    slots = w.slots()
    root_name = next(n for n in w.files if n.endswith(".root"))
    verity_name = next(n for n in w.files if n.endswith(".verity"))
    # Slot A (booted version 1) untouched: protected by ProtectVersion=%A.
    assert (slots[0].label, slots[1].label) == ("Spectrum_1.verity", "Spectrum_1")
    assert slots[1].partuuid == disk.format_uuid(V1_HASH[:32])
    # Slot B now holds version 2, PARTUUIDs from @u, attribute bit 60 (read-only) unless the
    # version loses ReadOnly= (dialect.partition_attributes: 262).
    assert (slots[2].label, slots[3].label) == ("Spectrum_2.verity", "Spectrum_2")
    assert slots[3].partuuid == disk.format_uuid(V2_HASH[:32])
    assert slots[2].partuuid == disk.format_uuid(V2_HASH[32:])
    assert slots[3].attrs == ("GUID:60" if read_only else "")
    assert slots[2].attrs == ("GUID:60" if read_only else "")
    data = disk.state(w.image, measure={3: len(w.files[verity_name]), 4: len(w.files[root_name])})
    assert data[3].sha256_prefix == hashlib.sha256(w.files[root_name]).hexdigest()
    assert data[2].sha256_prefix == hashlib.sha256(w.files[verity_name]).hexdigest()
    esp = w.esp_listing()
    assert esp["Spectrum_2.efi"] == hashlib.sha256(w.files["Spectrum_2.efi"]).hexdigest()
    assert "Spectrum_1.efi" in esp


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_v1_to_v2_then_noop(world: World, runtime: str) -> None:
    w = world
    rules = dialect.for_version(require_runtime(runtime).version)
    w.write_config(w.copy_in(), {"apply.runtime": runtime})
    first = w.update()
    assert first.returncode == 0, first.stderr
    evs = events(first.stdout)
    started = [e["step"] for e in evs if e["event"] == "step-started"]
    assert started == [
        "lock",
        "prepare",
        "clean",
        "fetch",
        "freeze",
        "inspect",
        "apply",
        "record",
        "cleanup",
    ]
    assert evs[-1] == {
        "v": 1, "event": "result", "outcome": "updated", "exit_status": 0, "fresh": True
    }  # fmt: skip
    assert_v2_installed(w, read_only=rules.partition_attributes)
    assert_no_leftovers(w)
    saved = state.load(w.state_file)
    assert saved.pending == "2"
    assert saved.floor == "1"  # rises once 2 has booted and been blessed
    assert saved.last_check is not None
    # shared keeps the downloads as a cache.
    assert sorted(os.listdir(w.staging / "shared")) == sorted(os.listdir(w.release))

    disk_after, esp_after = w.disk_digest(), w.esp_listing()
    second = w.update()
    assert second.returncode == 0, second.stderr
    evs2 = events(second.stdout)
    # The same manifest again: up to date, but not news (docs/adr/0155).
    assert (evs2[-1]["outcome"], evs2[-1]["fresh"]) == ("up-to-date", False)
    assert "apply" not in [e.get("step") for e in evs2 if e["event"] == "step-started"]
    assert w.disk_digest() == disk_after
    assert w.esp_listing() == esp_after
    assert_no_leftovers(w)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_interrupted_apply_is_finished_by_the_next_run(world: World, runtime: str) -> None:
    # What an apply killed mid-download leaves in $BOOT: 262 keeps it as a *partial* instance
    # (dialect.partial_instances), lists it as installed, and refuses to update that version
    # until it is vacuumed; 257 ignores the dot name.  airlock must neither believe it nor stall.
    w = world
    rules = dialect.for_version(require_runtime(runtime).version)
    w.write_config(w.copy_in(), {"apply.runtime": runtime})
    partial = w.esp / "EFI/Linux/.sysupdate.partial.Spectrum_2.efi"
    partial.write_bytes(w.files["Spectrum_2.efi"][:4096])
    out = w.update()
    assert out.returncode == 0, out.stderr
    assert events(out.stdout)[-1]["outcome"] == "updated"
    assert_v2_installed(w, read_only=rules.partition_attributes)
    # 262 vacuumed it before installing; 257 never reads the name (a stray file, no instance).
    assert partial.exists() is not rules.partial_instances
    status = w.airlock("status", "--json")
    assert json.loads(status.stdout.splitlines()[-1])["newest_installed"] == "2"


def test_human_output_and_status(world: World) -> None:
    w = world
    out = w.airlock("update", str(w.staging))
    assert out.returncode == 0, out.stderr
    assert "Updated" in out.stdout
    for step in ("lock", "prepare", "fetch", "freeze", "inspect", "apply", "cleanup"):
        assert step in out.stderr
    status = w.airlock("status")
    assert status.returncode == 0, status.stderr
    assert "pending:     2 (after a reboot)" in status.stdout
    assert "next:        reboot" in status.stdout
    assert "last check:" in status.stdout


@pytest.fixture
def pristine(world: World) -> tuple[World, str, dict[str, str]]:
    return world, world.disk_digest(), world.esp_listing()


def _assert_untouched(w: World, digest: str, esp: dict[str, str]) -> None:
    assert w.disk_digest() == digest
    assert w.esp_listing() == esp
    assert state.load(w.state_file).pending is None
    assert_no_leftovers(w)


def test_planted_symlink_is_rejected(pristine: tuple[World, str, dict[str, str]]) -> None:
    w, digest, esp = pristine
    w.write_config(
        [
            "/bin/sh",
            "-c",
            f"cp {w.release}/* /host/updates/ && rm /host/updates/Spectrum_2.efi && "
            "ln -s /etc/passwd /host/updates/Spectrum_2.efi",
        ]
    )
    out = w.update()
    assert out.returncode == 21, out.stderr
    assert str(events(out.stdout)[-1]["code"]).startswith("reject.")
    _assert_untouched(w, digest, esp)


def test_tampered_payload_is_rejected(pristine: tuple[World, str, dict[str, str]]) -> None:
    w, digest, esp = pristine
    root_name = next(n for n in w.files if n.endswith(".root"))
    w.write_config(
        [
            "/bin/sh",
            "-c",
            f"cp {w.release}/* /host/updates/ && "
            f"printf X | dd of=/host/updates/{root_name} bs=1 seek=9000 conv=notrunc",
        ]
    )
    out = w.update()
    assert out.returncode == 21, out.stderr
    assert events(out.stdout)[-1]["code"] == "reject.digest"
    _assert_untouched(w, digest, esp)


def test_limits_from_the_config_reach_the_judge(
    pristine: tuple[World, str, dict[str, str]],
) -> None:
    # [limits] used to be ignored by `airlock update` (its verifier was built without them).
    w, digest, esp = pristine
    size = w.key.pubring.stat().st_size
    w.write_config(w.copy_in(), {"limits.max_keyring_bytes": size - 1})
    out = w.update()
    assert out.returncode == 21, out.stderr
    final = events(out.stdout)[-1]
    assert final["code"] == "reject.signature"
    assert f"Keyring is larger than {size - 1} bytes" in str(final["message"])
    _assert_untouched(w, digest, esp)
    # Negative control: the same world with the default limit installs v2.
    w.write_config(w.copy_in())
    assert w.update().returncode == 0
    assert_v2_installed(w)


def test_lingering_writer_cannot_change_what_is_installed(world: World) -> None:
    w = world
    root_name = next(n for n in w.files if n.endswith(".root"))
    w.write_config(
        [
            "/bin/sh",
            "-c",
            f"cp {w.release}/* /host/updates/; "
            f"(trap '' TERM HUP; sleep 2; head -c 4096 /dev/urandom > "
            f"/host/updates/{root_name}) & exit 0",
        ]
    )
    out = w.update()
    assert out.returncode == 0, out.stderr
    assert_v2_installed(w)  # the verified bytes, not the late garbage


def test_never_exiting_fetcher_is_killed_at_the_timeout(
    pristine: tuple[World, str, dict[str, str]],
) -> None:
    w, digest, esp = pristine
    w.write_config(["/bin/sh", "-c", f"cp {w.release}/* /host/updates/; exec sleep 100000"])
    out = w.update("--timeout", "2")
    assert out.returncode == 20, out.stderr
    assert events(out.stdout)[-1]["code"] == "fetch.timeout"
    sleepers = [
        p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p) == b"sleep\x00100000\x00"
    ]
    assert sleepers == []
    _assert_untouched(w, digest, esp)


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_disk_filling_fetcher_is_capped(pristine: tuple[World, str, dict[str, str]]) -> None:
    w, digest, esp = pristine
    w.write_config(
        [
            "/bin/sh",
            "-c",
            "dd if=/dev/zero of=/host/updates/Spectrum_9.efi bs=1M count=400; exit 0",
        ],
        {"staging.qgroup_limit_bytes": 32 << 20},
    )
    out = w.update()
    assert out.returncode in (20, 21), out.stderr
    used = os.statvfs(w.staging)
    assert used.f_bavail * used.f_frsize > 200 << 20  # the host keeps its space
    _assert_untouched(w, digest, esp)


def test_busy_second_run_names_the_holder(world: World) -> None:
    from airlock import lock

    w = world
    with lock.hold(w.lock):
        out = w.update()
    assert out.returncode == 4
    assert f"pid {os.getpid()}" in out.stderr


def test_check_reports_available_then_nothing_after_update(world: World) -> None:
    w = world
    digest = w.disk_digest()
    check = w.airlock("check", str(w.staging), "--json")
    assert check.returncode == 100, check.stderr
    assert events(check.stdout)[-1]["outcome"] == "available"
    assert "apply" not in [e.get("step") for e in events(check.stdout)]
    assert w.disk_digest() == digest  # check never writes the disk
    assert w.update().returncode == 0
    again = w.airlock("check", str(w.staging), "--json")
    assert again.returncode == 0, again.stderr
    assert events(again.stdout)[-1]["outcome"] == "up-to-date"


def test_spectrum_fetcher_without_spectrum_fails_clearly_before_touching_anything(
    world: World,
) -> None:
    digest = world.disk_digest()
    out = world.update("--fetcher", "spectrum")
    assert out.returncode == 5, out.stderr
    final = events(out.stdout)[-1]
    assert final["code"] == "host.executable"
    assert "vm-start" in str(final["message"])
    started = [e for e in events(out.stdout) if e.get("event") == "step-started"]
    assert [e["step"] for e in started][-1] == "fetch"
    assert "spectrum" in str(started[-1]["detail"])
    assert world.disk_digest() == digest
