# SPDX-License-Identifier: MIT
"""QemuFetcher's host-side decisions without a VM: the forward, the guest URL, the boot files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from airlock.backends.fetcher import FetchRequest, qemu, qemu_boot
from airlock.errors import ConfigError


def _cfg(tmp_path: Path, url: bytes) -> Path:
    (tmp_path / "update-url").write_bytes(url)
    return tmp_path


@pytest.mark.parametrize(
    ("url", "server", "host", "port", "guest_url", "name"),
    [
        ("http://127.0.0.1:8080/r/", None, "127.0.0.1", 8080, "http://10.0.2.100:8080/r/", None),
        ("http://localhost/r/", None, "127.0.0.1", 80, "http://10.0.2.100:80/r/", None),
        ("https://[::1]:8443/", None, "::1", 8443, "https://10.0.2.100:8443/", None),
        (
            "https://updates.example/r/",
            "127.0.0.1:3128",
            "127.0.0.1",
            3128,
            "https://updates.example/r/",
            "updates.example",
        ),
        (
            "http://192.0.2.7:81/",
            "127.0.0.2:9000",
            "127.0.0.2",
            9000,
            "http://10.0.2.100:81/",
            None,
        ),
    ],
)
def test_route_forwards_only_to_loopback(
    tmp_path: Path,
    url: str,
    server: str | None,
    host: str,
    port: int,
    guest_url: str,
    name: str | None,
) -> None:
    route = qemu_boot.route(_cfg(tmp_path, url.encode() + b"\n"), server)
    assert (route.host_addr, route.host_port, route.guest_url, route.hosts_name) == (
        host,
        port,
        guest_url,
        name,
    )


@pytest.mark.parametrize(
    ("url", "server", "code"),
    [
        (b"http://192.0.2.7/", None, "config.server"),  # not loopback, no proxy given
        (b"https://updates.example/", None, "config.server"),
        (b"http://127.0.0.1/", "192.0.2.1:80", "config.server"),
        (b"http://127.0.0.1/", "127.0.0.1:0", "config.server"),
        (b"http://127.0.0.1/", "127.0.0.1:http", "config.server"),
        (b"ftp://127.0.0.1/", None, "config.update-url"),
        (b"http://127.0.0.1:99999/", None, "config.update-url"),
        (b"\xff\xfe", None, "config.update-url"),
        (b"http://" + b"a" * 5000, None, "config.update-url"),
    ],
)
def test_route_refuses_other_servers_and_bad_urls(
    tmp_path: Path, url: bytes, server: str | None, code: str
) -> None:
    with pytest.raises(ConfigError) as info:
        qemu_boot.route(_cfg(tmp_path, url), server)
    assert info.value.code == code
    assert info.value.message.isprintable()


def test_missing_update_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="update-url"):
        qemu_boot.route(tmp_path, None)


NASTY = ("python3", "-c", "print('it''s')", "$(touch /x)", "`id`", "a b\tc", "\\", "--", "-x", "ü")


def test_boot_command_survives_the_guest_shell(tmp_path: Path) -> None:
    """The busybox init sources the command file; every argument must come back byte-identical."""
    (tmp_path / "cfg").mkdir()
    cfg = _cfg(tmp_path / "cfg", b"http://127.0.0.1:1/\n")
    request = FetchRequest(config_dir=cfg, share=tmp_path, timeout_s=1, command=NASTY)
    work = tmp_path / "work"
    work.mkdir()
    route = qemu_boot.route(cfg, None)
    qemu_boot.prepare_boot(work, request, route)
    out = subprocess.run(
        ["/bin/busybox", "sh", "-c", '. "$0"; printf "%s\\0" "$@"', work / "boot" / "command"],
        capture_output=True,
        check=True,
    ).stdout
    assert out.split(b"\0")[:-1] == [a.encode() for a in NASTY]
    assert (work / "config" / "update-url").read_text() == "http://10.0.2.100:1/\n"
    assert (cfg / "update-url").read_text() == "http://127.0.0.1:1/\n"


def test_host_airlock_executable_maps_to_the_shared_package(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    cfg = _cfg(tmp_path / "cfg", b"http://127.0.0.1:1/\n")
    (cfg / "masked.transfer").symlink_to("/dev/null")
    request = FetchRequest(
        config_dir=cfg,
        share=tmp_path,
        timeout_s=1,
        command=("/usr/bin/airlock", "agent", "--share", "/host"),
    )
    work = tmp_path / "work"
    work.mkdir()
    qemu_boot.prepare_boot(work, request, qemu_boot.route(cfg, None))
    assert (work / "boot" / "command").read_text() == (
        "set -- python3 -m airlock agent --share /host\n"
    )
    assert (work / "config" / "masked.transfer").readlink() == Path("/dev/null")


def test_qemu_option_values_escape_commas() -> None:
    argv = qemu._virtfs("airlock-updates", Path("/srv/a,b"), readonly=False)
    assert argv[1].startswith("local,path=/srv/a,,b,mount_tag=airlock-updates,")
    assert "security_model=mapped-xattr" in argv[1]
    assert "readonly" not in argv[1]


def test_console_tail_is_escaped_and_ignores_serial_carriage_returns() -> None:
    raw = b"boot\r\n\x1b]0;owned\x07\xe2\x80\xaeEVIL\r\r\n\r\nairlock-guest: status 3\r\n"
    out = qemu._console_tail(raw)
    assert out.isascii()
    assert out.isprintable()
    assert "\\x1b" in out
    assert "\\u202e" in out
    assert out.endswith("airlock-guest: status 3")


def test_the_guest_has_no_nic_and_one_serial_port_on_an_inherited_socket() -> None:
    argv = [*qemu._machine_argv(qemu.QemuConfig(), qemu.Accel.TCG, Path("/k"), Path("/i"), ""),
            *qemu._serial_port(7)]  # fmt: skip
    assert argv[argv.index("-nic") + 1] == "none"
    assert "-netdev" not in argv
    assert not any("guestfwd" in a or "hostfwd" in a for a in argv)
    assert "socket,id=relay,fd=7" in argv  # a socketpair's end: no path to connect to
    assert "virtserialport,bus=vser0.0,chardev=relay,name=airlock.net" in argv


def test_qemu_may_neither_spawn_nor_change_credentials() -> None:
    argv = qemu._machine_argv(qemu.QemuConfig(), qemu.Accel.TCG, Path("/k"), Path("/i"), "")
    opts = argv[argv.index("-sandbox") + 1].split(",")
    assert opts[0] == "on"
    assert {"obsolete=deny", "elevateprivileges=deny", "spawn=deny", "resourcecontrol=deny"} <= set(
        opts
    )


def test_the_forwarder_runs_isolated_on_the_route_with_the_limit(tmp_path: Path) -> None:
    route = qemu_boot.route(_cfg(tmp_path, b"http://127.0.0.1:8080/r/\n"), None)
    cfg = qemu.QemuConfig(max_connections=5)
    argv = qemu._forwarder_argv(cfg, route, Path("/scratch/6"), 9)
    assert argv[:4] == ["python3", "-I", "-S", "/scratch/6"]
    assert argv[4:] == ["--fd", "9", "--upstream", "127.0.0.1:8080", "--max-connections", "5"]


def test_the_boot_share_names_the_port_the_guest_relay_listens_on(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    cfg = _cfg(tmp_path / "etc", b"http://127.0.0.1:8080/r/\n")
    request = FetchRequest(config_dir=cfg, share=tmp_path, timeout_s=1, command=("true",))
    work = tmp_path / "work"
    work.mkdir()
    qemu_boot.prepare_boot(work, request, qemu_boot.route(cfg, None))
    assert (work / "boot" / "relay").read_text() == "8080\n"
