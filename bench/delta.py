# SPDX-License-Identifier: MIT
# ruff: noqa: E402 - sys.path must be fixed before anything imports the stdlib inspect module
"""Benchmark of delta downloads (issue #17): bytes the agent fetches vs the lower bound and zsync.

Workloads (each an (old, new) release pair, published with ``airlock publish``, which writes the
block indexes):

* **erofs-*** — a ~158 MB tree (``usr/bin``, ``usr/sbin``, ``usr/lib`` of the trixie runtime that
  ``make test`` builds), and a copy in which files holding 1 % of the bytes changed (files picked
  by a seeded RNG; ``rewrite``: new content of a size up to 4 KiB larger or smaller, as a rebuilt
  binary; ``patch``: an 8-byte edit every 16 KiB, same size).  Both become EROFS images with
  ``mkfs.erofs`` (uncompressed, and ``-zlz4hc``), each with its dm-verity tree; the kernel image
  is the same small file in both.
* **demo-*** — the lab's releases 1.0 → 2.0 → 3.0 (``airlock.lab.images``: EROFS root, verity,
  UKI made by ukify when the runtime has it).

For each pair, in the same run: the lower bounds and zsync's figure (``bench/blockmatch.py``),
then the real ``airlock agent`` (a child process) with the old release in ``updates/`` against
``airlock serve`` and against nginx, both on 127.0.0.1; fetched bytes are counted from each
server's own log (payload ranges plus the block indexes), and the wall time of the delta run is
set beside a ``--no-delta`` run on the same share.  Nothing is left behind.

    PYTHONPATH=src python -P bench/delta.py [--workloads erofs,demo] [--dir /var/tmp]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds inspect.py, which would shadow the standard library's inspect module.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.append(str(Path(__file__).resolve().parent))  # after the stdlib: for blockmatch only

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import blockmatch

from airlock.backends.apply import runtime as runtime_mod
from airlock.backends.openpgp import gpg
from airlock.formats import blockindex
from airlock.lab import images, nginx
from airlock.layout import Layout
from airlock.release import publish, render
from airlock.release.serve import Faults, ServeConfig, serving

KERNEL = b"AIRLOCK-BENCH kernel stand-in\n" * 4096
UUID_FS = "5bd5a1a3-0000-4000-8000-000000000001"


@dataclass(frozen=True, slots=True, kw_only=True)
class Release:
    version: str
    root: Path
    verity: Path
    roothash: str
    kernel: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class Pair:
    label: str
    old: Release
    new: Release


def sh(*argv: object, timeout: float = 600) -> None:
    subprocess.run([str(a) for a in argv], check=True, timeout=timeout, capture_output=True)


# --- workloads --------------------------------------------------------------------------------


def source_tree() -> Path:
    usr = Layout.load().runtime().root / "usr"
    if not (usr / "lib").is_dir():
        raise SystemExit(f"no runtime tree at {usr}: run make test (or make runtime) first")
    return usr


def mutate(tree: Path, fraction: float, model: str, seed: int) -> tuple[int, int, int]:
    """Change files holding ``fraction`` of the bytes; (files, bytes changed, bytes total)."""
    files = sorted(
        p
        for p in tree.rglob("*")
        if p.is_file() and not p.is_symlink() and p.stat().st_nlink == 1 and p.stat().st_size
    )
    total = sum(p.stat().st_size for p in files)
    rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not a secret
    rng.shuffle(files)
    changed = count = 0
    for p in files:
        if changed >= fraction * total:
            break
        data = bytearray(p.read_bytes())
        if model == "rewrite":
            data = bytearray(rng.randbytes(max(1, len(data) + rng.randint(-4096, 4096))))
        else:
            for off in range(rng.randrange(16384), len(data), 16384):
                data[off : off + 8] = rng.randbytes(8)
        changed += p.stat().st_size
        count += 1
        p.write_bytes(bytes(data))
    return count, changed, total


def erofs_release(work: Path, tree: Path, version: str, comp: str) -> Release:
    root = work / f"root-{version}.img"
    args: list[object] = ["mkfs.erofs", "-T0", "--all-root", "-U", UUID_FS, "--quiet"]
    if comp:
        args.append(f"-z{comp}")
    sh(*args, root, tree)
    verity = work / f"verity-{version}.img"
    roothash = images.build_verity(root, verity)
    kernel = work / f"kernel-{version}.efi"
    kernel.write_bytes(KERNEL)
    return Release(version=version, root=root, verity=verity, roothash=roothash, kernel=kernel)


def erofs_pairs(work: Path, models: list[str], seed: int, only: str) -> Iterator[Pair]:
    usr = source_tree()
    base = work / "tree-old"
    base.mkdir()
    for sub in ("bin", "sbin", "lib"):
        sh("cp", "-a", usr / sub, base / sub)
    for model in models:
        changed = work / f"tree-{model}"
        sh("cp", "-a", base, changed)
        files, nbytes, total = mutate(changed, 0.01, model, seed)
        print(f"# {model}: changed {files} files holding {nbytes} of {total} bytes "
              f"({100 * nbytes / total:.2f} %)", flush=True)  # fmt: skip
        for comp in ("", "lz4hc"):
            if only and only not in f"erofs {model} {comp or 'uncompressed'}":
                continue
            d = work / f"erofs-{model}-{comp or 'none'}"
            d.mkdir()
            old = erofs_release(d, base, "1", comp)
            new = erofs_release(d, changed, "2", comp)
            yield Pair(label=f"erofs {model} {comp or 'uncompressed'}", old=old, new=new)
        shutil.rmtree(changed)


def demo_pairs(work: Path) -> Iterator[Pair]:
    runtime = runtime_mod.locate()
    built = {}
    for v in ("1.0", "2.0", "3.0"):
        im = images.build(work / "demo", v, runtime=runtime.root)
        built[v] = Release(
            version=v, root=im.root, verity=im.verity, roothash=im.roothash, kernel=im.kernel
        )
    yield Pair(label="demo 1.0 -> 2.0", old=built["1.0"], new=built["2.0"])
    yield Pair(label="demo 2.0 -> 3.0", old=built["2.0"], new=built["3.0"])


# --- publishing and the agent -----------------------------------------------------------------


def artifacts(r: Release) -> tuple[publish.Artifact, ...]:
    return publish.spectrum_artifacts(
        ver=r.version, roothash=r.roothash, root=r.root, verity=r.verity, uki=r.kernel
    )


def make_share(work: Path, pubring: bytes, url: str, old: Release) -> Path:
    share = work / "share"
    shutil.rmtree(share, ignore_errors=True)
    (share / "etc" / "vm-sysupdate.d").mkdir(parents=True)
    (share / "etc" / "systemd").mkdir()
    (share / "updates").mkdir()
    for src in sorted((render.default_templates() / "vm-sysupdate.d").glob("*.transfer")):
        shutil.copyfile(src, share / "etc" / "vm-sysupdate.d" / src.name)
    (share / "etc" / "systemd" / "import-pubring.gpg").write_bytes(pubring)
    (share / "etc" / "update-url").write_text(url + "\n")
    for art in artifacts(old):  # what the previous run left: the seeds
        shutil.copyfile(art.source, share / "updates" / art.name)
    return share


def agent(share: Path, *extra: str) -> tuple[dict[str, object], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "airlock", "agent", "--share", str(share), "--json",
         "--timeout", "600", *extra],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"agent failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.splitlines()[-1]), elapsed


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    server: str
    fetched: int  # payload bytes of the new release + its block indexes, from the server log
    index: int
    requests: int
    reused: int
    delta_s: float
    whole_s: float


def fetched_by(served: dict[str, int], new_names: set[str]) -> tuple[int, int]:
    payload = sum(n for k, n in served.items() if k in new_names)
    index = sum(n for k, n in served.items() if k.removesuffix(blockindex.SUFFIX) in new_names
                and k.endswith(blockindex.SUFFIX))  # fmt: skip
    return payload + index, index


def run_pair(
    work: Path, pair: Pair, home: Path, fpr: str, pubring: bytes, rtt_ms: int
) -> list[Run]:
    origin = work / "origin"
    shutil.rmtree(origin, ignore_errors=True)
    publish.publish(origin, artifacts(pair.old), gnupghome=home, signers=[fpr])
    publish.publish(origin, artifacts(pair.new), gnupghome=home, signers=[fpr])
    new_names = {a.name for a in artifacts(pair.new)}
    runs = []
    servers = ["serve", "nginx"] + ([f"serve, {rtt_ms} ms per answer"] if rtt_ms else [])
    for server in servers:
        delay = Faults(delay_s={"*": rtt_ms / 1000}) if "ms" in server else Faults()
        ctx = (
            nginx.serving(nginx.NginxConfig(root=origin, workdir=work / "nginx"))
            if server == "nginx"
            else serving(ServeConfig(root=origin, faults=delay))
        )
        with ctx as srv:
            share = make_share(work, pubring, srv.url, pair.old)
            result, delta_s = agent(share)
            served = srv.bytes_served()
            requests = len([r for r in srv.requests() if r["path"] in new_names])
            share = make_share(work, pubring, srv.url, pair.old)
            _, whole_s = agent(share, "--no-delta")
        shutil.rmtree(work / "nginx", ignore_errors=True)
        fetched, index = fetched_by(served, new_names)
        runs.append(Run(server=server, fetched=fetched, index=index, requests=requests,
                        reused=int(str(result["reused_bytes"])), delta_s=delta_s,
                        whole_s=whole_s))  # fmt: skip
    return runs


# --- report ------------------------------------------------------------------------------------


def analyse(pair: Pair) -> dict[str, blockmatch.PairFigures]:
    out = {}
    for kind in ("root", "verity", "kernel"):
        old = getattr(pair.old, kind).read_bytes()
        new = getattr(pair.new, kind).read_bytes()
        out[kind] = blockmatch.figures(old, new)
    return out


def report(pair: Pair, figs: dict[str, blockmatch.PairFigures], runs: list[Run]) -> bool:
    size = sum(f.new_bytes for f in figs.values())
    bound = sum(f.aligned_bound for f in figs.values())
    anyoff = sum(f.any_offset_bound for f in figs.values())
    zsync = sum(f.zsync_bytes for f in figs.values())
    root = figs["root"]
    print(f"\n## {pair.label}: new release {size} bytes (root {root.new_bytes})")
    print(f"lower bound (4 KiB blocks absent, aligned): {bound} ({100 * bound / size:.2f} %); "
          f"absent at any byte offset: {anyoff}; zsync model: {zsync} "
          f"({100 * zsync / size:.2f} %, root block {root.zsync_block}, control "
          f"{sum(f.zsync_control for f in figs.values())})")  # fmt: skip
    print("| server | fetched | / bound | / zsync | index % of image | requests | reused | "
          "delta run s | whole-file run s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    ok = True
    for r in runs:
        ratio_bound = r.fetched / bound if bound else float("inf")
        ratio_zsync = r.fetched / zsync
        index_pct = 100 * r.index / size
        print(f"| {r.server} | {r.fetched} | {ratio_bound:.3f} | {ratio_zsync:.3f} | "
              f"{index_pct:.2f} | {r.requests} | {r.reused} | {r.delta_s:.2f} | "
              f"{r.whole_s:.2f} |")  # fmt: skip
        ok &= r.fetched <= 1.1 * bound and r.fetched < zsync and index_pct <= 1.0
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="erofs,demo")
    parser.add_argument("--models", default="rewrite,patch")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--only", default="", help="run only pairs whose label contains this")
    parser.add_argument(
        "--rtt-ms", type=int, default=0, help="also run against a server that waits this long"
    )
    parser.add_argument("--dir", default="/var/tmp")  # noqa: S108 - a parent for mkdtemp
    args = parser.parse_args()
    print(f"# load average at start: {os.getloadavg()}", flush=True)
    all_ok = True
    with tempfile.TemporaryDirectory(prefix="airlock-bench-delta-", dir=args.dir) as tmp:
        work = Path(tmp)
        home = work / "gnupg"
        fpr = gpg.generate_key(home, "Bench <bench@example.invalid>")
        try:
            pubring = gpg.export_public(home, [fpr])
            pairs: list[Iterator[Pair]] = []
            if "erofs" in args.workloads:
                pairs.append(erofs_pairs(work, args.models.split(","), args.seed, args.only))
            if "demo" in args.workloads:
                pairs.append(demo_pairs(work))
            for group in pairs:
                for pair in group:
                    if args.only not in pair.label:
                        continue
                    figs = analyse(pair)
                    runs = run_pair(work, pair, home, fpr, pubring, args.rtt_ms)
                    all_ok &= report(pair, figs, runs)
        finally:
            gpg.kill_agent(home)
    print(f"\n# load average at end: {os.getloadavg()}")
    print("goals (<= 1.1 x bound, < zsync, index <= 1 %):", "met" if all_ok else "NOT met")
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
