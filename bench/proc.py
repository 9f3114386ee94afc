# SPDX-License-Identifier: MIT
"""Benchmark of ``airlock.proc``'s guard: what it costs to start a child that cannot outlive us.

Run from the repository root (root or an unprivileged user namespace; no network):

    PYTHONPATH=src python -P bench/proc.py [--calls 40] [--rounds 5]

Side by side in one run, interleaved round by round: ``subprocess.run(["/bin/true"])`` (a bare
fork and exec, what ``proc.run`` cost before the guard) against ``proc.run(["/bin/true"])`` (the
guard: a ``python3 -I -S`` start, a PID and a mount namespace, a fresh /proc, a pidfd).  Prints
the median per call of each round, the minimum over the rounds, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Callable

from airlock import proc


def _per_call(start: Callable[[], object], calls: int) -> float:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        start()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    bare: list[float] = []
    guarded: list[float] = []
    print(f"load average: {os.getloadavg()}")
    for _ in range(args.rounds):
        bare.append(_per_call(lambda: subprocess.run(["/bin/true"], check=True), args.calls))
        guarded.append(_per_call(lambda: proc.run(["/bin/true"], timeout=30), args.calls))
    for name, values in (("bare fork+exec", bare), ("proc.run (guarded)", guarded)):
        shown = ", ".join(f"{v * 1000:.1f}" for v in values)
        print(f"{name:20} median per call by round (ms): {shown}; min {min(values) * 1000:.1f}")
    print(f"guard cost per child: {(min(guarded) - min(bare)) * 1000:.1f} ms")
    print(f"ratio guarded/bare: {min(guarded) / min(bare):.1f}x")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
