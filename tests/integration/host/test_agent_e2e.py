# SPDX-License-Identifier: MIT
"""The real downloader: ``airlock agent`` inside the bubblewrap sandbox, in a test-created network
namespace (loopback only, no default route) where ``airlock serve`` publishes the release; then the
host judges and installs with systemd-sysupdate 257."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import airlock

from .test_update_e2e import assert_no_leftovers, assert_v2_installed
from .world import World, build, events

pytestmark = [pytest.mark.btrfs, pytest.mark.sandbox, pytest.mark.sysupdate]

SRC = Path(airlock.__file__).resolve().parent.parent
TEMPLATES = Path(airlock.__file__).resolve().parent / "release/templates/vm-sysupdate.d"


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"airlock-h{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def served(tmp_path: Path, btrfs_dir: Path, netns: str) -> Iterator[World]:
    w = build(tmp_path / "w", btrfs_dir)
    port = 8080  # the namespace is ours alone
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            "-m",
            "airlock",
            "serve",
            str(w.release),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            probe = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    netns,
                    "python3",
                    "-c",
                    f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)",
                ],
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                break
            time.sleep(0.1)
        vm_defs = w.root / "etc/vm-sysupdate.d"
        for t in TEMPLATES.glob("*.transfer"):
            shutil.copy(t, vm_defs / t.name)
        (w.root / "etc/update-url").write_text(f"http://127.0.0.1:{port}/\n")
        prefix = Path(os.path.realpath(sys.executable)).parent.parent
        w.write_config(
            [
                "/usr/bin/env",
                f"PYTHONPATH={SRC}",
                sys.executable,
                "-m",
                "airlock",
                "agent",
                "--share",
                "/host",
            ],
            {
                "fetcher.sandbox.netns": netns,
                "fetcher.sandbox.ro_binds": sorted({str(SRC), str(Path(sys.prefix)), str(prefix)}),
            },
        )
        yield w
    finally:
        server.kill()
        server.wait()
        w.key.close()


def test_agent_downloads_host_installs_then_noop(served: World) -> None:
    w = served
    first = w.update()
    assert first.returncode == 0, first.stderr
    assert events(first.stdout)[-1]["outcome"] == "updated"
    assert_v2_installed(w)
    assert_no_leftovers(w)
    second = w.update()
    assert second.returncode == 0, second.stderr
    assert events(second.stdout)[-1]["outcome"] == "up-to-date"
    assert_no_leftovers(w)
