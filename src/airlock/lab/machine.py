# SPDX-License-Identifier: MIT
"""Boot the lab's disk image in QEMU: firmware → systemd-boot → UKI → initramfs → the root.

A machine is QEMU (TCG: this host's KVM is unusable) with OVMF (Debian's ``ovmf``: the code
read-only, a fresh copy of the variable store per run), one virtio disk — the lab's disk image
itself, so what the firmware reads is exactly what systemd-sysupdate wrote — no network device at
all, and the serial console on a pipe.  ``boot()`` reads the console line by line as it comes,
splits it into *attempts* (each time the firmware starts a boot loader), extracts what the
initramfs and the root's init report (``lab/system/*``), and reports stages to a callback for
progress bars.  With ``reboots`` a failed attempt's reboot starts the next attempt in the same
run (boot counting needs that); without it QEMU exits at the first reboot.  The run ends when the
guest powers off, or it is killed at the timeout.  Console text is escaped before anything shows
it; at most ``MAX_TRANSCRIPT`` bytes are kept.
"""

from __future__ import annotations

import enum
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from airlock import proc
from airlock.errors import HostError
from airlock.text import display

QEMU = Path("/usr/bin/qemu-system-x86_64")
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
MAX_TRANSCRIPT = 1 << 20
_ANSI = re.compile(rb"\x1b\[[0-9;=?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\r")


class Stage(enum.IntEnum):
    """How far one attempt got (the order a good boot passes them)."""

    FIRMWARE = 0
    LOADER = 1  # the firmware started systemd-boot
    INITRAMFS = 2  # the UKI's kernel runs the initramfs
    VERITY = 3  # the root is mounted through dm-verity
    ROOT = 4  # the root's init runs
    DONE = 5  # the root's init reported a good boot


