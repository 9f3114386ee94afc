# SPDX-License-Identifier: MIT
"""Building staging directories for inspection tests: Spectrum's definitions, releases, a canary.

``Staging`` writes files (any name the kernel accepts) into a staging directory and signs manifests
with throwaway keys (``tests.support.keys``).  ``FifoCanary`` detects any open of a file outside the
staging directory: a watcher thread blocks in ``open(fifo, O_WRONLY)``, which returns only when
someone opens the FIFO for reading.  ``tree_state`` records what the judge must not change.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.keys import KeySet

VERSION = "2"
UUIDS = {
    "50-verity": "0123456789abcdef0123456789abcdef",
    "60-root": "fedcba9876543210fedcba9876543210",
}
# Spectrum's host definitions (design.md#transfers-host), source side as written there.
DEFINITIONS = {
    "50-verity": ("Spectrum_@v_@u.verity", "partition", "MatchPartitionType=root-verity\n"),
    "60-root": ("Spectrum_@v_@u.root", "partition", "MatchPartitionType=root\n"),
    "70-kernel": ("Spectrum_@v.efi", "regular-file", "Path=/EFI/Linux\nPathRelativeTo=boot\n"),
}
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def write_definitions(defdir: Path) -> Path:
    """Write Spectrum's three transfer definitions into ``defdir``."""
    defdir.mkdir(parents=True, exist_ok=True)
    for stem, (source, target_type, target_extra) in DEFINITIONS.items():
        target_pattern = "Spectrum_@v.efi" if stem == "70-kernel" else "Spectrum_@v"
        path_line = "" if target_type == "regular-file" else "Path=auto\n"
        (defdir / f"{stem}.transfer").write_text(
            "[Transfer]\nProtectVersion=%A\n\n"
            f"[Source]\nType=url-file\nPath=file:///run/updater\nMatchPattern={source}\n\n"
            f"[Target]\nType={target_type}\n{path_line}{target_extra}"
            f"MatchPattern={target_pattern}\n"
        )
    return defdir


def payload_names(version: str = VERSION) -> dict[str, str]:
    """The file name of each transfer's payload for ``version``."""
    return {
        "50-verity": f"Spectrum_{version}_{UUIDS['50-verity']}.verity",
        "60-root": f"Spectrum_{version}_{UUIDS['60-root']}.root",
        "70-kernel": f"Spectrum_{version}.efi",
    }


def manifest_line(name: str, data_or_digest: bytes | str, *, marker: str = "*") -> bytes:
    """One ``SHA256SUMS`` line for ``name``."""
    digest = (
        data_or_digest
        if isinstance(data_or_digest, str)
        else hashlib.sha256(data_or_digest).hexdigest()
    )
    return f"{digest} {marker}{name}\n".encode()


def best_before_line(day: datetime.date) -> bytes:
    """The ``BEST-BEFORE-YYYY-MM-DD`` pseudo-entry."""
    return f"{EMPTY_SHA256} *BEST-BEFORE-{day.isoformat()}\n".encode()


class FifoCanary:
    """A FIFO outside the staging tree that records whether anything opened it for reading."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self._stopping = threading.Event()
        self.breached = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="fifo-canary", daemon=True)

    def _watch(self) -> None:
        self._ready.set()
        fd = os.open(self.path, os.O_WRONLY)  # blocks until a reader opens the FIFO
        if not self._stopping.is_set():
            self.breached.set()
        os.close(fd)

    def __enter__(self) -> FifoCanary:
        self._thread.start()
        self._ready.wait(5)
        self._wait_blocked()
        return self

    def _wait_blocked(self) -> None:
        """Wait until the watcher sleeps inside open(): a non-blocking reader is then noticed."""
        tid = self._thread.native_id
        for _ in range(500):
            try:
                state = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
                wchan = Path(f"/proc/self/task/{tid}/wchan").read_text()
            except OSError:
                break
            if state[0] == "S" and ("partner" in wchan or "fifo" in wchan or wchan in ("", "0")):
                return
            threading.Event().wait(0.002)
        threading.Event().wait(0.05)

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> bool:
        """Release the watcher; returns whether a breach happened."""
        if self._thread.is_alive():
            self._stopping.set()
            # Wake the watcher by opening the FIFO for reading ourselves (non-blocking).
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            self._thread.join(5)
            os.close(fd)
        return self.breached.is_set()


class Staging:
    """A staging directory under construction, with throwaway keys and a canary outside it."""

    def __init__(self, root: Path, keys: KeySet, *, directory: Path | None = None) -> None:
        self.root = root
        self.dir = directory or root / "staging"
        if directory is None:
            self.dir.mkdir()
        self.outside = root / "outside"
        self.outside.mkdir()
        self.canary = self.outside / "canary.fifo"
        self.keys = keys

    def put(self, name: str | bytes, data: bytes = b"", *, mode: int = 0o644) -> Path:
        """Write a regular file (``name`` may be any bytes the kernel accepts)."""
        raw = os.fsencode(name)
        fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode, dir_fd=self._fd())
        try:
            os.write(fd, data)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        return self.dir / os.fsdecode(raw)

    def _fd(self) -> int:
        if not hasattr(self, "_dirfd"):
            self._dirfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        return self._dirfd

    def close(self) -> None:
        """Close the builder's directory fd."""
        if hasattr(self, "_dirfd"):
            os.close(self._dirfd)
            del self._dirfd

    def payloads(self, version: str = VERSION, *, write: bool = True) -> dict[str, bytes]:
        """Payload contents of ``version`` by name; written into the directory unless told."""
        out = {
            name: f"{transfer} {version}\n".encode() * 3
            for transfer, name in payload_names(version).items()
        }
        if write:
            for name, data in out.items():
                self.put(name, data)
        return out

    def sign(
        self,
        raw_manifest: bytes,
        *,
        signers: tuple[str, ...] = ("good",),
        name: str = "SHA256SUMS.gpg",
        armor: bool = False,
        **kw: Any,
    ) -> bytes:
        """Write a signature file holding one signature per role in ``signers``."""
        sig = b"".join(
            self.keys.sign(raw_manifest, getattr(self.keys, role), armor=armor, **kw)
            for role in signers
        )
        self.put(name, sig)
        return sig

    def release(
        self,
        version: str = VERSION,
        *,
        signers: tuple[str, ...] = ("good",),
        best_before: datetime.date | None = None,
        extra: bytes = b"",
        write_payloads: bool = True,
        sign: bool = True,
        **sign_kw: Any,
    ) -> bytes:
        """A complete signed release of ``version``; returns the manifest bytes."""
        files = self.payloads(version, write=write_payloads)
        raw = best_before_line(best_before) if best_before else b""
        raw += b"".join(manifest_line(n, d) for n, d in sorted(files.items())) + extra
        self.put("SHA256SUMS", raw)
        if sign:
            self.sign(raw, signers=signers, **sign_kw)
        return raw

    def signed_manifest(self, raw: bytes) -> None:
        """Write ``raw`` as SHA256SUMS and sign it with the good key."""
        self.put("SHA256SUMS", raw)
        self.sign(raw)


def tree_state(directory: Path) -> list[tuple[bytes, int, int, int]]:
    """What the judge must not change: names, modes, sizes, mtimes (read without opening)."""
    out = []
    with os.scandir(os.fsencode(directory)) as it:
        for entry in it:
            st = entry.stat(follow_symlinks=False)
            out.append((entry.name, st.st_mode, st.st_size, st.st_mtime_ns))
    return sorted(out)
