# SPDX-License-Identifier: MIT
"""Benchmark ``airlock inspect`` against ``openssl dgst -sha256`` on the same files (not a test).

Builds, in a temporary directory, a signed release of one 1 GiB file and one of two 512 MiB files,
then, for each, alternates runs of ``airlock inspect`` (the whole CLI: start-up, walk, signature
check, hashing) and of one ``openssl dgst -sha256`` process over the same files, with the page
cache warm.  Prints the median wall times and the ratio of throughputs (airlock / openssl; above 1
means airlock is faster).  Usage:

    PYTHONPATH=src python bench/inspection.py [--repeat 7] [--mib 1024] [--dir /var/tmp]

The in-process figure uses ``trusted.judge.Judge``, built as the pipeline and ``airlock inspect``
build it.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from airlock import fsutil
from airlock.backends.openpgp import gpg
from airlock.limits import Limits
from airlock.trusted.judge import Judge
from airlock.trusted.policy import Baseline, PolicyConfig

CHUNK = 4 << 20


def write_random(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(CHUNK, left))
            h.update(block)
            f.write(block)
            left -= len(block)
    return h.hexdigest()


def build(root: Path, names: dict[str, int], home: Path, fpr: str) -> tuple[Path, Path]:
    """A staging dir and a definitions dir for a release with one file per transfer."""
    staging = root / "staging"
    defs = root / "defs"
    staging.mkdir()
    defs.mkdir()
    lines = []
    for i, (stem, size) in enumerate(sorted(names.items())):
        (defs / f"{10 + i}-{stem}.transfer").write_text(
            "[Source]\nType=url-file\nPath=file:///run/updater\n"
            f"MatchPattern={stem}_@v.img\n\n"
            f"[Target]\nType=regular-file\nPath=/srv\nMatchPattern={stem}_@v.img\n"
        )
        name = f"{stem}_1.img"
        lines.append(f"{write_random(staging / name, size)} *{name}\n")
    raw = "".join(sorted(lines)).encode()
    (staging / "SHA256SUMS").write_bytes(raw)
    (staging / "SHA256SUMS.gpg").write_bytes(gpg.sign(raw, gnupghome=home, signer=fpr, armor=False))
    return staging, defs


def time_run(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return elapsed, proc.stdout


def judge_once(staging: Path, defs: Path, keyring: Path) -> float:
    """The judge in process (what the host pipeline runs): no interpreter start-up."""
    os_release = defs.parent / "os-release"
    os_release.write_text("")
    judge = Judge.build(
        definitions_dir=defs,
        os_release=os_release,
        keyring=keyring,
        policy=PolicyConfig(),
        limits=Limits(),
    )
    start = time.perf_counter()
    fd = os.open(staging, fsutil.DIR_FLAGS)
    try:
        judge.judge(fd, baseline=Baseline(), now=datetime.datetime.now(datetime.UTC))
    finally:
        os.close(fd)
    return time.perf_counter() - start


def bench(label: str, staging: Path, defs: Path, keyring: Path, repeat: int) -> dict[str, float]:
    files = sorted(p for p in staging.iterdir() if p.name.endswith(".img"))
    total = sum(p.stat().st_size for p in files)
    airlock = [
        sys.executable,
        "-m",
        "airlock",
        "inspect",
        os.fspath(staging),
        "--json",
        "--definitions",
        os.fspath(defs),
        "--keyring",
        os.fspath(keyring),
    ]
    openssl = ["openssl", "dgst", "-sha256", *map(os.fspath, files)]
    os.sync()  # write back the files just made, so that inspect's syncfs does not pay for it
    time_run(openssl)  # warm the page cache
    time_run(airlock)  # and the interpreter's
    ta: list[float] = []
    tj: list[float] = []
    to: list[float] = []
    for _ in range(repeat):
        t, out = time_run(airlock)
        assert json.loads(out)["bytes_hashed"] == total
        ta.append(t)
        to.append(time_run(openssl)[0])
        tj.append(judge_once(staging, defs, keyring))
    a, o, j = statistics.median(ta), statistics.median(to), statistics.median(tj)
    mib = total / (1 << 20)
    print(f"{label}: {len(files)} file(s), {mib:.0f} MiB, {repeat} runs each")
    print(f"  airlock inspect : median {a:.3f} s  ({mib / a:.0f} MiB/s)  runs {fmt(ta)}")
    print(f"  openssl dgst    : median {o:.3f} s  ({mib / o:.0f} MiB/s)  runs {fmt(to)}")
    print(f"  judge in process: median {j:.3f} s  ({mib / j:.0f} MiB/s)  runs {fmt(tj)}")
    print(f"  ratio (throughput airlock inspect / openssl): {o / a:.2f}")
    print(f"  ratio (throughput judge in process / openssl): {o / j:.2f}")
    return {"airlock_s": a, "openssl_s": o, "judge_s": j, "ratio": o / a}


def fmt(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--mib", type=int, default=1024, help="total MiB per release")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the files")
    args = parser.parse_args()
    size = args.mib << 20
    with tempfile.TemporaryDirectory(prefix="airlock-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        home = root / "gnupg"
        fpr = gpg.generate_key(home, "Bench <bench@example.invalid>")
        keyring = root / "keyring.gpg"
        keyring.write_bytes(gpg.export_public(home, [fpr]))
        print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()}")
        try:
            one = root / "one"
            one.mkdir()
            s1, d1 = build(one, {"a": size}, home, fpr)
            bench("one file", s1, d1, keyring, args.repeat)
            shutil.rmtree(one)
            two = root / "two"
            two.mkdir()
            s2, d2 = build(two, {"a": size // 2, "b": size // 2}, home, fpr)
            bench("two files", s2, d2, keyring, args.repeat)
        finally:
            gpg.kill_agent(home)
        print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