_MARKERS = (
    ("BdsDxe: starting", Stage.LOADER),
    ("airlock-initramfs: roothash", Stage.INITRAMFS),
    ("airlock-initramfs: root mounted", Stage.VERITY),
    ("airlock-root: IMAGE_VERSION=", Stage.ROOT),
    ("airlock-root: boot ok", Stage.DONE),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One boot attempt as the console showed it."""

    number: int
    stage: Stage
    lines: tuple[str, ...]
    seconds: float

    def _field(self, prefix: str) -> str | None:
        for line in self.lines:
            if line.startswith(prefix):
                return line[len(prefix) :].split(" ", 1)[0]
        return None

    @property
    def ok(self) -> bool:
        """The root's init reported a good boot."""
        return self.stage is Stage.DONE

    @property
    def version(self) -> str | None:
        """``IMAGE_VERSION`` from the booted root's os-release."""
        return self._field("airlock-root: IMAGE_VERSION=")

    @property
    def roothash(self) -> str | None:
        """The root hash of the booted root's dm-verity table."""
        return self._field("airlock-root: roothash ")

    @property
    def verity(self) -> str | None:
        """The kernel's dm-verity status (``V`` verified, ``C`` corruption seen)."""
        return self._field("airlock-root: verity status ")

    @property
    def data_device(self) -> str | None:
        """The partition the root's data came from (e.g. ``vda3``)."""
        for line in self.lines:
            if line.startswith("airlock-root: root ") and " on data " in line:
                return line.split(" on data ", 1)[1].split()[0]
        return None

    @property
    def blessed(self) -> str | None:
        """``OLD -> NEW`` when the booted system removed its entry's boot counter."""
        for line in self.lines:
            if line.startswith("airlock-root: blessed: "):
                return line[len("airlock-root: blessed: ") :]
        return None

    @property
    def failure(self) -> str | None:
        """Why the initramfs or the root refused to go on, if it said so."""
        for line in self.lines:
            for who in ("airlock-initramfs: ", "airlock-root: "):
                if line.startswith(who + "boot failed: "):
                    return line[len(who) + len("boot failed: ") :]
        return None

    @property
    def verity_errors(self) -> tuple[str, ...]:
        """Kernel lines from dm-verity (corruption reports)."""
        return tuple(line for line in self.lines if "device-mapper: verity" in line)


@dataclass(frozen=True, slots=True, kw_only=True)
class Boot:
    """A whole QEMU run: its attempts, how it ended and how long it took."""

    attempts: tuple[Attempt, ...]
    powered_off: bool
    timed_out: bool
    seconds: float
    transcript: Path

    @property
    def final(self) -> Attempt | None:
        """The last attempt (the one that powered off, in a good run)."""
        return self.attempts[-1] if self.attempts else None

    def as_json(self) -> dict[str, object]:
        """A JSON-friendly form."""
        return {
            "powered_off": self.powered_off,
            "timed_out": self.timed_out,
            "seconds": round(self.seconds, 1),
            "attempts": [
                {"number": a.number, "stage": a.stage.name.lower(), "ok": a.ok,
                 "version": a.version, "roothash": a.roothash, "verity": a.verity,
                 "data_device": a.data_device, "blessed": a.blessed, "failure": a.failure,
                 "seconds": round(a.seconds, 1), "lines": list(a.lines)}
                for a in self.attempts
            ],
        }  # fmt: skip


Listener = Callable[[int, Stage, str], None]


def check() -> None:
    """Refuse in one line when QEMU or OVMF is missing.

    Raises:
        HostError: ``host.tools``.
    """
    missing = [pkg for path, pkg in ((QEMU, "qemu-system-x86"), (OVMF_CODE, "ovmf"),
                                     (OVMF_VARS, "ovmf")) if not path.is_file()]  # fmt: skip
    if missing:
        raise HostError(
            f"Booting the lab's disk needs Debian packages: {', '.join(sorted(set(missing)))}",
            code="host.tools",
            hint="run `make demo` as root: scripts/install-deps.sh installs them",
        )


def _option_path(path: Path) -> str:
    """A path inside a QEMU ``key=value,...`` option (a comma is written twice)."""
    return os.fspath(path).replace(",", ",,")


def argv(disk: Path, vars_file: Path, *, reboots: bool, memory_mib: int = 512) -> list[str]:
    """The QEMU command line (no network device; serial console on stdout)."""
    return [
        os.fspath(QEMU), "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "1",
        "-m", str(memory_mib), "-nodefaults", "-display", "none", "-nic", "none",
        "-sandbox", "on", "-serial", "stdio",
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={_option_path(OVMF_CODE)}",
        "-drive", f"if=pflash,format=raw,unit=1,file={_option_path(vars_file)}",
        "-drive", f"if=virtio,format=raw,file={_option_path(disk)}",
        *([] if reboots else ["-no-reboot"]),
    ]  # fmt: skip


def _clean(raw: bytes) -> str:
    text = _ANSI.sub(b"", raw).decode("utf-8", "replace")
    return text if text.isascii() and text.isprintable() else display(text, limit=400)[1:-1]


@dataclass(slots=True)
class _Console:
    """Splits the console into attempts while QEMU runs (fed by the reader thread)."""

    listener: Listener | None
    start: float = field(default_factory=time.monotonic)
    attempts: list[tuple[int, Stage, list[str], float]] = field(default_factory=list)
    kept: int = 0

    def line(self, raw: bytes) -> None:
        text = _clean(raw).strip()
        if not text:
            return
        if text.startswith("BdsDxe: loading") or not self.attempts:
            self.attempts.append((len(self.attempts) + 1, Stage.FIRMWARE, [], time.monotonic()))
        number, stage, lines, began = self.attempts[-1]
        if self.kept < MAX_TRANSCRIPT:
            lines.append(text)
            self.kept += len(text)
        for marker, reached in _MARKERS:
            if text.startswith(marker) and reached > stage:
                stage = reached
        self.attempts[-1] = (number, stage, lines, began)
        if self.listener is not None:
            self.listener(number, stage, text)

    def result(self, end: float) -> tuple[Attempt, ...]:
        out = []
        for i, (number, stage, lines, began) in enumerate(self.attempts):
            until = self.attempts[i + 1][3] if i + 1 < len(self.attempts) else end
            out.append(
                Attempt(number=number, stage=stage, lines=tuple(lines), seconds=until - began)
            )
        return tuple(out)


def parse(raw: bytes) -> tuple[Attempt, ...]:
    """The attempts in a recorded console transcript (timings are meaningless here)."""
    console = _Console(None)
    for line in raw.split(b"\n"):
        console.line(line[:4096])
    return console.result(time.monotonic())


def _read(fd: int, console: _Console, transcript: Path) -> None:
    pending = b""
    written = 0
    with open(fd, "rb", buffering=0) as stream, open(transcript, "wb") as log:
        while chunk := stream.read(65536):
            if written < MAX_TRANSCRIPT:
                log.write(chunk[: MAX_TRANSCRIPT - written])
                written += len(chunk)
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                console.line(raw[:4096])
            pending = pending[-4096:]
        if pending:
            console.line(pending)


def boot(
    disk: Path,
    *,
    workdir: Path,
    timeout_s: float,
    reboots: bool = False,
    listener: Listener | None = None,
) -> Boot:
    """Boot ``disk`` until the guest powers off (or QEMU exits, or the timeout).

    Raises:
        HostError: QEMU or OVMF missing, or QEMU could not start.
    """
    check()
    workdir.mkdir(parents=True, exist_ok=True)
    vars_file = workdir / "OVMF_VARS.fd"
    shutil.copyfile(OVMF_VARS, vars_file)
    transcript = workdir / "serial.log"
    console = _Console(listener)
    read_fd, write_fd = os.pipe()
    reader = threading.Thread(target=_read, args=(read_fd, console, transcript), daemon=True)
    reader.start()
    try:
        with proc.spawn(argv(disk, vars_file, reboots=reboots), stdout=write_fd,
                        stderr=write_fd) as vm:  # fmt: skip
            os.close(write_fd)
            write_fd = -1
            status = proc.wait(vm, timeout=timeout_s)
            if status is None:
                proc.kill(vm)
    finally:
        if write_fd >= 0:
            os.close(write_fd)
    reader.join(timeout=30)
    end = time.monotonic()
    attempts = console.result(end)
    text = transcript.read_bytes()
    return Boot(
        attempts=attempts,
        powered_off=status == 0 and b"reboot: Power down" in text,
        timed_out=status is None,
        seconds=end - console.start,
        transcript=transcript,
    )
