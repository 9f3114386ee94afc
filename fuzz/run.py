# SPDX-License-Identifier: MIT
"""Run one fuzz target, or all: ``python -m fuzz.run TARGET|all [--runs N] [options]``.

The runner writes the target's seeds to a private directory and starts itself again as a child
that loads the target under atheris's coverage instrumentation of ``airlock`` and hands it to
libFuzzer.  libFuzzer ends a run by calling ``exit()``, so only a parent can measure the wall
time, read libFuzzer's final statistics and remove what the run created (seeds, the scratch
directory of the ``tree`` target, and the corpus unless ``--corpus`` names one to keep).  Crash
inputs are written to ``--artifacts`` (default ``fuzz-crashes/``, created only when needed).

Prints one line per target: ``fuzz TARGET: execs=… wall_s=… execs_per_s=… new_units=…``; exits
with the first non-zero status of a child (a crash, a leak or a timeout), else 0.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from fuzz import TARGETS

_TARGETS_AND_CANARY = (*TARGETS, "canary")
_STAT = re.compile(rb"stat::(\w+):\s+(\d+)")


def _child(target: str, libfuzzer_args: Sequence[str]) -> None:
    """Load ``fuzz.TARGET`` with airlock instrumented and fuzz it (never returns)."""
    import atheris  # only the child needs it: the parent must not import airlock

    with atheris.instrument_imports(include=["airlock"]):
        module = importlib.import_module(f"fuzz.{target}")
    atheris.Setup([sys.argv[0], *libfuzzer_args], module.test_one)
    atheris.Fuzz()


def _write_seeds(target: str, directory: Path) -> tuple[int, int]:
    """Write the seeds; return their number and the target's largest useful input."""
    module = importlib.import_module(f"fuzz.{target}")
    count = 0
    for count, seed in enumerate(module.seeds(), start=1):
        (directory / f"seed-{count:04d}").write_bytes(seed)
    return count, int(getattr(module, "MAX_LEN", 4096))


def _run_one(target: str, opts: argparse.Namespace) -> int:
    """Fuzz ``target`` in a child; print its summary line; return the child's exit status."""
    shm = "/dev/shm"  # noqa: S108  # tmpfs: the tree target's files cost no disk I/O or sync
    where = shm if os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix=f"airlock-fuzz-{target}-", dir=where) as tmp:
        work = Path(tmp)
        seeds, scratch = work / "seeds", work / "scratch"
        seeds.mkdir()
        scratch.mkdir()
        corpus = Path(opts.corpus) / target if opts.corpus else work / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        artifacts = Path(opts.artifacts)
        artifacts.mkdir(parents=True, exist_ok=True)
        n_seeds, max_len = _write_seeds(target, seeds)
        inputs = [os.fspath(p) for p in opts.input] or [os.fspath(corpus), os.fspath(seeds)]
        argv = [
            sys.executable, "-m", "fuzz.run", "--child", target, "--",
            f"-runs={opts.runs}",
            f"-seed={opts.seed}",
            f"-max_len={opts.max_len or max_len}",
            f"-max_total_time={opts.max_time_s}",
            f"-timeout={opts.timeout_s}",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
            f"-artifact_prefix={os.fspath(artifacts)}/{target}-",
            *inputs,
        ]  # fmt: skip
        # Coverage's subprocess hook would trace the child: drop it, the run is about speed.
        env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
        env["AIRLOCK_FUZZ_TMP"] = os.fspath(scratch)
        start = time.monotonic()
        child = subprocess.run(argv, env=env, stderr=subprocess.PIPE, check=False)
        wall = time.monotonic() - start
        log = child.stderr
        if child.returncode != 0 or opts.verbose:
            sys.stderr.buffer.write(log[-20000:])
        stats = {k.decode(): int(v) for k, v in _STAT.findall(log)}
        execs = stats.get("number_of_executed_units", 0)
        print(
            f"fuzz {target}: status={child.returncode} execs={execs} wall_s={wall:.1f}"
            f" execs_per_s={execs / wall:.0f} seeds={n_seeds}"
            f" new_units={stats.get('new_units_added', 0)}"
            f" peak_rss_mb={stats.get('peak_rss_mb', 0)}",
            flush=True,
        )
    if not any(artifacts.iterdir()):
        artifacts.rmdir()
    return child.returncode


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the targets one at a time."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--child"]:
        _child(args[1], args[3:] if args[2:3] == ["--"] else args[2:])
        return 1  # not reached: libFuzzer exits
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n")[0])
    parser.add_argument("target", choices=(*_TARGETS_AND_CANARY, "all"))
    parser.add_argument("--runs", type=int, default=20000, help="executions per target")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed")
    parser.add_argument("--max-len", type=int, help="largest input in bytes (default: target's)")
    parser.add_argument("--max-time-s", type=int, default=0,
                        help="stop after this long even before --runs (0: no limit)")  # fmt: skip
    parser.add_argument("--timeout-s", type=int, default=20, help="slowest allowed input")
    parser.add_argument("--corpus", help="keep the corpus in CORPUS/TARGET (default: discard)")
    parser.add_argument("--artifacts", default="fuzz-crashes", help="where crash inputs go")
    once = "run only these inputs once (a regression check), no fuzzing"
    parser.add_argument("--input", type=Path, action="append", default=[], help=once)
    parser.add_argument("--verbose", action="store_true", help="show libFuzzer's log")
    opts = parser.parse_args(args)
    # A SIGTERM unwinds like an exception, so the scratch directories are removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    targets = TARGETS if opts.target == "all" else (opts.target,)
    for target in targets:
        status = _run_one(target, opts)
        if status != 0:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
