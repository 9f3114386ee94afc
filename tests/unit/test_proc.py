# SPDX-License-Identifier: MIT
"""airlock.proc: argv lists, timeouts that kill the whole group, bounded output."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from airlock import proc
from airlock.errors import CommandFailed, CommandTimedOut, HostError


def test_run_captures_output() -> None:
    r = proc.run(["/bin/echo", "hi"], timeout=10)
    assert r.stdout == b"hi\n" and r.returncode == 0


def test_failure_names_command_status_and_escaped_stderr() -> None:
    with pytest.raises(CommandFailed) as info:
        proc.run(["/bin/sh", "-c", "printf 'bad\\033[31m' >&2; exit 3"], timeout=10)
    assert info.value.returncode == 3
    assert "exit code 3" in info.value.message
    assert "\x1b" not in info.value.message and "\\x1b" in info.value.message


def test_timeout_kills_the_whole_process_group(tmp_path: os.PathLike[str]) -> None:
    marker = os.path.join(os.fspath(tmp_path), "pid")
    start = time.monotonic()
    with pytest.raises(CommandTimedOut):
        proc.run(["/bin/sh", "-c", f"sleep 60 & echo $! > {marker}; wait"], timeout=0.5)
    assert time.monotonic() - start < 10
    pid = int(open(marker).read())
    time.sleep(0.2)
    assert _gone_or_zombie(pid)


def _gone_or_zombie(pid: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_output_is_bounded() -> None:
    r = proc.run(["/bin/sh", "-c", "head -c 100000 /dev/zero"], timeout=10, max_output=1000)
    assert len(r.stdout) == 1000


def test_environment_is_rebuilt() -> None:
    os.environ["AIRLOCK_LEAK_TEST"] = "1"
    try:
        r = proc.run(["/usr/bin/env"], timeout=10)
    finally:
        del os.environ["AIRLOCK_LEAK_TEST"]
    assert b"AIRLOCK_LEAK_TEST" not in r.stdout
    assert b"PATH=" in r.stdout


def test_missing_program_is_a_host_error() -> None:
    with pytest.raises(HostError):
        proc.run(["/nonexistent/tool"], timeout=5)


def test_check_executable_accepts_a_root_owned_binary() -> None:
    proc.check_executable(Path("/bin/sh"))


@pytest.mark.parametrize("case", ["missing", "relative", "not-executable", "world-writable"])
def test_check_executable_refuses(tmp_path: Path, case: str) -> None:
    target = tmp_path / "tool"
    if case != "missing":
        target.write_text("#!/bin/sh\n")
        target.chmod({"relative": 0o755, "not-executable": 0o644, "world-writable": 0o777}[case])
    if case == "relative":
        target = Path(os.path.relpath(target))
    with pytest.raises(HostError) as info:
        proc.check_executable(target, hint="h")
    assert info.value.code == "host.executable"
