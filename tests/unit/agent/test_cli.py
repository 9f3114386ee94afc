# SPDX-License-Identifier: MIT
"""`airlock agent` as a process: exit statuses, the final line, JSON lines, progress on stderr."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from airlock.errors import ExitStatus
from airlock.release.serve import Faults, ServeConfig, Server, serving
from tests.support import schemas
from tests.unit.agent.conftest import MIB, World, release_names


def _agent(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "airlock",
            "agent",
            "--share",
            str(world.share),
            "--timeout",
            "20",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    schemas.check_output(("agent", *args), done.stdout)
    return done


def test_json_run_reports_progress_and_outcome(world: World, server: Server) -> None:
    world.publish("1", root_bytes=2 * MIB)
    proc = _agent(world, "--json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all(e["v"] == 1 for e in events)
    progress = [e for e in events if e["event"] == "step-progress"]
    assert progress
    assert {e["step"] for e in progress} == {"download"}
    assert all({"done", "total", "rate", "eta_s", "item"} <= e.keys() for e in progress)
    assert events[-1]["event"] == "result"
    assert events[-1]["outcome"] == "downloaded"
    assert events[-1]["version"] == "1"
    again = _agent(world, "--json")
    final = json.loads(again.stdout.splitlines()[-1])
    assert again.returncode == 0
    assert final["outcome"] == "nothing-new"
    assert final["payload_bytes"] == 0


def test_console_run_prints_rate_and_a_final_line(world: World, server: Server) -> None:
    world.publish("1")
    proc = _agent(world)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("downloaded: version 1, 3 files")
    assert "/s" in proc.stderr
    assert "agent: download" in proc.stderr
    again = _agent(world)
    assert again.stdout.strip() == "nothing new: version 1 already present"


def test_failure_exits_fetch_with_a_reason(world: World, server: Server) -> None:
    world.publish("1", signatures=())
    proc = _agent(world, "--json")
    assert proc.returncode == ExitStatus.FETCH
    final = json.loads(proc.stdout.splitlines()[-1])
    assert final["event"] == "error"
    assert final["code"] == "fetch.signature"
    assert "error: " in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_update_url_exits_config(world: World) -> None:
    world.set_url("http://example.invalid/a b")
    proc = _agent(world)
    assert proc.returncode == ExitStatus.CONFIG
    assert "Bad update URL" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_share_exits_config(world: World) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "airlock", "agent", "--share", str(world.root / "none")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == ExitStatus.CONFIG


def test_agent_killed_mid_download_resumes_on_the_next_run(world: World) -> None:
    """SIGKILL while a payload is half there; the rerun resumes it with Range + If-Range."""
    world.publish("1", root_bytes=8 * MIB)
    rootfs = release_names("1")[1]
    cut = Faults(cut_after_bytes={rootfs: 4 * MIB})
    with serving(ServeConfig(root=world.origin, faults=cut)) as srv:
        world.set_url(srv.url)
        proc = subprocess.Popen(
            [sys.executable, "-m", "airlock", "agent", "--share", str(world.share), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:  # the cut is followed by a notice, then a backoff sleep
                if json.loads(line)["event"] == "notice":
                    proc.send_signal(signal.SIGKILL)
                    break
        finally:
            proc.kill()
            proc.wait(timeout=30)
    partial = world.updates / f".{rootfs}.partial"
    assert partial.stat().st_size == 4 * MIB
    assert (world.updates / f".{rootfs}.partial.validator").exists()
    with serving(ServeConfig(root=world.origin)) as srv:
        world.set_url(srv.url)
        again = _agent(world, "--json")
        requests = [r for r in srv.requests() if r["path"] == rootfs]
        served = srv.bytes_served()[rootfs]
    assert again.returncode == 0, again.stderr
    assert [r["status"] for r in requests] == [206]
    assert served == 4 * MIB
    assert not partial.exists()
    assert (world.updates / rootfs).stat().st_size == 8 * MIB


def test_no_complete_version_on_the_server_is_nothing_new(world: World, server: Server) -> None:
    world.publish("1")
    (world.origin / release_names("1")[2]).unlink()
    world.sign()
    proc = _agent(world)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "nothing new: the server offers no complete version"


def test_bad_arguments_exit_usage(world: World) -> None:
    for args in (["--timeout", "0"], ["--max-file-bytes", "-1"], ["--mode", "curl"]):
        proc = _agent(world, *args)
        assert proc.returncode == ExitStatus.USAGE, args
