# SPDX-License-Identifier: MIT
"""Fixtures for the VM fetchers: the built guest, a loopback HTTP server, a small release."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("AIRLOCK_CACHE", "/var/cache/airlock"))
GUEST = CACHE / "guest"


@pytest.fixture(scope="session")
def guest_dir() -> Path:
    """The guest from `make guest`; missing is a failure under AIRLOCK_REQUIRE_ROOT=1."""
    wanted = ("vmlinuz", "initrd.img", "root/usr/bin/python3")
    missing = [p for p in wanted if not (GUEST / p).exists()]
    if missing:
        msg = f"guest not built ({', '.join(missing)} missing under {GUEST}; run make guest)"
        if os.environ.get("AIRLOCK_REQUIRE_ROOT") == "1":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return GUEST


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


@pytest.fixture
def release_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A release directory served on 127.0.0.1 (random port): (url, directory, request log)."""
    root = tmp_path / "srv"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=os.fspath(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root, server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def write_release(root: Path, version: str, files: dict[str, bytes]) -> dict[str, str]:
    """Payload files plus an (unsigned) SHA256SUMS; returns name -> sha256."""
    sums = {f"{name}": hashlib.sha256(data).hexdigest() for name, data in files.items()}
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "SHA256SUMS").write_text("".join(f"{h} *{n}\n" for n, h in sorted(sums.items())))
    return sums


def vm_config(tmp_path: Path, url: str) -> Path:
    """A minimal VM config tree (update-url, an empty vm-sysupdate.d)."""
    cfg = tmp_path / "vmconfig"
    (cfg / "vm-sysupdate.d").mkdir(parents=True)
    (cfg / "systemd").mkdir()
    (cfg / "update-url").write_text(url + "\n")
    return cfg


def qemu_pids_for(marker: str) -> list[int]:
    """Pids of live processes whose command line mentions ``marker`` (a tmp path of the test)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmd:
            found.append(int(entry))
    return found
