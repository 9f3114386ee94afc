# SPDX-License-Identifier: MIT
"""Benchmark ``airlock inspect`` against ``openssl dgst -sha256`` on the same files (not a test).

Builds, in a temporary directory, four signed releases and, for each, alternates rounds (page
cache warm) of ``airlock inspect`` (the whole CLI: start-up, walk, signature check, hashing), one
``openssl dgst -sha256`` process over the same payload files and the judge in process
(``trusted.judge.Judge``, built as the pipeline and ``airlock inspect`` build it):

* ``one``: one 1 GiB file; ``two``: two 512 MiB files (``SHA256SUMS.gpg`` only);
* ``spectrum``: Spectrum's shape published with ``airlock publish --spectrum`` — a 1 GiB root
  image, a 32 MiB verity file, an 8 MiB UKI and both signature files (``SHA256SUMS.gpg``,
  ``SHA256SUMS.sha256.asc``), judged against Spectrum's host transfers;
* ``tiny``: the same with 4 KiB files: the CLI's fixed cost, side by side with ``python3 -c pass``
  (the interpreter alone) and ``openssl``.

Prints medians, the ratios (throughput airlock / openssl: above 1 means airlock is faster; for
``tiny``, airlock's time over ``python -c pass``) and the load average before and after.  With
``--baseline SRC`` (another checkout's ``src``, e.g. main's) the same ``airlock inspect`` is also
run from that tree in every round, so old and new code are timed side by side.  Usage:

    PYTHONPATH=src python bench/inspection.py [--repeat 7] [--mib 1024] [--dir /var/tmp]
        [--shapes one,two,spectrum,tiny] [--baseline ../main/src]

Python's bytecode cache is allowed for the child processes (``PYTHONDONTWRITEBYTECODE`` is
removed from their environment), as on an installed host.
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
from collections.abc import Callable
from pathlib import Path

from airlock import fsutil
from airlock.backends.openpgp import gpg
from airlock.limits import Limits
from airlock.release import publish, render
from airlock.trusted.judge import Judge
from airlock.trusted.policy import Baseline, PolicyConfig

CHUNK = 4 << 20
MIB = 1 << 20
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
OS_RELEASE = Path("/etc/os-release")


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


def build_spectrum(root: Path, sizes: tuple[int, int, int], home: Path) -> tuple[Path, Path]:
    """Spectrum's shape, published as ``airlock publish --spectrum`` does (both signatures)."""
    src = root / "src"
    src.mkdir()
    for name, size in zip(("root", "verity", "uki"), sizes, strict=True):
        write_random(src / name, size)
    staging = root / "staging"
    artifacts = publish.spectrum_artifacts(
        ver="1.0", roothash="ab" * 32, root=src / "root", verity=src / "verity", uki=src / "uki"
    )
    publish.publish(staging, artifacts, gnupghome=home)
    shutil.rmtree(src)
    for index in staging.glob("*.blocks"):  # delta indexes: the VM's, never in the host's share
        index.unlink()
    return staging, render.default_templates() / "sysupdate.d"


