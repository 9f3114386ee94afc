# SPDX-License-Identifier: MIT
"""``spectrum-update`` on a Spectrum-shaped host, run as Spectrum runs it (#13).

The lab host (``airlock.lab.spectrum_host``): a read-only root built from Debian trixie packages
with airlock installed from the project's wheel, ``/run`` a tmpfs, no writable ``/var``, ``/etc``
as ``airlock render`` writes it plus ``/etc/airlock/host.toml``, user data (btrfs) at ``/ext``, s6
supervising the update VM, which runs stock systemd-sysupdate and curl as Spectrum's VM does.
Every update is ``spectrum-update /ext/staging`` with an empty environment; the host's own
``/usr/lib/systemd/systemd-sysupdate`` (257) applies.  The flow: v1 → v2, a no-op, a reboot into
v2, v2 → v3; then the lock against ``s6-setlock``, and a VM that sends nothing.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock import proc
from airlock.lab.disk import format_uuid
from airlock.lab.spectrum_host import STAGING, SpectrumHost
from tests.support import leaks, schemas

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.spectrum_host,
    pytest.mark.btrfs,
    pytest.mark.s6,
    pytest.mark.sandbox,
    pytest.mark.sysupdate,
    pytest.mark.slow,
    pytest.mark.timeout(600),
]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, airlock_wheel: Path) -> Iterator[SpectrumHost]:
    work = tmp_path_factory.mktemp("spectrum-host") / "w"
    with (
        SpectrumHost(work, wheel_file=airlock_wheel, host_config={"fetcher.timeout_s": 240}) as h,
        leaks.world(h.supervisors),  # s6 restarts the idle VMM after each update: the host's
    ):
        yield h
    assert not work.joinpath("ns", "host").exists()


def _slots(h: SpectrumHost) -> list[tuple[str, str, str]]:
    return [(label, uuid, content) for _, label, uuid, content in h.state().slots]


def _pair(h: SpectrumHost, version: str) -> list[tuple[str, str, str]]:
    roothash = h.images[version].roothash
    return [
        (f"Spectrum_{version}.verity", format_uuid(roothash[32:]), f"verity {version}"),
        (f"Spectrum_{version}", format_uuid(roothash[:32]), f"root {version}"),
    ]


def _state(h: SpectrumHost) -> dict[str, object]:
    doc = json.loads(h.read(f"{STAGING}/state.json"))
    assert isinstance(doc, dict)
    return doc


def test_the_host_is_read_only_with_airlock_from_the_wheel(host: SpectrumHost) -> None:
    h = host
    for path in ("/x", "/usr/bin/x", "/etc/x", "/var/lib/x", "/var/tmp/x"):
        done = h.run(["touch", path])
        assert done.returncode != 0, path
        assert b"Read-only file system" in done.stderr
    where = h.run(["python3", "-c", "import airlock, sys; print(airlock.__file__, sys.prefix)"])
    assert where.stdout.split() == [b"/usr/lib/python3/dist-packages/airlock/__init__.py", b"/usr"]
    assert h.read("/usr/bin/spectrum-update").startswith(b"#!/usr/bin/python3\n")
    version = h.run(["/usr/lib/systemd/systemd-sysupdate", "--version"]).stdout
    assert version.startswith(b"systemd 257 ")
    assert b"IMAGE_VERSION=1\n" in h.read("/etc/os-release")
    mounts = h.read("/proc/self/mounts").decode().splitlines()
    assert any(m.split()[1] == "/" and "ro" in m.split()[3].split(",") for m in mounts)
    assert any(m.split()[1] == "/run" and m.split()[2] == "tmpfs" for m in mounts)


@pytest.mark.restarts_world  # the reboot starts the host's s6 and VM anew
def test_update_v1_to_v2_noop_reboot_v2_to_v3(host: SpectrumHost) -> None:
    h = host
    initial = _slots(h)
    assert initial[:2] == _pair(h, "1")
    h.publish("2")

    run = h.spectrum_update()
    assert run.exit_status == 0, run.stderr[-3000:]
    assert run.stdout == "Updated; the new version is used after a reboot.\n"
    assert run.steps == (
        "lock", "prepare", "clean", "fetch", "freeze", "inspect", "apply", "record", "cleanup"
    )  # fmt: skip
    assert "‣ fetch: spectrum, timeout 240 s" in run.stderr  # /etc/airlock/host.toml was read
    assert "SHA256SUMS.gpg from SHA256SUMS.sha256.asc" in run.stderr  # what Spectrum's VM sends
    v2 = h.images["2"]
    assert run.payload_bytes == sum(p.stat().st_size for p in (v2.root, v2.verity, v2.kernel))
    assert _slots(h) == [*initial[:2], *_pair(h, "2")]
    assert [name for name, _ in h.state().boot] == ["Spectrum_1.efi", "Spectrum_2.efi"]
    saved = _state(h)
    # The floor rises to a version once it has booted (docs/boot.md), not when it is installed.
    assert (saved["floor"], saved["pending"]) == ("1", "2")
    assert h.run(["stat", "-c", "%a %F", "/run/updater"]).stdout == b"700 directory\n"
    listing = h.run(["ls", "-A", STAGING]).stdout.split()
    assert listing == [b"fetch.log", b"shared", b"state.json", b"vm-etc"]
    (status,) = schemas.check_output(
        ("status", "--json"), h.run(["airlock", "status", STAGING, "--json"]).stdout.decode()
    )
    assert (status["booted"], status["pending"]) == ("1", ["2"])
    assert status["state_file"] == f"{STAGING}/state.json"  # the state-in-staging default
    assert status["floor"] == "1" and status["last_check"] is not None
    assert status["runtime"]["source"] == "host"  # Spectrum's own systemd-sysupdate
    assert status["next"]["command"] == "reboot"

    disk_before = h.state()
    noop = h.spectrum_update()
    assert noop.exit_status == 0, noop.stderr[-3000:]
    # A replay of the same unmarked manifest proves nothing new (docs/adr/0155).
    assert noop.stdout.startswith("Already up to date as far as known (no newer manifest since ")
    assert noop.payload_bytes == 0
    assert "apply" not in noop.steps
    assert h.state() == disk_before

    h.shutdown()
    h.boot("2")
    assert b"IMAGE_VERSION=2\n" in h.read("/etc/os-release")
    after_reboot = _state(h)  # /ext persisted over the reboot, /run did not
    assert (after_reboot["floor"], after_reboot["pending"]) == ("1", "2")
    h.publish("3")
    run = h.spectrum_update()
    assert run.exit_status == 0, run.stderr[-3000:]
    v3 = h.images["3"]
    assert run.payload_bytes == sum(p.stat().st_size for p in (v3.root, v3.verity, v3.kernel))
    assert _slots(h) == [*_pair(h, "3"), *_pair(h, "2")]  # 2 is booted, hence protected
    assert [name for name, _ in h.state().boot] == ["Spectrum_2.efi", "Spectrum_3.efi"]
    final = _state(h)  # the run saw 2 booted (no boot counting: blessed), then installed 3
    assert (final["floor"], final["pending"]) == ("2", "3")


@pytest.fixture(scope="module")
def updated_host(host: SpectrumHost) -> SpectrumHost:
    """The host after at least one update: a release on the server, the VMM's service started.

    The lock tests need an update that runs to its end.  Run in file order, the v1 → v3 test has
    done that; run alone, this does it first (before the test's own leak check begins)."""
    if not host.published:
        host.publish(host.versions[1])
        first = host.spectrum_update()
        assert first.exit_status == 0, first.stderr[-3000:]
    return host


def test_s6_setlock_makes_spectrum_update_wait(updated_host: SpectrumHost) -> None:
    h = updated_host
    with proc.spawn(
        h.enter(["s6-setlock", "/run/update-lock", "sleep", "4"]), share_pids=True
    ) as holder:
        # s6-setlock runs its command only once it holds the lock: wait for the `sleep`.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            leaks.exe_name(p) == "sleep" for p in leaks.descendants(holder.pid)
        ):
            time.sleep(0.02)
        lockers = leaks.descendants(holder.pid)  # proc's guard: the command runs below its init
        assert any(leaks.exe_name(p) == "sleep" for p in lockers)
        start = time.monotonic()
        run = h.spectrum_update()
        waited = time.monotonic() - start
        assert holder.poll() is not None
    assert run.exit_status == 0, run.stderr[-3000:]
    assert waited > 3
    named = re.search(r"waiting for the update lock \(pid (\d+) holds it\)", run.stderr)
    assert named is not None, run.stderr[-3000:]
    assert int(named.group(1)) in lockers


