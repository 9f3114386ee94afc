# SPDX-License-Identifier: MIT
"""Benchmark of the fetcher backends: wall time of a no-op fetch (sandbox vs qemu), same release.

Run from the repository root, as root, after `make guest`:

    PYTHONPATH=src python bench/fetchers.py [--runs 3] [--root-mib 16]

One signed release (throwaway key) is published once.  Each backend gets its own share, fetches
the release once (not timed), then runs the real `airlock agent` again `--runs` times; each of
those is a no-op ("nothing new") whose wall time, measured around `Fetcher.fetch()`, is reported.
The qemu backend reaches `airlock serve` on 127.0.0.1; the sandbox has no network of its own, so
it runs in a network namespace made here (no default route) with a second `airlock serve` of the
same directory on that namespace's loopback.  Everything is removed afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from airlock.backends.fetcher import FetchRequest
from airlock.backends.fetcher.qemu import QemuFetcher
from airlock.backends.fetcher.sandbox import SandboxConfig, SandboxFetcher
from airlock.backends.openpgp import gpg
from airlock.events import NullReporter
from airlock.formats import manifest
from airlock.release import render
from airlock.release.serve import ServeConfig, serving

MIB = 1 << 20
UUID = "0123456789abcdef0123456789abcdef"
SRC = Path(__file__).resolve().parents[1] / "src"
# The sandbox runs as nobody: Debian's python3 plus the venv's pure-Python httpx (read-only binds).
PYVER = f"python{sys.version_info[0]}.{sys.version_info[1]}"
SITE = Path(sys.prefix) / "lib" / PYVER / "site-packages"
BOOT = (
    "import sys; sys.path[:0] = sys.argv[1:3]; from airlock.cli import main; "
    "sys.exit(main(['agent', '--share', '/host', '--timeout', '120']))"
)
_SERVE = (
    "import sys, time\nfrom pathlib import Path\n"
    "from airlock.release.serve import ServeConfig, serving\n"
    "with serving(ServeConfig(root=Path(sys.argv[1]), port=8080)) as s:\n"
    "    print(s.url, flush=True)\n    time.sleep(3600)\n"
)


def publish(origin: Path, home: Path, fpr: str, root_bytes: int) -> None:
    files = {
        f"Spectrum_1_{UUID}.verity": root_bytes // 64,
        f"Spectrum_1_{UUID}.root": root_bytes,
        "Spectrum_1.efi": MIB,
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
    for p in (origin, *origin.iterdir()):
        p.chmod(0o755 if p.is_dir() else 0o644)


def make_share(root: Path, pubring: bytes, url: str) -> tuple[Path, Path]:
    etc, updates = root / "etc", root / "updates"
    (etc / "vm-sysupdate.d").mkdir(parents=True)
    (etc / "systemd").mkdir()
    updates.mkdir()
    for src in sorted((render.default_templates() / "vm-sysupdate.d").glob("*.transfer")):
        shutil.copyfile(src, etc / "vm-sysupdate.d" / src.name)
    (etc / "systemd" / "import-pubring.gpg").write_bytes(pubring)
    (etc / "update-url").write_text(url + "\n")
    for p in (root, *root.rglob("*")):
        if p != updates and p.parent != updates:
            p.chmod(0o755 if p.is_dir() else 0o644)
    return etc, updates


@contextmanager
def netns_server(origin: Path) -> Iterator[tuple[str, str]]:
    """A fresh network namespace (lo only, no default route) with `airlock serve` inside."""
    name = f"airlock-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    server = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        env = dict(os.environ, PYTHONPATH=os.fspath(SRC))
        server = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-c", _SERVE, os.fspath(origin)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert server.stdout is not None
        yield name, server.stdout.readline().strip()
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        subprocess.run(["ip", "netns", "delete", name], check=False)


def timed(
    fetcher: object, etc: Path, updates: Path, command: tuple[str, ...], log: Path, runs: int
) -> list[float]:
    request = FetchRequest(
        config_dir=etc, share=updates, timeout_s=300, command=command, log_path=log
    )
    fetcher.fetch(request, NullReporter())  # type: ignore[attr-defined]  # the download
    times = []
    for _ in range(runs):
        start = time.monotonic()
        fetcher.fetch(request, NullReporter())  # type: ignore[attr-defined]  # no-op
        times.append(time.monotonic() - start)
    if b"nothing new" not in log.read_bytes():
        raise SystemExit(f"the last run was not a no-op; see {log}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--root-mib", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="airlock-bench-fetchers-") as tmp:
        t = Path(tmp)
        t.chmod(0o755)
        home = t / "gnupg"
        fpr = gpg.generate_key(home, "Bench <bench@example.invalid>")
        try:
            pubring = gpg.export_public(home, [fpr])
            origin = t / "origin"
            origin.mkdir()
            publish(origin, home, fpr, args.root_mib * MIB)
            rows = []
            with netns_server(origin) as (ns, ns_url):
                etc, updates = make_share(t / "sandbox", pubring, ns_url)
                sandbox = SandboxFetcher(SandboxConfig(netns=ns, ro_binds=(SRC, SITE)))
                cmd = ("/usr/bin/python3", "-c", BOOT, os.fspath(SRC), os.fspath(SITE))
                rows.append(
                    ("sandbox", timed(sandbox, etc, updates, cmd, t / "sandbox.log", args.runs))
                )
            with serving(ServeConfig(root=origin)) as srv:
                etc, updates = make_share(t / "qemu", pubring, srv.url)
                cmd = ("/usr/bin/airlock", "agent", "--share", "/host", "--timeout", "120")
                rows.append(
                    (
                        "qemu (TCG)",
                        timed(QemuFetcher(), etc, updates, cmd, t / "qemu.log", args.runs),
                    )
                )
        finally:
            gpg.kill_agent(home)
    print(
        f"no-op fetch of a {args.root_mib} MiB release, {args.runs} runs each, "
        f"wall time around Fetcher.fetch()"
    )
    print(f"load average at the end: {os.getloadavg()}")
    print("| backend | median s | min s | max s |")
    print("|---|---|---|---|")
    for name, times in rows:
        print(f"| {name} | {statistics.median(times):.1f} | {min(times):.1f} | {max(times):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
