# SPDX-License-Identifier: MIT
"""The sandbox payload is a real unprivileged host uid (issue #15 item 4, ADR 0170).

Each check reads what the *host* sees (its ``/proc``, the owner of what the payload wrote), and
each has a negative control: the same check against the old shape, bubblewrap started by root,
whose "uid 65534" is host root.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock.backends.fetcher import FetchRequest, unprivileged
from airlock.backends.fetcher.sandbox import SandboxConfig, SandboxFetcher
from airlock.errors import ConfigError
from airlock.events import ListReporter
from tests.support import leaks

pytestmark = pytest.mark.sandbox

UID, GID = 4_000_123, 4_000_321  # a dedicated id no account on this machine has


def _request(tmp_path: Path, script: str) -> FetchRequest:
    cfg, share = tmp_path / "vm-etc", tmp_path / "shared"
    cfg.mkdir(exist_ok=True)
    share.mkdir(exist_ok=True)
    (cfg / "update-url").write_text("http://127.0.0.1:1/\n")
    return FetchRequest(
        config_dir=cfg, share=share, timeout_s=60, command=("/bin/sh", "-c", script)
    )


class _OldShape(SandboxFetcher):
    """bubblewrap started by root, as before issue #15: the negative control."""

    def _run_as(self, request: FetchRequest, scratch: Path) -> tuple[None, None]:
        return None, None


def _fetcher(*, old: bool = False, ro_binds: tuple[Path, ...] = ()) -> SandboxFetcher:
    cfg = SandboxConfig(uid=UID, gid=GID, ro_binds=ro_binds)
    return _OldShape(cfg) if old else SandboxFetcher(cfg)


