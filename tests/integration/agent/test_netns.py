# SPDX-License-Identifier: MIT
"""The agent inside a network namespace with no default route (only its own loopback).

The server and the agent both run in a namespace this test creates and deletes; nothing can leave
it.  Proves the agent needs nothing but the update URL (no DNS, no proxy, no other route).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.unit.agent.conftest import World

_SERVE = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from airlock.release.serve import ServeConfig, serving\n"
    "with serving(ServeConfig(root=Path(sys.argv[1]), port=int(sys.argv[2]))) as s:\n"
    "    print(s.url, flush=True)\n"
    "    time.sleep(120)\n"
)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"airlock-agent-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=30)
        routes = subprocess.run(
            ["ip", "-n", name, "route", "show", "default"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        assert routes.strip() == ""  # no default route: nothing can leave
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=30)


def test_agent_downloads_inside_a_namespace_without_default_route(world: World, netns: str) -> None:
    files = world.publish("1")
    env = dict(os.environ)
    server = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", _SERVE, str(world.origin), "8080"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url == "http://127.0.0.1:8080"
        world.set_url(url)
        proc = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                netns,
                sys.executable,
                "-m",
                "airlock",
                "agent",
                "--share",
                str(world.share),
                "--json",
                "--timeout",
                "30",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
    finally:
        server.kill()
        server.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["outcome"] == "downloaded"
    for name, data in files.items():
        assert (world.updates / name).read_bytes() == data


def test_negative_control_without_a_server_in_the_namespace_the_agent_fails(
    world: World, netns: str
) -> None:
    """Nothing listens inside the namespace and nothing outside is reachable: exit 20."""
    world.publish("1")
    world.set_url("http://127.0.0.1:8080")
    proc = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            "-m",
            "airlock",
            "agent",
            "--share",
            str(world.share),
            "--timeout",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 20