def test_spectrum_update_makes_s6_setlock_wait(updated_host: SpectrumHost) -> None:
    h = updated_host
    log = h.w / "update.err"
    with (
        open(log, "wb") as err,
        proc.spawn(h.enter(["spectrum-update", STAGING]), stderr=err, share_pids=True) as update,
    ):
        deadline = time.monotonic() + 60
        while "‣ fetch" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "‣ fetch" in log.read_text()
        busy = h.run(["s6-setlock", "-n", "/run/update-lock", "true"])
        assert busy.returncode != 0, (log.read_text(), update.poll(), h.read("/proc/locks"))
        got = h.run(["s6-setlock", "/run/update-lock", "true"], timeout=120)
        assert got.returncode == 0
        # s6-setlock got the lock only once the update had done its last step
        assert "✓ cleanup" in log.read_text()
        assert proc.wait(update, timeout=60) == 0


@pytest.mark.restarts_world  # the update server is stopped and started again
def test_a_vm_that_sends_nothing_is_exit_20_with_its_log(host: SpectrumHost) -> None:
    h = host
    before = _state(h)
    with h.server_down():
        run = h.spectrum_update()
    assert run.exit_status == 20, run.stderr[-3000:]
    assert "error: The update VM sent no SHA256SUMS" in run.stderr
    assert f"hint: the download probably failed; see the update VM's log, {STAGING}/fetch.log" in (
        run.stderr
    )
    log = h.read(f"{STAGING}/fetch.log")
    assert b"systemd-sysupdate failed five times" in log
    after = _state(h)
    assert (after["floor"], after["pending"]) == (before["floor"], before["pending"])
