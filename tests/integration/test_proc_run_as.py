# SPDX-License-Identifier: MIT
"""``proc.RunAs``: the guard drops a command to an unprivileged host uid after binding for it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock import proc
from airlock.errors import HostError

pytestmark = pytest.mark.root

UID, GID = 4_000_123, 4_000_321
FORKER = """
import os, time
forked = 0
for _ in range(8):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(5)
        os._exit(0)
    forked += 1
print(forked)
"""


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory the uid may enter (not below pytest's 0700 temporary directory)."""
    d = Path(tempfile.mkdtemp(prefix="airlock-test-runas-", dir="/run"))
    d.chmod(0o755)
    yield d
    for entry in sorted(d.rglob("*"), reverse=True):
        (entry.rmdir if entry.is_dir() else entry.unlink)()
    d.rmdir()


def test_the_command_runs_as_the_uid_without_groups_or_new_privileges() -> None:
    done = proc.run(
        ["/bin/grep", "-E", "^(Uid|Gid|Groups|NoNewPrivs|CapEff):", "/proc/self/status"],
        timeout=30,
        run_as=proc.RunAs(uid=UID, gid=GID),
    )
    lines = dict(line.split(":", 1) for line in done.stdout.decode().splitlines())
    assert lines["Uid"].split() == [str(UID)] * 4
    assert lines["Gid"].split() == [str(GID)] * 4
    assert lines["Groups"].split() == []
    assert lines["NoNewPrivs"].strip() == "1"
    assert int(lines["CapEff"], 16) == 0


def test_negative_control_without_run_as_the_command_is_root() -> None:
    done = proc.run(["/usr/bin/id", "-u"], timeout=30)
    assert done.stdout.strip() == b"0"


def test_binds_reach_only_the_command_and_survive_scratch_removal(
    tmp_path: Path, scratch: Path
) -> None:
    hidden = tmp_path / "private"  # below a 0700 directory: the uid could not reach it
    hidden.mkdir()
    (hidden / "file").write_text("through the bind\n")
    target = scratch / "work" / "seen"
    target.mkdir(parents=True)
    done = proc.run(
        ["/bin/cat", os.fspath(target / "file")],
        timeout=30,
        run_as=proc.RunAs(uid=UID, gid=GID, binds=((hidden, target),)),
        scratch=(scratch / "work",),  # removed recursively by the guard once the command ends
    )
    assert done.stdout == b"through the bind\n"
    assert not (scratch / "work").exists()
    assert (hidden / "file").read_text() == "through the bind\n"  # the bind was never followed


def test_without_the_bind_the_uid_cannot_reach_the_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    done = proc.run(
        ["/bin/cat", os.fspath(tmp_path / "file")],
        timeout=30,
        check=False,
        run_as=proc.RunAs(uid=UID, gid=GID),
    )
    assert done.returncode != 0
    assert b"Permission denied" in done.stderr


@pytest.mark.parametrize(
    "run_as",
    [
        proc.RunAs(uid=0, gid=GID),
        proc.RunAs(uid=UID, gid=0),
        proc.RunAs(uid=UID, gid=GID, netns=Path("relative")),
        proc.RunAs(uid=UID, gid=GID, binds=((Path("/a:b"), Path("/c")),)),
        proc.RunAs(uid=UID, gid=GID, binds=((Path("/a"), Path("/c=d")),)),
        proc.RunAs(uid=UID, gid=GID, max_processes=0),
        proc.RunAs(uid=UID, gid=GID, netns=Path("/run/netns/x"), own_netns=True),
    ],
)
def test_refused_specs(run_as: proc.RunAs) -> None:
    with pytest.raises(ValueError, match="run-as|cannot pass"):
        proc.run(["/bin/true"], timeout=30, run_as=run_as)


def test_max_processes_is_the_uids_rlimit_nproc() -> None:
    argv = ["/bin/grep", "^Max processes", "/proc/self/limits"]
    limited = proc.run(
        argv,
        timeout=30,
        run_as=proc.RunAs(uid=UID, gid=GID, max_processes=77),
    )
    assert limited.stdout.split()[2:4] == [b"77", b"77"]
    unlimited = proc.run(argv, timeout=30)  # negative control
    assert unlimited.stdout.split()[2] != b"77"


def test_forks_beyond_max_processes_fail() -> None:
    done = proc.run(
        ["/usr/bin/python3", "-I", "-S", "-c", FORKER],  # readable by the uid
        timeout=60,
        run_as=proc.RunAs(uid=UID, gid=GID, max_processes=4),
    )
    assert int(done.stdout) <= 3  # the shell itself is one of the four


def test_run_as_needs_the_commands_own_mount_namespace() -> None:
    with pytest.raises(ValueError, match="own mount namespace"):
        proc.run(["/bin/true"], timeout=30, share_mounts=True, run_as=proc.RunAs(uid=UID, gid=GID))


def test_a_missing_netns_is_a_start_failure() -> None:
    with pytest.raises(HostError) as info:
        proc.run(
            ["/bin/true"],
            timeout=30,
            run_as=proc.RunAs(uid=UID, gid=GID, netns=Path("/run/netns/airlock-none-xyz")),
        )
    assert info.value.code == "host.command"
    assert "No such file" in info.value.message


NET = ["/bin/sh", "-c", "readlink /proc/self/ns/net; cat /proc/self/net/dev"]


def _interfaces(dev: str) -> list[str]:
    return sorted(line.split(":")[0].strip() for line in dev.splitlines()[2:])


def test_own_netns_is_a_new_namespace_with_only_loopback() -> None:
    # QEMU's (ADR 0177): no interface but lo, and lo is down: nothing on the host is reachable.
    ours = os.readlink("/proc/self/ns/net")
    done = proc.run(
        [*NET[:2], NET[2] + ";"
         " /usr/bin/python3 -I -S -c 'import socket; s = socket.socket();"
         " s.settimeout(2); print(s.connect_ex((\"127.0.0.1\", 1)))'"],
        timeout=30,
        run_as=proc.RunAs(uid=UID, gid=GID, own_netns=True),
    )  # fmt: skip
    lines = done.stdout.decode().splitlines()
    assert lines[0] != ours
    assert _interfaces("\n".join(lines[1:-1])) == ["lo"]
    assert lines[-1] == "101"  # ENETUNREACH: even the loopback address leads nowhere


def test_negative_control_without_own_netns_the_command_shares_ours() -> None:
    ours = os.readlink("/proc/self/ns/net")
    done = proc.run(NET, timeout=30, run_as=proc.RunAs(uid=UID, gid=GID))
    lines = done.stdout.decode().splitlines()
    assert lines[0] == ours
    assert len(_interfaces("\n".join(lines[1:]))) > 1  # the host's interfaces
