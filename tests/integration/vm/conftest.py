# SPDX-License-Identifier: MIT
"""Fixtures for the VM fetchers: the built guest, `airlock serve` on loopback, a small release."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock.layout import Layout
from airlock.release.serve import ServeConfig, Server, serving

GUEST = Layout.load().guest


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


@pytest.fixture
def release_server(tmp_path: Path) -> Iterator[tuple[str, Path, Server]]:
    """`airlock serve` of a release directory on 127.0.0.1 (random port): (url/, dir, server)."""
    root = tmp_path / "srv"
    root.mkdir()
    with serving(ServeConfig(root=root, port=0)) as server:
        yield server.url + "/", root, server


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
