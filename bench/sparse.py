# SPDX-License-Identifier: MIT
"""Benchmark: what refusing a sparse payload saves over hashing it (ADR 0160; not a test).

Makes, in a temporary directory under ``--dir``, one sparse file of ``--gib`` GiB named as a root
image (``truncate``: no data written), then alternates ``--repeat`` times:

* the walk (``untrusted.walk.walk``, ``fstatat`` of every entry), which refuses it with
  ``reject.sparse`` before opening it — what the judge does now;
* hashing it (``untrusted.hashing.hash_files``), which the judge did before the sparse rule, only
  to find the digest wrong.

Prints the medians and their ratio.  Usage:

    PYTHONPATH=src python bench/sparse.py [--gib 1] [--repeat 5] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from airlock import fsutil
from airlock.errors import InspectionError
from airlock.limits import Limits
from airlock.untrusted import hashing, walk

NAME = "Spectrum_2_0123456789abcdef0123456789abcdef.root"


def _refuse(fd: int) -> float:
    start = time.perf_counter()
    try:
        walk.walk(fd, limits=Limits())
    except InspectionError as exc:
        if exc.code != "reject.sparse":
            raise
    else:
        raise SystemExit("the walk accepted a sparse file")
    return time.perf_counter() - start


def _hash(fd: int, path: str) -> float:
    st = os.stat(path)
    listed = walk.ListedFile(name=NAME, size=st.st_size, dev=st.st_dev, ino=st.st_ino)
    start = time.perf_counter()
    hashing.hash_files(fd, [listed], limits=Limits())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="airlock-bench-sparse-", dir=args.dir) as d:
        path = os.path.join(d, NAME)
        with open(path, "wb") as fh:
            fh.truncate(args.gib << 30)
        fd = os.open(d, fsutil.DIR_FLAGS)
        try:
            refused, hashed = [], []
            for _ in range(args.repeat):
                refused.append(_refuse(fd))
                hashed.append(_hash(fd, path))
        finally:
            os.close(fd)
    r, h = statistics.median(refused), statistics.median(hashed)
    print(f"{args.gib} GiB sparse file, {args.repeat} rounds, load {os.getloadavg()[0]:.1f}")
    print(f"  refused by the walk: median {r * 1000:.3f} ms")
    print(f"  hashed in full:      median {h:.3f} s ({args.gib / h:.2f} GiB/s)")
    print(f"  hashing / refusing:  {h / r:.0f}x")


if __name__ == "__main__":
    main()