def time_run(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=600, env=env or ENV
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return elapsed, proc.stdout


def judge_once(staging: Path, defs: Path, keyring: Path) -> float:
    """The judge in process (what the host pipeline runs): no interpreter start-up."""
    judge = Judge.build(
        definitions_dir=defs,
        os_release=OS_RELEASE,
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


def bench(
    label: str, staging: Path, defs: Path, keyring: Path, repeat: int, baseline: Path | None = None
) -> dict[str, float]:
    files = sorted(
        p for p in staging.iterdir() if p.is_file() and not p.name.startswith("SHA256SUMS")
    )
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
    bare = [sys.executable, "-c", "pass"]
    os.sync()  # write back the files just made, so that inspect's syncfs does not pay for it
    time_run(openssl)  # warm the page cache
    time_run(airlock)  # and the interpreter's (bytecode)
    runs: dict[str, list[float]] = {"inspect": [], "openssl": [], "judge": [], "python": []}
    load = [os.getloadavg()[0]]
    steps: list[tuple[str, Callable[[], float]]] = [
        ("inspect", lambda: _inspect(airlock, total)),
        ("openssl", lambda: time_run(openssl)[0]),
        ("judge", lambda: judge_once(staging, defs, keyring)),
        ("python", lambda: time_run(bare)[0]),
    ]
    if baseline is not None:
        old = {**ENV, "PYTHONPATH": os.fspath(baseline.absolute())}
        time_run(airlock, old)  # its bytecode too
        runs["baseline"] = []
        steps.insert(1, ("baseline", lambda: _inspect(airlock, total, old)))
    for _ in range(repeat):
        for name, step in steps:
            runs[name].append(step())
    load.append(os.getloadavg()[0])
    med = {k: statistics.median(v) for k, v in runs.items()}
    a, o, j, p = med["inspect"], med["openssl"], med["judge"], med["python"]
    mib = total / MIB
    sigs = sorted(p.name for p in staging.glob("SHA256SUMS.*"))
    print(f"{label}: {len(files)} file(s), {mib:.2f} MiB, signatures {', '.join(sigs)};")
    print(f"  {repeat} alternating rounds, load average {load[0]:.2f} -> {load[1]:.2f}")
    for name, value in med.items():
        print(f"  {name:8s}: median {value:.3f} s  runs {fmt(runs[name])}")
    print(f"  ratio inspect / openssl (throughput): {o / a:.2f}")
    print(f"  ratio judge in process / openssl (throughput): {o / j:.2f}")
    print(f"  inspect over python -c pass: {a / p:.2f}x (+{a - p:.3f} s)")
    if baseline is not None:
        b = med["baseline"]
        print(f"  ratio baseline ({baseline}) / openssl (throughput): {o / b:.2f}")
        print(f"  baseline over python -c pass: {b / p:.2f}x (+{b - p:.3f} s)")
        print(f"  inspect / baseline: {a / b:.2f} ({a - b:+.3f} s)")
    return {"inspect_s": a, "openssl_s": o, "judge_s": j, "python_s": p}


def _inspect(argv: list[str], total: int, env: dict[str, str] | None = None) -> float:
    t, out = time_run(argv, env)
    body = json.loads(out)
    assert body["accepted"] and body["bytes_hashed"] == total, out[:300]
    return t


def fmt(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--mib", type=int, default=1024, help="MiB of the large payload")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the files")
    parser.add_argument("--shapes", default="one,two,spectrum,tiny")
    parser.add_argument(
        "--baseline", type=Path, default=None, help="another src tree to time side by side"
    )
    args = parser.parse_args()
    shapes = args.shapes.split(",")
    size = args.mib * MIB
    with tempfile.TemporaryDirectory(prefix="airlock-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        home = root / "gnupg"
        fpr = gpg.generate_key(home, "Bench <bench@example.invalid>")
        keyring = root / "keyring.gpg"
        keyring.write_bytes(gpg.export_public(home, [fpr]))
        print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()}")
        builders: dict[str, Callable[[Path], tuple[Path, Path]]] = {
            "one": lambda d: build(d, {"a": size}, home, fpr),
            "two": lambda d: build(d, {"a": size // 2, "b": size // 2}, home, fpr),
            "spectrum": lambda d: build_spectrum(d, (size, 32 * MIB, 8 * MIB), home),
            "tiny": lambda d: build_spectrum(d, (4096, 4096, 4096), home),
        }
        try:
            for shape in shapes:
                work = root / shape
                work.mkdir()
                staging, defs = builders[shape](work)
                bench(shape, staging, defs, keyring, args.repeat, args.baseline)
                shutil.rmtree(work)
        finally:
            gpg.kill_agent(home)
        print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
