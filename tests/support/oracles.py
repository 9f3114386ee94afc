# SPDX-License-Identifier: MIT
"""Oracles pinned to the systemds the product applies with: one per runtime.

The differential and oracle tests must ask a systemd that ``airlock update`` really runs —
``airlock.backends.apply.runtime.locate(choice=NAME)``: the host's systemd-sysupdate if it is that
very version, else the runtime root of that name (257: Debian trixie, 262: Debian testing) —
never whatever ``systemd-analyze`` the test machine has on ``PATH`` (Debian 12: 252).
``RUNTIMES`` names the runtimes under test (every runtime ``layout.env`` declares); the session
fixture ``systemd_runtime`` is parametrized over it, so every oracle and differential test runs
against each, and ``tests/integration/test_runtime_pinning.py`` checks that the runtime the product
picks by default is one of them.

``VersionOracle`` is one long-lived process *inside* a runtime (its own ``python3``, chrooted
unless the runtime is the host) that answers batches of comparisons over a pipe: ``cli`` runs the
runtime's ``systemd-analyze compare-versions`` once per pair (the real command, exit 0/11/12),
``lib`` calls ``strverscmp_improved`` in the runtime's ``libsystemd-shared-<major>.so`` (the same
C function, thousands of pairs per second).  Starting one ``chroot`` per pair would cost a process
tree per comparison.

Privilege: ``chroot`` needs ``CAP_SYS_CHROOT`` in the caller's user namespace only.  The
unprivileged suite (``scripts/run-tests.sh``) is root of its own user namespace with no
capability on the host, so the oracle runs there too; a caller that is not root at all gets a
user namespace of its own (``unshare --user --map-root-user``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

from airlock import proc
from airlock.backends.apply import runtime
from airlock.backends.apply.runtime import Bind
from airlock.layout import Layout
from tests.support import probes

#: The runtimes every oracle test runs against: each runtime ``layout.env`` declares.
RUNTIMES: tuple[str, ...] = tuple(b.name for b in Layout.load().runtimes)

_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

# Runs inside the runtime under its own python3 with -I -S: standard library only.  One JSON
# request per line on stdin, one JSON answer per line on stdout; byte strings travel as hex.
_SERVER = r"""
import ctypes, glob, json, os, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
ANALYZE = "/usr/bin/systemd-analyze"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
major = sys.argv[1]
libs = glob.glob("/usr/lib/*/systemd/libsystemd-shared-" + major + ".so")
lib = ctypes.CDLL(libs[0]) if len(libs) == 1 else None
if lib is not None:
    lib.strverscmp_improved.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.strverscmp_improved.restype = ctypes.c_int
def cli(pair):
    a, b = (bytes.fromhex(x) for x in pair)
    done = subprocess.run([ANALYZE, "compare-versions", "--", a, b], env=ENV,
                          capture_output=True, timeout=60)
    return [done.returncode, done.stdout.hex(), done.stderr.hex()]
def version(_):
    done = subprocess.run([ANALYZE, "--version"], env=ENV, capture_output=True, timeout=60)
    return {"analyze": done.stdout.decode("utf-8", "replace").split("\n")[0], "libs": libs}
pool = ThreadPoolExecutor(max_workers=int(sys.argv[2]))
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "cli":
        out = list(pool.map(cli, req["pairs"]))
    elif req["op"] == "lib":
        if lib is None:
            raise SystemExit("no libsystemd-shared-" + major + ".so: " + repr(libs))
        out = [lib.strverscmp_improved(*(bytes.fromhex(x) for x in p)) for p in req["pairs"]]
    else:
        out = version(None)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
