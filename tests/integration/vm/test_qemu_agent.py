# SPDX-License-Identifier: MIT
"""The real `airlock agent` in the real TCG guest: a signed release from `airlock serve` on host
loopback lands in the share; a rerun is a no-op; a release signed by a stranger is refused in the
guest and reported as "could not check"; and `--mode sysupdate` (Spectrum's way: the guest's own
systemd-sysupdate downloads) with the guest booting each runtime's root, 257 and 262."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock.backends.fetcher import FetchRequest
from airlock.backends.fetcher.qemu import QemuConfig, QemuFetcher
from airlock.backends.openpgp import gpg
from airlock.errors import FetchError
from airlock.events import ListReporter
from airlock.formats import dialect, manifest
from airlock.release.serve import ServeConfig, serving
from tests.support import keys
from tests.support.oracles import RUNTIMES, require_runtime
from tests.support.releases import write_vm_transfers

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.timeout(700)]  # 2 guests, 300 s each

UUID = "0123456789abcdef0123456789abcdef"
AGENT = ("/usr/bin/airlock", "agent", "--share", "/host", "--timeout", "200")
SYSUPDATE_MODE = (*AGENT, "--mode", "sysupdate")


@pytest.fixture
def signer(tmp_path: Path) -> Iterator[tuple[Path, str, Path]]:
    home, fpr, pubring = keys.make_key(tmp_path / "signer")
    yield home, fpr, pubring
    keys.kill_agent(home)


def publish(origin: Path, version: str, home: Path, fpr: str) -> dict[str, bytes]:
    files = {
        f"Spectrum_{version}_{UUID}.verity": os.urandom(16 << 10),
        f"Spectrum_{version}_{UUID}.root": os.urandom(300 << 10),
        f"Spectrum_{version}.efi": os.urandom(20 << 10),
    }
    for name, data in files.items():
        (origin / name).write_bytes(data)
    raw = manifest.format(
        manifest.Entry(name=n, sha256=hashlib.sha256(d).hexdigest(), binary=True)
        for n, d in files.items()
    )
    (origin / "SHA256SUMS").write_bytes(raw)
    for name, armor in (("SHA256SUMS.sha256.asc", True), ("SHA256SUMS.gpg", False)):
        (origin / name).write_bytes(gpg.sign(raw, gnupghome=home, signer=fpr, armor=armor))
    return files


def vm_etc(tmp_path: Path, pubring: Path, url: str) -> Path:
    etc = tmp_path / "vm-etc"
    write_vm_transfers(etc / "vm-sysupdate.d")
    (etc / "systemd").mkdir()
    (etc / "systemd" / "import-pubring.gpg").write_bytes(pubring.read_bytes())
    (etc / "update-url").write_text(url + "\n")
    return etc


def test_agent_in_the_guest_downloads_then_finds_nothing_new(
    guest_dir: Path, signer: tuple[Path, str, Path], tmp_path: Path
) -> None:
    home, fpr, pubring = signer
    origin, share = tmp_path / "origin", tmp_path / "shared"
    origin.mkdir()
    share.mkdir()
    files = publish(origin, "2", home, fpr)
    fetcher = QemuFetcher(QemuConfig(guest_dir=guest_dir))
    with serving(ServeConfig(root=origin, port=0)) as server:
        request = FetchRequest(
            config_dir=vm_etc(tmp_path, pubring, server.url),
            share=share,
            timeout_s=300,
            command=AGENT,
            log_path=tmp_path / "console.log",
        )
        first = fetcher.fetch(request, ListReporter())
        assert first.exit_status == 0
        for name, data in files.items():
            assert (share / name).read_bytes() == data
        for name in ("SHA256SUMS", "SHA256SUMS.gpg", "SHA256SUMS.sha256.asc"):
            assert (share / name).read_bytes() == (origin / name).read_bytes()
        served = server.bytes_served()
        second = fetcher.fetch(request, ListReporter())
        assert second.exit_status == 0
        assert "nothing new" in (tmp_path / "console.log").read_text(errors="replace")
        # No payload byte was fetched again.
        again = server.bytes_served()
        assert {n: again[n] for n in files} == {n: served[n] for n in files}


def test_release_signed_by_a_stranger_is_refused_in_the_guest(
    guest_dir: Path, signer: tuple[Path, str, Path], tmp_path: Path
) -> None:
    _, _, pubring = signer
    s_home, s_fpr, _ = keys.make_key(tmp_path / "stranger", "Stranger <s@example.invalid>")
    try:
        origin, share = tmp_path / "origin", tmp_path / "shared"
        origin.mkdir()
        share.mkdir()
        files = publish(origin, "2", s_home, s_fpr)
    finally:
        keys.kill_agent(s_home)
    with serving(ServeConfig(root=origin, port=0)) as server:
        request = FetchRequest(
            config_dir=vm_etc(tmp_path, pubring, server.url),
            share=share,
            timeout_s=300,
            command=AGENT,
            log_path=tmp_path / "console.log",
        )
        with pytest.raises(FetchError) as info:
            QemuFetcher(QemuConfig(guest_dir=guest_dir)).fetch(request, ListReporter())
        assert info.value.code == "fetch.failed"
        assert info.value.message.isprintable()
        assert not any(server.bytes_served().get(n) for n in files)  # stopped before payloads


@pytest.mark.sysupdate
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_agent_sysupdate_mode_in_the_guest_with_each_runtime(
    guest_dir: Path, signer: tuple[Path, str, Path], tmp_path: Path, runtime: str
) -> None:
    rt = require_runtime(runtime)
    home, fpr, pubring = signer
    origin, share = tmp_path / "origin", tmp_path / "shared"
    origin.mkdir()
    share.mkdir()
    files = publish(origin, "2", home, fpr)
    root = None if rt.root == Path("/") else rt.root  # the host's own: the guest's default root
    fetcher = QemuFetcher(QemuConfig(guest_dir=guest_dir, guest_root=root))
    with serving(ServeConfig(root=origin, port=0)) as server:
        request = FetchRequest(
            config_dir=vm_etc(tmp_path, pubring, server.url),
            share=share,
            timeout_s=300,
            command=SYSUPDATE_MODE,
            log_path=tmp_path / "console.log",
        )
        result = fetcher.fetch(request, ListReporter())
        console = (tmp_path / "console.log").read_text(errors="replace")
        assert result.exit_status == 0, console[-3000:]
        served = server.bytes_served()
    # Which sysupdate ran shows in what it fetched: the signature its version reads comes twice
    # (sysupdate's own request, then the agent's check of both names), the other name once.
    reads = dialect.for_version(rt.version).reads_signature(set(dialect.AIRLOCK_SIGNATURES))
    for name in dialect.AIRLOCK_SIGNATURES:
        size = (origin / name).stat().st_size
        assert served[name] == (2 if name == reads else 1) * size, (name, served)
    for name, data in files.items():
        assert (share / name).read_bytes() == data
    for name in ("SHA256SUMS", "SHA256SUMS.gpg", "SHA256SUMS.sha256.asc"):
        assert (share / name).read_bytes() == (origin / name).read_bytes()
