# SPDX-License-Identifier: MIT
"""``airlock update --fetcher spectrum`` (the real CLI): Spectrum's protocol (s6, the VM's mount
namespace) driving a real TCG guest that runs the real agent, v1 → v2 into the A/B image, then a
no-op; and the same guest running Spectrum's own VM behaviour (stock systemd-sysupdate and curl)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import airlock
from airlock.layout import Layout
from airlock.release.serve import ServeConfig, serving
from tests.integration.host.conftest import btrfs_dir  # noqa: F401 - the fixture
from tests.integration.host.test_update_e2e import assert_no_leftovers, assert_v2_installed
from tests.integration.host.world import World, build, events
from tests.integration.vm.spectrum_world import spectrum_world
from tests.support.releases import write_vm_transfers

pytestmark = [
    pytest.mark.vm,
    pytest.mark.s6,
    pytest.mark.btrfs,
    pytest.mark.sysupdate,
    pytest.mark.slow,
    pytest.mark.timeout(500),  # one `airlock update` of at most 400 s
]


@pytest.fixture
def world(tmp_path: Path, btrfs_dir: Path, guest_dir: Path) -> Iterator[World]:  # noqa: F811
    w = build(tmp_path / "w", btrfs_dir)
    write_vm_transfers(w.root / "etc/vm-sysupdate.d")
    try:
        yield w
    finally:
        w.key.close()


def _update(w: World) -> str:
    """``airlock update --fetcher spectrum`` through the real CLI; the final outcome."""
    result = w.update("--fetcher", "spectrum", timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    return str(events(result.stdout)[-1]["outcome"])


def test_spectrum_fetcher_v1_to_v2_then_noop(world: World, guest_dir: Path, tmp_path: Path) -> None:
    w = world
    src = Path(airlock.__file__).resolve().parents[1]
    tests_root = Path(__file__).resolve().parents[3]
    with (
        serving(ServeConfig(root=w.release, port=0)) as server,
        spectrum_world(tmp_path / "spectrum") as sw,
    ):
        (w.root / "etc/update-url").write_text(server.url + "\n")
        spectrum = sw.config()
        # fetch_command is unused: Spectrum's VM decides what it runs.
        w.write_config(
            ["/usr/bin/airlock"],
            {
                "fetcher.spectrum.run_dir": spectrum.run_dir,
                "fetcher.spectrum.vm_name": spectrum.vm_name,
                "fetcher.spectrum.vm_start": spectrum.vm_start,
                "fetcher.spectrum.vm_stop": spectrum.vm_stop,
                "fetcher.spectrum.stop_timeout_s": spectrum.stop_timeout_s,
                "fetcher.timeout_s": 300,
            },
        )
        # The VMM boots the real guest on <run>/fs/<id>, which runs the real agent.
        sw.set_guest(
            f"cd {shlex.quote(str(tests_root))}\n"
            f"exec env PYTHONPATH={shlex.quote(str(src))}:. {shlex.quote(sys.executable)} "
            f"-m tests.integration.vm.vmm_qemu {sw.fs} {guest_dir} 240 "
            "/usr/bin/airlock agent --share /host --timeout 200"
        )
        sw.wait_up()
        assert _update(w) == "updated"
        assert_v2_installed(w)
        assert_no_leftovers(w)
        assert sw.vm_mounts() == [str(sw.fs)]
        disk_before = w.disk_digest()
        sw.wait_up()
        assert _update(w) == "up-to-date"
        assert w.disk_digest() == disk_before
        assert sw.vm_mounts() == [str(sw.fs)]


@pytest.fixture
def spectrum_guest(tmp_path: Path, guest_dir: Path) -> Iterator[Path]:
    """The guest with curl: its root is the runtime under the Spectrum host's package layer."""
    layer = Layout.load().spectrum_host_layer()
    if layer is None:
        pytest.fail("the Spectrum host layer is not built (make setup)", pytrace=False)
    out = tmp_path / "spectrum-guest"
    (out / "root").mkdir(parents=True)
    for name in ("vmlinuz", "initrd.img"):
        (out / name).symlink_to(guest_dir / name)
    lowers = f"{layer}:{(guest_dir / 'root').resolve()}"
    subprocess.run(
        ["mount", "-t", "overlay", "-o", f"ro,lowerdir={lowers}", "overlay", str(out / "root")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    try:
        yield out
    finally:
        subprocess.run(["umount", str(out / "root")], check=False, timeout=60)


def test_spectrum_s_own_vm_side_delivers_what_the_host_accepts(
    world: World, spectrum_guest: Path, tmp_path: Path
) -> None:
    # Spectrum's VM behaviour in a real VM: stock systemd-sysupdate with the VM transfers
    # (@UPDATE_URL@ substituted), five tries, then curl of SHA256SUMS and SHA256SUMS.sha256.asc
    # (lab/spectrum/download-update); airlock's host judges and installs what it sent.
    w = world
    src = Path(airlock.__file__).resolve().parents[1]
    tests_root = Path(__file__).resolve().parents[3]
    script = "/opt/airlock/airlock/lab/spectrum/download-update"
    with (
        serving(ServeConfig(root=w.release, port=0)) as server,
        spectrum_world(tmp_path / "spectrum") as sw,
    ):
        (w.root / "etc/update-url").write_text(server.url + "\n")
        spectrum = sw.config()
        w.write_config(
            ["/usr/bin/airlock"],
            {
                "fetcher.spectrum.run_dir": spectrum.run_dir,
                "fetcher.spectrum.vm_name": spectrum.vm_name,
                "fetcher.spectrum.vm_start": spectrum.vm_start,
                "fetcher.spectrum.vm_stop": spectrum.vm_stop,
                "fetcher.spectrum.stop_timeout_s": spectrum.stop_timeout_s,
                "fetcher.timeout_s": 300,
            },
        )
        sw.set_guest(
            f"cd {shlex.quote(str(tests_root))}\n"
            f"exec env PYTHONPATH={shlex.quote(str(src))}:. {shlex.quote(sys.executable)} "
            f"-m tests.integration.vm.vmm_qemu {sw.fs} {spectrum_guest} 240 /bin/sh {script}"
        )
        sw.wait_up()
        result = w.update("--fetcher", "spectrum", timeout=400)
        assert result.returncode == 0, result.stderr[-3000:]
        evs = events(result.stdout)
        assert evs[-1]["outcome"] == "updated"
        freeze = next(e for e in evs if e.get("event") == "step-finished" and e["step"] == "freeze")
        assert "SHA256SUMS.gpg from SHA256SUMS.sha256.asc" in str(freeze["detail"])
        assert_v2_installed(w)
        assert_no_leftovers(w)
