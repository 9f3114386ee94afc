# SPDX-License-Identifier: MIT
"""Benchmark of `airlock agent`: payload bytes on a no-op rerun, bytes re-fetched after a cut.

Run from the repository root:

    PYTHONPATH=src python bench/agent.py [--root-mib 64]

Everything runs on 127.0.0.1 (`airlock serve` in this process, the agent as a child process) in
a temporary directory with a throwaway signing key; nothing is left behind.  Bytes are counted
from the server's own log (bytes written per file), not from the agent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from airlock.backends.openpgp import gpg
from airlock.formats import manifest
from airlock.release import render
from airlock.release.serve import Faults, ServeConfig, Server, serving

MIB = 1 << 20
UUID = "0123456789abcdef0123456789abcdef"


def publish(origin: Path, home: Path, fpr: str, root_bytes: int) -> dict[str, int]:
    files = {
        f"Spectrum_1_{UUID}.verity": root_bytes // 64,
        f"Spectrum_1_{UUID}.root": root_bytes,
        "Spectrum_1.efi": 4 * MIB,
    }
    entries = []
    for name, size in files.items():
        data = os.urandom(size)
        (origin / name).write_bytes(data)
        entries.append(
            manifest.Entry(name=name, sha256=hashlib.sha256(data).hexdigest(), binary=True)
        )
    raw = manifest.format(entries)
    (origin / "SHA256SUMS").write_bytes(raw)
    for name, armor in (("SHA256SUMS.sha256.asc", True), ("SHA256SUMS.gpg", False)):
        (origin / name).write_bytes(gpg.sign(raw, gnupghome=home, signer=fpr, armor=armor))
    return files


def make_share(root: Path, pubring: bytes, url: str) -> Path:
    share = root / "share"
    (share / "etc" / "vm-sysupdate.d").mkdir(parents=True)
    (share / "etc" / "systemd").mkdir()
    (share / "updates").mkdir()
    for src in sorted((render.default_templates() / "vm-sysupdate.d").glob("*.transfer")):
        shutil.copyfile(src, share / "etc" / "vm-sysupdate.d" / src.name)
    (share / "etc" / "systemd" / "import-pubring.gpg").write_bytes(pubring)
    (share / "etc" / "update-url").write_text(url + "\n")
    return share


def agent(share: Path) -> tuple[dict[str, object], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "airlock",
            "agent",
            "--share",
            os.fspath(share),
            "--json",
            "--timeout",
            "300",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"agent failed ({proc.returncode}): {proc.stderr}")
    return json.loads(proc.stdout.splitlines()[-1]), elapsed


def payload(srv: Server) -> int:
    return sum(n for k, n in srv.bytes_served().items() if not k.startswith("SHA256SUMS"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root-mib", type=int, default=64, help="size of the root image")
    args = parser.parse_args()
    root_bytes = args.root_mib * MIB
    with tempfile.TemporaryDirectory(prefix="airlock-bench-agent-") as tmp:
        t = Path(tmp)
        home = t / "gnupg"
        fpr = gpg.generate_key(home, "Bench <bench@example.invalid>")
        try:
            pubring = gpg.export_public(home, [fpr])
            origin = t / "origin"
            origin.mkdir()
            files = publish(origin, home, fpr, root_bytes)
            total = sum(files.values())
            rootfs = f"Spectrum_1_{UUID}.root"
            rows = []
            with serving(ServeConfig(root=origin)) as srv:
                share = make_share(t / "a", pubring, srv.url)
                first, t1 = agent(share)
                after_first = payload(srv)
                second, t2 = agent(share)
                noop_bytes = payload(srv) - after_first
            rows.append(("fresh download", first["outcome"], after_first, t1))
            rows.append(("no-op rerun", second["outcome"], noop_bytes, t2))
            faults = Faults(cut_after_bytes={rootfs: root_bytes // 2})
            with serving(ServeConfig(root=origin, faults=faults)) as srv:
                share = make_share(t / "b", pubring, srv.url)
                cut, t3 = agent(share)
                refetched = srv.bytes_served()[rootfs] - root_bytes
            rows.append(("cut at 50 % of the root image, resumed", cut["outcome"], refetched, t3))
        finally:
            gpg.kill_agent(home)
    print(f"release: {total} payload bytes ({len(files)} files, root image {root_bytes} bytes)")
    print("| run | outcome | payload bytes served | wall time |")
    print("|---|---|---|---|")
    for label, outcome, nbytes, secs in rows:
        print(f"| {label} | {outcome} | {nbytes} | {secs:.2f} s |")
    print(
        f"no-op payload bytes: {noop_bytes} (expect 0); re-fetched after the cut: {refetched} "
        f"(bound {MIB})"
    )
    return 0 if noop_bytes == 0 and refetched <= MIB else 1


if __name__ == "__main__":
    raise SystemExit(main())