def _host_ids_of_payload(fetcher: SandboxFetcher, tmp_path: Path) -> dict[str, list[int]]:
    """Start a payload that waits; read its Uid/Gid/NoNewPrivs lines from the host's /proc."""
    token = uuid.uuid4().hex
    script = f": {token}; touch /host/updates/ready; while [ ! -e /host/updates/stop ]; do :; done"
    request = _request(tmp_path, script)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fetcher.fetch(request, ListReporter())
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not (request.share / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        found: dict[str, list[int]] = {}
        for pid in leaks.descendants(os.getpid()):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            if token.encode() in cmdline and b"bwrap" not in cmdline:
                for line in status.splitlines():
                    key, _, value = line.partition(":")
                    if key in ("Uid", "Gid", "NoNewPrivs", "Groups"):
                        found[key] = [int(v) for v in value.split()]
        return found
    finally:
        (request.share / "stop").touch()
        thread.join(60)
        assert not errors, errors


def test_the_payload_is_the_configured_uid_on_the_host(tmp_path: Path) -> None:
    ids = _host_ids_of_payload(_fetcher(), tmp_path)
    assert ids["Uid"] == [UID] * 4
    assert ids["Gid"] == [GID] * 4
    assert ids["Groups"] == []
    assert ids["NoNewPrivs"] == [1]
    assert (tmp_path / "shared").stat().st_uid == UID
    assert (tmp_path / "shared" / "ready").stat().st_uid == UID


def test_negative_control_bubblewrap_as_root_makes_the_payload_host_root(tmp_path: Path) -> None:
    ids = _host_ids_of_payload(_fetcher(old=True), tmp_path)
    assert ids["Uid"] == [0] * 4  # the check above fires on the old shape


@pytest.fixture
def secret_dir() -> Iterator[Path]:
    """A root-owned directory anyone may enter, with a root-owned 0600 file (like a key)."""
    d = Path(tempfile.mkdtemp(prefix="airlock-test-secret-", dir="/run"))
    try:
        d.chmod(0o755)
        key = d / f"key-{uuid.uuid4().hex}.pem"
        key.write_text("PRIVATE KEY\n")
        key.chmod(0o600)
        yield d
    finally:
        shutil.rmtree(d)


_READ_SCRIPT = (
    "cat {key} > /host/updates/leak 2>/host/updates/err;"
    " test -e /etc/ssl/private && echo visible > /host/updates/private;"
    " test -s /etc/ssl/certs/ca-certificates.crt && echo yes > /host/updates/certs; exit 0"
)


def test_the_payload_cannot_read_a_root_only_file_in_a_read_only_bind(
    tmp_path: Path, secret_dir: Path
) -> None:
    key = next(secret_dir.iterdir())
    fetcher = _fetcher(ro_binds=(secret_dir,))
    fetcher.fetch(_request(tmp_path, _READ_SCRIPT.format(key=key)), ListReporter())
    share = tmp_path / "shared"
    assert (share / "leak").read_text() == ""
    assert "Permission denied" in (share / "err").read_text()
    assert not (share / "private").exists()  # only /etc/ssl/certs is bound
    if Path("/etc/ssl/certs/ca-certificates.crt").exists():
        assert (share / "certs").read_text() == "yes\n"


def test_negative_control_bubblewrap_as_root_reads_the_root_only_file(
    tmp_path: Path, secret_dir: Path
) -> None:
    key = next(secret_dir.iterdir())
    fetcher = _fetcher(old=True, ro_binds=(secret_dir,))
    fetcher.fetch(_request(tmp_path, _READ_SCRIPT.format(key=key)), ListReporter())
    assert (tmp_path / "shared" / "leak").read_text() == "PRIVATE KEY\n"


_SETUID_SCRIPT = (
    "cp /bin/true /host/updates/t; chmod 6755 /host/updates/t;"
    " grep ' /host/updates ' /proc/self/mountinfo > /host/updates/mount; exit 0"
)


def test_a_setuid_file_in_shared_is_the_payload_uid_and_mounted_nosuid(tmp_path: Path) -> None:
    _fetcher().fetch(_request(tmp_path, _SETUID_SCRIPT), ListReporter())
    made = tmp_path / "shared" / "t"
    st = made.stat()
    # The payload may set the bit on its own file, but that file is not root's: it can never
    # give root, and clean removes it (test_staging_btrfs), the judge refuses it (reject.mode).
    assert (st.st_uid, st.st_gid) == (UID, GID)
    assert st.st_mode & stat.S_ISUID
    assert "nosuid" in (tmp_path / "shared" / "mount").read_text().split()[5].split(",")


def test_negative_control_bubblewrap_as_root_made_setuid_root_files(tmp_path: Path) -> None:
    _fetcher(old=True).fetch(_request(tmp_path, _SETUID_SCRIPT), ListReporter())
    st = (tmp_path / "shared" / "t").stat()
    assert st.st_uid == 0 and st.st_mode & stat.S_ISUID  # the check above fires on it


def test_a_bind_path_the_guard_cannot_carry_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Path] = []
    original = unprivileged.make_scratch

    def recorded(prefix: str, share: Path) -> Path:
        made.append(original(prefix, share))
        return made[-1]

    monkeypatch.setattr(unprivileged, "make_scratch", recorded)
    fetcher = SandboxFetcher(SandboxConfig(uid=UID, gid=GID, ro_binds=(Path("/run/a:b"),)))
    with pytest.raises(ConfigError) as info:
        fetcher.fetch(_request(tmp_path, "exit 0"), ListReporter())
    assert info.value.code == "config.fetcher"
    assert len(made) == 1
    assert not made[0].exists()  # its scratch directory is gone


def test_a_killed_runs_scratch_is_removed_by_the_next_run(tmp_path: Path) -> None:
    share = tmp_path / "shared"
    first = unprivileged.make_scratch("airlock-test-scratch-", share)
    (first / "0").mkdir()  # what a run killed with its guard leaves: empty entries
    (first / "1").touch()
    again = unprivileged.make_scratch("airlock-test-scratch-", share)
    try:
        assert again == first
        assert list(again.iterdir()) == []
        assert again.stat().st_mode & 0o777 == 0o755
    finally:
        unprivileged.remove_flat(again)
    assert not again.exists()
