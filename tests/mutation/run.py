# SPDX-License-Identifier: MIT
"""Mutation check: remove each guard in a throwaway copy of ``src/`` and require its tests to fail.

Usage (as root, like the privileged suite; ``make mutation`` runs it)::

    python -m tests.mutation.run [NAME ...] [--list] [--no-baseline] [--keep]

For every mutation of ``tests/mutation/catalogue.py`` (or the named ones): copy ``src/`` into a
temporary directory, replace the mutation's snippet (it must occur exactly once), check that
``import airlock`` now resolves to the copy, and run the mutation's tests with ``PYTHONPATH``
pointing at it (CLI subprocesses inherit it).  pytest must exit 1 (tests failed): the mutant is
*killed*.  Exit 0 means the tests did not notice the missing guard (*survived*); anything else
(collection error, usage error, no tests) is an *error*.  First, unless ``--no-baseline``, the
union of the tests runs against the unmodified source and must pass, so a test that fails anyway
cannot pass for a kill.  Exit status: 0 when every mutant was killed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.mutation.catalogue import MUTATIONS, Mutation

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x"]
TIMEOUT_S = 1800


class MutationError(Exception):
    """The mutation cannot be applied or checked."""


def apply(mutation: Mutation, src: Path) -> None:
    """Replace the snippet in the copy under ``src`` (exactly one occurrence required)."""
    path = src / "airlock" / mutation.path
    text = path.read_text()
    found = text.count(mutation.find)
    if found != 1:
        raise MutationError(
            f"{mutation.name}: {mutation.find!r} occurs {found} times in {mutation.path}"
        )
    path.write_text(text.replace(mutation.find, mutation.replace))


def _env(src: Path | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.fspath(src), os.environ.get("PYTHONPATH", "")) if p
        )
    return env


def _check_import(src: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import airlock; print(airlock.__file__)"],
        cwd=REPO, env=_env(src), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if not done.stdout.strip().startswith(os.fspath(src)):
        raise MutationError(f"airlock is imported from {done.stdout.strip()!r}, not the copy")


def run_tests(tests: tuple[str, ...], src: Path | None) -> tuple[int, str]:
    """pytest on ``tests`` against ``src`` (``None``: the repository); (exit status, output)."""
    done = subprocess.run(
        [*PYTEST, *tests],
        cwd=REPO, env=_env(src), capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def first_failure(output: str) -> str:
    """The first ``FAILED`` (or ``ERROR``) line of pytest's short summary, shortened."""
    for line in output.splitlines():
        if re.match(r"(FAILED|ERROR) ", line):
            return line[:300]
    return "(no FAILED line)"


def check(mutation: Mutation, *, keep: bool) -> tuple[str, str]:
    """Apply ``mutation`` to a fresh copy and run its tests: (verdict, detail)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"airlock-mutant-{mutation.name}-"))
    try:
        src = tmp / "src"
        shutil.copytree(SRC, src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        apply(mutation, src)
        _check_import(src)
        status, output = run_tests(mutation.tests, src)
    except MutationError as exc:
        return "ERROR", str(exc)
    finally:
        if keep:
            print(f"  (kept {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if status == 1:
        return "killed", first_failure(output)
    if status == 0:
        return "SURVIVED", "the tests passed without the guard"
    return "ERROR", f"pytest exit status {status}: {output.strip().splitlines()[-1:]}"


def main(argv: list[str] | None = None) -> int:
    """Run the mutation check; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m tests.mutation.run")
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument("--keep", action="store_true", help="keep the mutated copies")
    args = parser.parse_args(argv)
    by_name = {m.name: m for m in MUTATIONS}
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(unknown)}")
    chosen = [by_name[n] for n in args.names] or list(MUTATIONS)
    if args.list:
        for m in chosen:
            print(f"{m.name:30} {m.path:24} {m.guard}")
        return 0
    if not args.no_baseline:
        tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        start = time.monotonic()
        status, output = run_tests(tests, None)
        print(f"baseline (unmodified source): exit {status} in {time.monotonic() - start:.0f} s")
        if status != 0:
            print(output[-4000:])
            return 1
    failed = 0
    for m in chosen:
        start = time.monotonic()
        verdict, detail = check(m, keep=args.keep)
        failed += verdict != "killed"
        print(f"{m.name:30} {verdict:8} {time.monotonic() - start:5.0f} s  {detail}")
    print(f"{len(chosen) - failed} of {len(chosen)} mutants killed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
