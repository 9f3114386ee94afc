# SPDX-License-Identifier: MIT
"""A throwaway world for the agent: a Spectrum-shaped share, signed releases, `airlock serve`.

The share holds Spectrum's three VM transfer files (design.md#transfers-vm) verbatim; releases
are signed on the fly with a key from a throwaway GNUPGHOME.  Servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from airlock.agent.options import Options
from airlock.backends.openpgp import gpg
from airlock.formats import blockindex, manifest
from airlock.lab import nginx
from airlock.release.serve import ServeConfig, Server, serving
from tests.support import keys
from tests.support.releases import write_vm_transfers

BOTH = ("SHA256SUMS.sha256.asc", "SHA256SUMS.gpg")
KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, slots=True, kw_only=True)
class Key:
    home: Path
    fingerprint: str
    pubring: Path


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Key]:
    tmp = tmp_path_factory.mktemp("agent-key")
    home, fpr, pubring = keys.make_key(tmp)
    yield Key(home=home, fingerprint=fpr, pubring=pubring)
    keys.kill_agent(home)


@pytest.fixture(scope="session")
def stranger_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Key]:
    tmp = tmp_path_factory.mktemp("agent-stranger")
    home, fpr, pubring = keys.make_key(tmp, "Stranger <stranger@example.invalid>")
    yield Key(home=home, fingerprint=fpr, pubring=pubring)
    keys.kill_agent(home)


def release_names(version: str) -> tuple[str, str, str]:
    uuid = hashlib.md5(version.encode(), usedforsecurity=False).hexdigest()
    return (
        f"Spectrum_{version}_{uuid}.verity",
        f"Spectrum_{version}_{uuid}.root",
        f"Spectrum_{version}.efi",
    )


@dataclass(kw_only=True)
class World:
    """A share (etc/ + updates/) and a server directory (origin/)."""

    root: Path
    key: Key
    indexes: bool = True  # write NAME.blocks next to each payload, as `airlock publish` does
    share: Path = field(init=False)
    updates: Path = field(init=False)
    origin: Path = field(init=False)

    def __post_init__(self) -> None:
        self.share = self.root / "share"
        self.updates = self.share / "updates"
        self.origin = self.root / "origin"
        etc = self.share / "etc"
        (etc / "vm-sysupdate.d").mkdir(parents=True)
        (etc / "systemd").mkdir()
        self.updates.mkdir()
        self.origin.mkdir()
        write_vm_transfers(etc / "vm-sysupdate.d")
        (etc / "systemd" / "import-pubring.gpg").write_bytes(self.key.pubring.read_bytes())

    def set_url(self, url: str) -> None:
        (self.share / "etc" / "update-url").write_text(url + "\n")

    def publish(
        self,
        version: str,
        *,
        root_bytes: int = 256 * KIB,
        signatures: Sequence[str] = BOTH,
        key: Key | None = None,
        extra: Sequence[tuple[str, bytes]] = (),
        root: bytes | None = None,
    ) -> dict[str, bytes]:
        """Add a release to origin/ and re-sign the manifest over everything there."""
        verity, rootfs, efi = release_names(version)
        files = {
            verity: os.urandom(16 * KIB),
            rootfs: os.urandom(root_bytes) if root is None else root,
            efi: os.urandom(32 * KIB),
            **dict(extra),
        }
        for name, data in files.items():
            if "/" not in name:
                (self.origin / name).write_bytes(data)
        self.sign(signatures=signatures, key=key, extra_names=[n for n, _ in extra])
        return files

    def sign(
        self,
        *,
        signatures: Sequence[str] = BOTH,
        key: Key | None = None,
        extra_names: Sequence[str] = (),
    ) -> bytes:
        entries = []
        for path in sorted(self.origin.iterdir()):
            if path.name.startswith("SHA256SUMS") or path.name.endswith(blockindex.SUFFIX):
                path.unlink()
                continue
            if self.indexes:
                index = blockindex.build(path.read_bytes())
                (self.origin / blockindex.index_name(path.name)).write_bytes(index)
            entries.append(
                manifest.Entry(
                    name=path.name,
                    binary=True,
                    sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                )
            )
        raw = manifest.format(entries)
        raw += b"".join(f"{'0' * 64} *{n}\n".encode() for n in extra_names if "/" in n)
        (self.origin / "SHA256SUMS").write_bytes(raw)
        k = key or self.key
        for name in signatures:
            sig = gpg.sign(raw, gnupghome=k.home, signer=k.fingerprint, armor=name.endswith(".asc"))
            (self.origin / name).write_bytes(sig)
        return raw

    def options(self, **kw: object) -> Options:
        base: dict[str, object] = {"share": self.share, "timeout_s": 30.0, "stall_s": 5.0}
        base.update(kw)
        return Options(**base)  # type: ignore[arg-type]  # test helper: keywords of Options

    def updates_listing(self) -> list[str]:
        return sorted(os.listdir(self.updates))


@pytest.fixture
def world(tmp_path: Path, signing_key: Key) -> World:
    return World(root=tmp_path, key=signing_key)


@pytest.fixture(params=["serve", "nginx"])
def server(request: pytest.FixtureRequest, world: World) -> Iterator[Server]:
    """The release directory served by `airlock serve`, then by nginx (any static server works)."""
    if request.param == "nginx":
        config = nginx.NginxConfig(root=world.origin, workdir=world.root / "nginx")
        with nginx.serving(config) as web:
            world.set_url(web.url)
            yield web  # type: ignore[misc]  # same url/bytes_served/requests as Server
        return
    with serving(ServeConfig(root=world.origin)) as srv:
        world.set_url(srv.url)
        yield srv


def payload_bytes(srv: Server) -> int:
    """Bytes the server wrote for payloads (not the manifest, signatures or block indexes)."""
    return sum(
        n
        for name, n in srv.bytes_served().items()
        if not name.startswith("SHA256SUMS") and not name.endswith(blockindex.SUFFIX)
    )
