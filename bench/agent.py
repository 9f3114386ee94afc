# SPDX-License-Identifier: MIT
"""Benchmark of `airlock agent`: transport speed against curl, no-op reruns, resuming after a cut.

Run from the repository root:

    PYTHONPATH=src python -P bench/agent.py [--root-mib 64] [--line-rate-mib 1024 --rounds 5]

1. **Line rate** (``--line-rate-mib``, default 1024; 0 skips it): a release of that many MiB in
   all (random bytes; root, verity, UKI) served by nginx on 127.0.0.1; alternately, ``--rounds``
   times: ``curl -o`` of the three files followed by ``sync`` of those files, and a fresh
   ``airlock agent`` run (a child process: start-up, manifest and both signatures fetched and
   verified, each file received, hashed, fsynced and renamed).  Before each run the previous
   download is deleted and the file system synced.  Prints the medians and curl / agent.
2. **Bytes** (``--root-mib``): fresh download, no-op rerun and a resume after a cut connection,
   against ``airlock serve``; bytes are counted from the server's own log, not from the agent.

Everything runs on 127.0.0.1 in a temporary directory with a throwaway signing key; nothing is
left behind.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from airlock.backends.openpgp import gpg
from airlock.formats import manifest
from airlock.lab import nginx
from airlock.release import render
from airlock.release.serve import Faults, ServeConfig, Server, serving

MIB = 1 << 20
UUID = "0123456789abcdef0123456789abcdef"


def publish(
    origin: Path, home: Path, fpr: str, root_bytes: int, *, total: int = 0
) -> dict[str, int]:
    files = {
        f"Spectrum_1_{UUID}.verity": root_bytes // 64,
        f"Spectrum_1_{UUID}.root": root_bytes,
        "Spectrum_1.efi": 4 * MIB,
    }
    if total:  # the three files add up to exactly ``total`` bytes
        files[f"Spectrum_1_{UUID}.root"] = total - files["Spectrum_1.efi"] - total // 64
        files[f"Spectrum_1_{UUID}.verity"] = total // 64
    entries = []
    for name, size in files.items():
        digest = hashlib.sha256()
        with open(origin / name, "wb") as fh:
            left = size
            while left:
                chunk = os.urandom(min(left, 16 * MIB))
                fh.write(chunk)
                digest.update(chunk)
                left -= len(chunk)
        entries.append(manifest.Entry(name=name, sha256=digest.hexdigest(), binary=True))
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


def drop_caches_of(directory: Path) -> None:
    for entry in directory.iterdir():
        entry.unlink()
    subprocess.run(["sync"], check=True, timeout=600)


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def curl_and_sync(url: str, names: list[str], out: Path) -> float:
    started = time.monotonic()
    for name in names:
        subprocess.run(
            ["curl", "-sS", "--fail", "-o", str(out / name), f"{url}/{name}"],
            check=True,
            timeout=600,
        )
    subprocess.run(["sync", *(str(out / n) for n in names)], check=True, timeout=600)
    return time.monotonic() - started


def line_rate(t: Path, home: Path, fpr: str, pubring: bytes, mib: int, rounds: int) -> bool:
    origin = t / "line-origin"
    origin.mkdir()
    files = publish(origin, home, fpr, 0, total=mib * MIB)
    names = sorted(files)
    out = t / "curl-out"
    out.mkdir()
    curl_s: list[float] = []
    agent_s: list[float] = []
    curl_cpu: list[float] = []
    agent_cpu: list[float] = []
    loads = [os.getloadavg()[0]]
    with nginx.serving(nginx.NginxConfig(root=origin, workdir=t / "nginx")) as web:
        share = make_share(t / "line", pubring, web.url)
        for _ in range(rounds):
            drop_caches_of(out)
            cpu = cpu_of_children()
            curl_s.append(curl_and_sync(web.url, names, out))
            curl_cpu.append(cpu_of_children() - cpu)
            drop_caches_of(share / "updates")
            cpu = cpu_of_children()
            result, elapsed = agent(share)
            agent_cpu.append(cpu_of_children() - cpu)
            assert result["outcome"] == "downloaded", result
            agent_s.append(elapsed)
            loads.append(os.getloadavg()[0])
        drop_caches_of(out)
        drop_caches_of(share / "updates")
    c, a = statistics.median(curl_s), statistics.median(agent_s)
    load = f"{min(loads):.1f}-{max(loads):.1f}"
    print(f"line rate: {sum(files.values())} bytes in {len(files)} files, nginx on 127.0.0.1, "
          f"{rounds} alternating rounds; load average (1 min) {load}")  # fmt: skip
    print("| run | curl -o + sync, s (CPU s) | airlock agent, s (CPU s) | curl / agent |")
    print("|---|---|---|---|")
    for i, (x, y, xc, yc) in enumerate(zip(curl_s, agent_s, curl_cpu, agent_cpu, strict=True), 1):
        print(f"| {i} | {x:.2f} ({xc:.2f}) | {y:.2f} ({yc:.2f}) | {x / y:.2f} |")
    cc, ac = statistics.median(curl_cpu), statistics.median(agent_cpu)
    print(f"| median | {c:.2f} ({cc:.2f}) | {a:.2f} ({ac:.2f}) | **{c / a:.2f}** |")
    return c / a >= 0.9


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
    parser.add_argument("--line-rate-mib", type=int, default=1024, help="0: skip that part")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root_bytes = args.root_mib * MIB
    with tempfile.TemporaryDirectory(prefix="airlock-bench-agent-") as tmp:
        t = Path(tmp)
        home = t / "gnupg"
        fpr = gpg.generate_key(home, "Bench <bench@example.invalid>")
        try:
            pubring = gpg.export_public(home, [fpr])
            fast = True
            if args.line_rate_mib:
                fast = line_rate(t, home, fpr, pubring, args.line_rate_mib, args.rounds)
                shutil.rmtree(t / "line-origin")
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
    return 0 if noop_bytes == 0 and refetched <= MIB and fast else 1


if __name__ == "__main__":
    raise SystemExit(main())
