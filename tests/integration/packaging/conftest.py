# SPDX-License-Identifier: MIT
"""What the packaging tests share: ``make dist`` and ``make deb`` run once per session into a
temporary directory, and a clean Debian root with the package installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from airlock import __version__
from airlock.layout import Layout, values

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True, slots=True, kw_only=True)
class Dist:
    """The files ``make dist`` made."""

    sdist: Path
    wheel: Path


def make(*targets: str, **variables: str | Path) -> subprocess.CompletedProcess[str]:
    """``make TARGET… VAR=value…`` in the source tree with this test run's virtualenv.

    The virtualenv's stamp is declared up to date (``-o``), so no test ever runs pip.
    """
    venv = Path(sys.prefix)
    argv = [
        "make",
        "--no-print-directory",
        "-C",
        str(ROOT),
        "-o",
        str(venv / values()["VENV_STAMP"]),
    ]
    argv += [*targets, f"VENV={venv}", *(f"{k}={v}" for k, v in variables.items())]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """``make dist`` into a fresh directory (offline: the pinned tools, no build isolation)."""
    out = tmp_path_factory.mktemp("dist")
    done = make("dist", DIST=out)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return Dist(
        sdist=out / f"airlock-{__version__}.tar.gz",
        wheel=out / f"airlock-{__version__}-py3-none-any.whl",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DebRoot:
    """A throwaway Debian trixie root: an overlay on the shared runtime root (never modified).

    ``upper`` holds every change; each ``run`` mounts the overlay afresh in a private mount
    namespace that dies with it, so nothing stays mounted on the host.
    """

    base: Path
    lower: str  # overlay lower layers, top first, joined by ":"

    @property
    def upper(self) -> Path:
        """The overlay's writable layer (what the root has that the runtime has not)."""
        return self.base / "upper"

    def run(
        self, script: str, *, network: bool = False, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """``sh -c SCRIPT`` as root in the root, with a clean environment (no network: a new,
        empty network namespace)."""
        setup = (
            'mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" \\\n'
            '  "$2/root"\n'
            'for d in proc dev sys; do mount --rbind "/$d" "$2/root/$d"; done\n'
            'mount -t tmpfs tmpfs "$2/root/run"; mount -t tmpfs tmpfs "$2/root/tmp"\n'
            'exec chroot "$2/root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin '
            'LANG=C.UTF-8 HOME=/root TERM=dumb /bin/sh -c "$3"\n'
        )
        argv = ["unshare", "--mount", "--propagation", "private", "--fork"]
        argv += [] if network else ["--net"]
        argv += ["bash", "-euc", setup, "bash", self.lower, str(self.base), script]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def child(self, base: Path) -> DebRoot:
        """A copy-on-write root on top of this one (whose layers must not change meanwhile)."""
        return _layers(base, f"{self.upper}:{self.lower}")


def in_private_namespace(
    script: str, args: list[str], *, timeout: float
) -> subprocess.CompletedProcess[str]:
    """``bash -euc SCRIPT ARGS`` in a private mount namespace: its mounts die with it (and, if
    it is killed at the timeout, so does everything it started)."""
    argv = ["unshare", "--mount", "--propagation", "private", "--fork", "--kill-child"]
    argv += ["bash", "-euc", script, "bash", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def _layers(base: Path, lower: str) -> DebRoot:
    for d in ("upper", "work", "root"):
        (base / d).mkdir(parents=True)
    return DebRoot(base=base, lower=lower)


def debroot(base: Path) -> DebRoot:
    """An empty overlay of the trixie runtime root built by scripts/make-runtime.sh."""
    runtime = Layout.load().runtime()  # the default runtime: Debian trixie, systemd 257
    if not runtime.stamp.exists():
        pytest.fail(f"the trixie runtime {runtime.root} is not built (make runtime)")
    if ":" in str(runtime.root) or "," in str(runtime.root):
        pytest.fail(f"the runtime path {runtime.root} cannot be an overlay layer")
    return _layers(base, str(runtime.root))


@dataclass(frozen=True, slots=True, kw_only=True)
class Installed:
    """A clean trixie root with only airlock's .deb (and what it depends on) installed."""

    root: DebRoot
    deb: Path
    apt_log: str


@pytest.fixture(scope="session")
def installed(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """``make deb`` from ``dist``, then ``apt-get install ./airlock_*.deb`` in a clean root,
    offline: apt resolves the package's Depends from the trixie lists and installs them from the
    .debs scripts/fetch-debs.sh downloaded into its archive cache (an empty network namespace:
    any download would fail)."""
    built = subprocess.run(
        ["bash", str(ROOT / "scripts/make-deb.sh"), str(dist.wheel.parent)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-4000:]
    deb = Path(built.stdout.split()[-1])
    lay = Layout.load()
    if not any(p.name.startswith(lay.debs_stamp_prefix) for p in lay.debs.glob(".*")):
        pytest.fail(f"{lay.debs} is not filled (make debs)")
    root = debroot(tmp_path_factory.mktemp("debroot"))
    archives = root.upper / "var/cache/apt/archives"
    lists = root.upper / "var/lib/apt/lists"
    for target, source in ((archives, lay.debs / "archives"), (lists, lay.debs / "lists")):
        target.mkdir(parents=True)
        for f in source.iterdir():
            shutil.copy(f, target / f.name)
    (root.upper / "srv").mkdir()
    shutil.copy(deb, root.upper / "srv" / deb.name)
    done = root.run(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
        f"--no-install-recommends -o APT::Sandbox::User=root /srv/{deb.name} "
        "man-db bash-completion zsh"
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return Installed(root=root, deb=deb, apt_log=done.stdout)
