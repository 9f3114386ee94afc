# SPDX-License-Identifier: MIT
"""SandboxFetcher with real bubblewrap: what the payload can see and write, timeouts, and the
guarantee that nothing of it survives ``fetch()``."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from airlock.backends.fetcher import FetchRequest
from airlock.backends.fetcher.sandbox import SandboxConfig, SandboxFetcher
from airlock.errors import FetchError
from airlock.events import ListReporter, Notice
from tests.support import leaks

pytestmark = pytest.mark.sandbox


def _request(tmp_path: Path, script: str, timeout: float = 20) -> FetchRequest:
    cfg, share = tmp_path / "vm-etc", tmp_path / "shared"
    cfg.mkdir(exist_ok=True)
    share.mkdir(exist_ok=True)
    (cfg / "update-url").write_text("http://127.0.0.1:1/\n")
    return FetchRequest(
        config_dir=cfg,
        share=share,
        timeout_s=timeout,
        command=("/bin/sh", "-c", script),
        log_path=tmp_path / "fetch.log",
    )


_BEFORE: set[int] = set()


@pytest.fixture(autouse=True)
def _before() -> None:
    _BEFORE.clear()
    _BEFORE.update(leaks.descendants(os.getpid()))


def _ours() -> set[int]:
    """Live processes below this test, new since it began (orphans stay below: subreaper)."""
    return leaks.descendants(os.getpid()) - _BEFORE


def test_only_the_share_is_writable(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    script = (
        "set -u; id -u > /host/updates/uid; cat /host/etc/update-url > /host/updates/url;"
        " touch /host/etc/x 2>/dev/null && echo etc-writable > /host/updates/bad;"
        " touch /usr/x 2>/dev/null && echo usr-writable > /host/updates/bad;"
        " touch /x 2>/dev/null && echo root-writable > /host/updates/bad;"
        f" cat {secret} > /host/updates/leak 2>/dev/null;"
        " test -e /root && echo root-visible > /host/updates/bad;"
        " cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /host/updates/ifaces;"
        " ls /proc | grep -c '^[0-9]' > /host/updates/nprocs;"
        " unshare -U true 2>/dev/null && echo userns-allowed > /host/updates/bad;"
        " env | grep -v -e '^PATH=' -e '^PWD=' -e '^SHLVL=' -e '^_=' > /host/updates/env;"
        " exit 0"
    )
    result = SandboxFetcher().fetch(_request(tmp_path, script), ListReporter())
    share = tmp_path / "shared"
    assert result.exit_status == 0
    assert not (share / "bad").exists(), (share / "bad").read_text()
    assert (share / "uid").read_text().strip() == "65534"
    assert (share / "url").read_text() == "http://127.0.0.1:1/\n"
    assert (share / "leak").read_text() == ""
    assert (share / "ifaces").read_text().split() == ["lo"]
    assert int((share / "nprocs").read_text()) <= 4
    assert (share / "env").read_text() == ""
    assert not (tmp_path / "vm-etc" / "x").exists()


def test_negative_control_unsandboxed_payload_does_leak(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    out = subprocess.run(["/bin/sh", "-c", f"cat {secret}"], capture_output=True, text=True)
    assert out.stdout == "host secret"


def test_timeout_kills_everything_including_detached_children(tmp_path: Path) -> None:
    script = (
        "trap '' TERM; (trap '' TERM; setsid sleep 300 &) ; "
        "nohup sleep 300 >/dev/null 2>&1 & sleep 300"
    )
    reporter = ListReporter()
    start = time.monotonic()
    with pytest.raises(FetchError) as info:
        SandboxFetcher().fetch(_request(tmp_path, script, timeout=1.0), reporter)
    assert info.value.code == "fetch.timeout"
    assert time.monotonic() - start < 15
    assert _ours() == set()  # at once: fetch() returns only when all of it is gone
    assert leaks.holders(tmp_path / "shared") == set()
    assert any(isinstance(e, Notice) for e in reporter.events)


def test_lingering_child_is_gone_when_fetch_returns(tmp_path: Path) -> None:
    script = (
        "(trap '' TERM HUP; exec 3>>/host/updates/late; while :; do echo late >&3; sleep 0.1; done)"
        " & "
        "echo done > /host/updates/early; exit 0"
    )
    SandboxFetcher().fetch(_request(tmp_path, script), ListReporter())
    # Nothing of the sandbox runs or holds the share when fetch() returns: not "a while later".
    assert _ours() == set()
    assert leaks.holders(tmp_path / "shared") == set()
    assert (tmp_path / "shared" / "early").exists()


def test_negative_control_the_same_lingering_child_unsandboxed_survives(tmp_path: Path) -> None:
    out = tmp_path / "plain"
    out.mkdir()
    subprocess.run(
        [
            "/bin/sh",
            "-c",
            f"(exec 3>>{out}/late; while :; do echo late >&3; sleep 0.1; done) & exit 0",
        ],
        check=True,
    )
    left = _ours()
    try:
        assert left  # the detector above sees a lingering writer...
        assert leaks.holders(out) & left  # ...and the share check sees it hold the directory
    finally:
        for pid in left:
            os.kill(pid, 9)
        while leaks.alive(left):
            time.sleep(0.01)


def test_failure_is_a_fetch_error_with_escaped_output(tmp_path: Path) -> None:
    script = "printf 'bad \\033[31mred\\033[0m\\n'; exit 7"
    with pytest.raises(FetchError) as info:
        SandboxFetcher().fetch(_request(tmp_path, script), ListReporter())
    assert info.value.code == "fetch.failed"
    assert "exit status 7" in info.value.message
    assert "\x1b" not in info.value.message
    assert "\\x1b" in info.value.message


def test_runs_inside_a_given_network_namespace(tmp_path: Path) -> None:
    ns = leaks.netns_name("sandbox")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            [
                "ip",
                "-n",
                ns,
                "link",
                "add",
                "airlockv0",
                "type",
                "veth",
                "peer",
                "name",
                "airlockv1",
            ],
            check=True,
        )
        script = "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /host/updates/if"
        SandboxFetcher(SandboxConfig(netns=ns)).fetch(_request(tmp_path, script), ListReporter())
        seen = sorted((tmp_path / "shared" / "if").read_text().split())
        assert seen == ["airlockv0", "airlockv1", "lo"]
        routes = subprocess.run(
            ["ip", "-n", ns, "route", "show", "default"], capture_output=True, text=True, check=True
        )
        assert routes.stdout.strip() == ""
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_negative_control_userns_detector_fires_without_disable_userns(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            "bwrap",
            "--unshare-all",
            "--unshare-user",
            "--uid",
            "65534",
            "--gid",
            "65534",
            "--ro-bind",
            "/",
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--",
            "/bin/sh",
            "-c",
            "unshare -U true 2>/dev/null && echo userns-allowed",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.stdout.strip() == "userns-allowed"


def test_the_sandbox_pid_namespace_stays_pinned_until_it_is_reaped() -> None:
    """The sandbox's PID namespace is reaped by its inode number after it ends; a freed
    namespace's number goes to the next one anyone makes, whose processes would be killed as the
    sandbox's.  What bubblewrap reports is pinned by an fd: the namespace outlives its last
    process, so its number cannot be reused while airlock may still reap by it."""
    holder = subprocess.Popen(["unshare", "--pid", "--fork", "--", "sleep", "300"])
    try:
        deadline = time.monotonic() + 10
        while not leaks.descendants(holder.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        (inner,) = leaks.descendants(holder.pid)  # `sleep`, PID 1 of the new namespace
        ns = os.readlink(f"/proc/{inner}/ns/pid")
        assert ns != os.readlink("/proc/self/ns/pid")
        r, w = os.pipe()
        os.write(w, b'{"child-pid": %d}' % inner)
        os.close(w)
        try:
            found, pin = SandboxFetcher._read_info(r)
        finally:
            os.close(r)
        assert found == ns and pin >= 0
        os.kill(inner, signal.SIGKILL)  # the namespace's last process; unshare reaps it
        holder.wait(timeout=10)
        while leaks.alive({inner}):
            time.sleep(0.01)
        try:
            # Every process of the namespace is gone, and it is still the same namespace.
            assert os.readlink(f"/proc/self/fd/{pin}") == ns
        finally:
            os.close(pin)
        # The control: a pid that is gone gives nothing to reap by, and no fd.
        r, w = os.pipe()
        os.write(w, b'{"child-pid": %d}' % inner)
        os.close(w)
        try:
            assert SandboxFetcher._read_info(r) == (None, -1)
        finally:
            os.close(r)
    finally:
        for pid in leaks.descendants(holder.pid):
            os.kill(pid, signal.SIGKILL)
        holder.kill()
        holder.wait()
