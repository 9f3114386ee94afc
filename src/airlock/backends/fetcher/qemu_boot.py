# SPDX-License-Identifier: MIT
"""What the QEMU guest is given besides its shares (``QemuFetcher``, ADR 0080): where its
connections go (the update server on host loopback, and the alias the guest names it by) and the
host-written boot share and private config copy that carry the command, that alias and the port
the guest's relay listens on (ADR 0172)."""

from __future__ import annotations

import ipaddress
import shlex
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from airlock.backends.fetcher import FetchRequest
from airlock.errors import ConfigError
from airlock.text import display

GUEST_SERVER_IP = "10.0.2.100"  # on the guest's lo, where its relay listens (ADR 0172)
RELAY_PORT_NAME = "airlock.net"  # the virtio-serial port the guest's init looks up by name


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerRoute:
    """Where the guest's connections go, and how the guest names the server."""

    host_addr: str  # loopback address on the host
    host_port: int
    guest_port: int  # on GUEST_SERVER_IP
    guest_url: str  # the update URL as the guest must use it
    hosts_name: str | None  # a host name the guest's /etc/hosts maps to GUEST_SERVER_IP


def route(config_dir: Path, server: str | None) -> ServerRoute:
    """Read the trusted ``update-url`` and decide the upstream and the guest-side URL.

    Raises:
        ConfigError: no usable ``update-url``, or a server that is not on host loopback.
    """
    path = config_dir / "update-url"
    try:
        raw = path.read_bytes()[:4097]
    except OSError as exc:
        raise ConfigError(
            f"Failed to read {path}: {exc.strerror}", code="config.update-url"
        ) from exc
    try:
        url = raw.decode("ascii").strip()
        parts = urllib.parse.urlsplit(url)
        guest_port = parts.port or (443 if parts.scheme == "https" else 80)
    except (UnicodeDecodeError, ValueError):
        raise ConfigError(
            f"Refusing update-url {display(raw)}: not an ASCII URL", code="config.update-url"
        ) from None
    name = parts.hostname
    if parts.scheme not in ("http", "https") or not name or len(raw) > 4096:
        raise ConfigError(
            f"Refusing update-url {display(url)}: not an http(s) URL", code="config.update-url"
        )
    literal = _ip(name)
    if server is not None:
        host, _, port_text = server.rpartition(":")
        target, target_port = host.strip("[]"), _port(port_text)
    else:
        target, target_port = name, guest_port
    addr = _ip(target)
    if addr is None or not addr.is_loopback or target_port is None:
        raise ConfigError(
            f"Refusing update server {display(server or name)}: the QEMU fetcher forwards only "
            "to an address:port on host loopback",
            code="config.server",
            hint="serve the release on 127.0.0.1, or set the fetcher's server to a loopback proxy",
        )
    if literal is not None:
        netloc = f"{GUEST_SERVER_IP}:{guest_port}"
        guest_url, hosts_name = urllib.parse.urlunsplit(parts._replace(netloc=netloc)), None
    else:
        guest_url, hosts_name = url, name  # the guest's /etc/hosts maps the name to the alias
    return ServerRoute(
        host_addr=str(addr),
        host_port=target_port,
        guest_port=guest_port,
        guest_url=guest_url,
        hosts_name=hosts_name,
    )


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if name == "localhost":
        return ipaddress.IPv4Address("127.0.0.1")
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _port(text: str) -> int | None:
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def prepare_boot(work: Path, request: FetchRequest, route: ServerRoute) -> None:
    """The boot share (command, hosts, relay port) and the private config copy, host-written."""
    if not request.command or any("\0" in a for a in request.command):
        raise ConfigError("Refusing an empty command or one with NUL bytes", code="config.command")
    command = list(request.command)
    if Path(command[0]).name == "airlock":
        # The host's airlock executable does not exist in the guest: the package is shared.
        command[:1] = ["python3", "-m", "airlock"]
    boot = work / "boot"
    boot.mkdir()
    (boot / "command").write_text("set -- " + shlex.join(command) + "\n", encoding="utf-8")
    hosts = "127.0.0.1 localhost\n"
    if route.hosts_name is not None:
        hosts += f"{GUEST_SERVER_IP} {route.hosts_name}\n"
    (boot / "hosts").write_text(hosts, encoding="ascii")
    # The guest's init starts its relay on GUEST_SERVER_IP:<this> before the command.
    (boot / "relay").write_text(f"{route.guest_port}\n", encoding="ascii")
    config = work / "config"
    try:
        shutil.copytree(request.config_dir, config, symlinks=True)  # masked transfers → /dev/null
    except (OSError, shutil.Error) as exc:
        raise ConfigError(
            f"Failed to copy the VM config from {request.config_dir}: {exc}", code="config.vm"
        ) from exc
    (config / "update-url").write_text(route.guest_url + "\n", encoding="ascii")
    for path in (work, boot, config):
        path.chmod(0o755)
