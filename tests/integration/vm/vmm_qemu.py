# SPDX-License-Identifier: MIT
"""A stand-in VMM program for the Spectrum tests: boots the real QEMU guest on Spectrum's share.

Run by the s6 ``vmm`` instance inside the VM's mount namespace, it serves ``<fs>/etc`` read-only
and ``<fs>/updates`` writable to a real guest, like cloud-hypervisor + virtiofsd do in Spectrum.
Usage: vmm_qemu.py FS_DIR GUEST_DIR TIMEOUT_S COMMAND...
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from airlock.backends.fetcher import FetchRequest
from airlock.backends.fetcher.qemu import QemuConfig, QemuFetcher
from airlock.errors import AirlockError
from airlock.events import NullReporter


def main(argv: list[str]) -> int:
    fs, guest_dir, timeout_s, command = Path(argv[0]), Path(argv[1]), float(argv[2]), argv[3:]
    request = FetchRequest(
        config_dir=fs / "etc",
        share=fs / "updates",
        timeout_s=timeout_s,
        command=tuple(command),
        log_path=fs.parent / f"{fs.name}.console" if os.environ.get("AIRLOCK_VMM_LOG") else None,
    )
    try:
        QemuFetcher(QemuConfig(guest_dir=guest_dir)).fetch(request, NullReporter())
    except AirlockError as exc:
        print(f"vmm: {exc.message}", flush=True)
        return 1
    print("vmm: guest powered off", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