"""

_STATUS = {0: 0, 11: 1, 12: -1}


def resolve(name: str) -> runtime.Runtime:
    """The runtime called ``name`` in ``RUNTIMES``, as the product would locate it.

    Raises:
        HostError: ``host.sysupdate`` when it is not available (the probe says so first).
    """
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}")
    return runtime.locate(choice=name)


def in_runtime(rt: runtime.Runtime, argv: Sequence[str]) -> list[str]:
    """``argv`` (paths inside the runtime) run in ``rt``: chrooted unless it is the host."""
    cmd = list(argv)
    if rt.chrooted:
        cmd = ["chroot", os.fspath(rt.root), *cmd]
        if os.geteuid() != 0:
            cmd = ["unshare", "--user", "--map-root-user", "--", *cmd]
    return cmd


#: Where ``sysupdate`` binds a test's work directory (read-only): a directory that exists both in
#: the runtime roots and on a host with its own systemd-sysupdate (``Runtime.run`` binds over
#: existing host paths only, inside its private mount namespace).
WORK = "/srv"


def sysupdate(
    rt: runtime.Runtime,
    work: Path,
    *args: str,
    writable: Sequence[Path] = (),
    os_release: Path | None = None,
    timeout: float = 60,
) -> proc.Completed:
    """``systemd-sysupdate --no-pager ARGS`` exactly as the product runs it (``Runtime.run``).

    ``work`` is bound read-only at ``WORK``; each of ``writable`` read-write at its own path;
    ``os_release`` (as the product binds the host's) over the runtime's ``/usr/lib/os-release``.
    """
    binds = [Bind(source=work, target=WORK, read_only=True)]
    binds += [Bind(source=p, target=os.fspath(p), read_only=False) for p in writable]
    if os_release is not None:
        binds.append(Bind(source=os_release, target="/usr/lib/os-release", read_only=True))
    return rt.run(list(args), binds=binds, timeout=timeout)


def _encode(pairs: Sequence[tuple[str, str]]) -> list[list[str]]:
    return [[s.encode("utf-8", "surrogateescape").hex() for s in pair] for pair in pairs]


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What ``systemd-analyze compare-versions A B`` said: -1, 0 or 1 and its output line."""

    order: int
    line: str


class VersionOracle:
    """One process inside ``rt`` answering version comparisons (see the module docstring)."""

    def __init__(self, rt: runtime.Runtime, *, workers: int = 2) -> None:
        self.runtime = rt
        argv = ["/usr/bin/python3", "-I", "-S", "-c", _SERVER, str(rt.version), str(workers)]
        self._proc = subprocess.Popen(
            in_runtime(rt, argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_ENV,
        )
        info = self._ask({"op": "version"})
        assert isinstance(info, dict)
        #: First line of the runtime's ``systemd-analyze --version``, e.g. ``systemd 257 (…)``.
        self.systemd: str = info["analyze"]
        self.library: list[str] = info["libs"]
        found = re.match(r"systemd (\d+)", self.systemd)
        if found is None or int(found.group(1)) != rt.version:
            self.close()
            raise AssertionError(
                f"the runtime's systemd-analyze says {self.systemd!r}, its sysupdate {rt.version}"
            )

    def _ask(self, request: dict[str, object]) -> object:
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        try:
            self._proc.stdin.write(json.dumps(request).encode() + b"\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._proc.stdout.readline()
        if not line:
            self._proc.kill()
            _, err = self._proc.communicate(timeout=30)
            raise AssertionError(f"the version oracle died: {err.decode(errors='replace')}")
        return json.loads(line)

    def cli(self, pairs: Sequence[tuple[str, str]]) -> list[Answer]:
        """``systemd-analyze compare-versions -- A B`` for every pair (order: sign of A - B)."""
        raw = self._ask({"op": "cli", "pairs": _encode(pairs)})
        assert isinstance(raw, list)
        answers = []
        for (a, b), (status, out, err) in zip(pairs, raw, strict=True):
            if status not in _STATUS:
                raise AssertionError(
                    f"compare-versions {a!r} {b!r} exited {status}: {bytes.fromhex(err)!r}"
                )
            line = bytes.fromhex(out).decode("utf-8", "surrogateescape").rstrip("\n")
            answers.append(Answer(order=_STATUS[status], line=line))
        return answers

    def lib(self, pairs: Sequence[tuple[str, str]]) -> list[int]:
        """``strverscmp_improved(A, B)`` of the runtime's libsystemd-shared, as -1/0/1."""
        raw = self._ask({"op": "lib", "pairs": _encode(pairs)})
        assert isinstance(raw, list)
        return [(r > 0) - (r < 0) for r in raw]

    def close(self) -> None:
        """Stop the process (closing its stdin ends its loop)."""
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> VersionOracle:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def require_runtime(name: str) -> runtime.Runtime:
    """The runtime ``name``; skip (fail under ``AIRLOCK_REQUIRE_ROOT=1``) when it is unusable."""
    why = probes.sysupdate_named(name)
    if why is not None:
        if os.environ.get("AIRLOCK_REQUIRE_ROOT") == "1":
            pytest.fail(f"required systemd-sysupdate runtime {name} missing: {why}", pytrace=False)
        pytest.skip(f"needs systemd-sysupdate runtime {name}: {why}")
    return resolve(name)


@pytest.fixture(scope="session", params=RUNTIMES)
def systemd_runtime(request: pytest.FixtureRequest) -> runtime.Runtime:
    """Each runtime under test in turn (use with the ``sysupdate`` marker)."""
    return require_runtime(str(request.param))


@pytest.fixture(scope="session")
def version_oracle(systemd_runtime: runtime.Runtime) -> Iterator[VersionOracle]:
    """A ``VersionOracle`` inside each runtime under test, started once per session."""
    with VersionOracle(systemd_runtime) as oracle:
        yield oracle
