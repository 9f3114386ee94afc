# SPDX-License-Identifier: MIT
"""``make dist``: an sdist that is the whole source and a wheel that works without it.

The wheel is installed into a fresh virtualenv outside the source tree (no pip, no network: the
virtualenv of this test run lends only the third-party libraries, through a ``.pth`` line that
does not activate its editable airlock); the installed ``airlock`` then renders Spectrum's files
from the templates inside the wheel and finds the QEMU guest's init there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

from airlock import __version__
from tests.integration.packaging.conftest import ROOT, Dist

SRC = ROOT / "src" / "airlock"
DATA = ("layout.env", "lab/guest/init", "release/templates")


def _package_files() -> set[str]:
    """Every file of the package in the source tree that must be in the wheel."""
    out = set()
    for path in SRC.rglob("*"):
        rel = path.relative_to(SRC).as_posix()
        if path.is_file() and "__pycache__" not in path.parts:
            if path.suffix == ".py" or any(rel == d or rel.startswith(d + "/") for d in DATA):
                out.add(f"airlock/{rel}")
    return out


def test_wheel_carries_every_module_the_templates_and_the_guest_init(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as whl:
        names = set(whl.namelist())
        entry_points = whl.read(f"airlock-{__version__}.dist-info/entry_points.txt").decode()
        init_mode = whl.getinfo("airlock/lab/guest/init").external_attr >> 16
    missing = _package_files() - names
    assert not missing, f"not in the wheel: {sorted(missing)}"
    assert "airlock/release/templates/sysupdate.d/60-root.transfer" in names
    assert init_mode & 0o111, "the guest's init lost its executable bit"
    assert "airlock = airlock.cli:main" in entry_points
    assert "spectrum-update = airlock.cli:spectrum_update_main" in entry_points


def test_wheel_carries_the_man_pages_and_completions_for_the_prefix(dist: Dist) -> None:
    data = f"airlock-{__version__}.data/data/share/"
    wanted = {
        "man/man8/airlock.8": "packaging/man/airlock.8",
        "man/man8/spectrum-update.8": "packaging/man/spectrum-update.8",
        "man/man5/airlock.toml.5": "packaging/man/airlock.toml.5",
        "bash-completion/completions/airlock": "packaging/completions/airlock",
        "zsh/site-functions/_airlock": "packaging/completions/_airlock",
    }
    with zipfile.ZipFile(dist.wheel) as whl:
        for inside, source in wanted.items():
            assert whl.read(data + inside) == (ROOT / source).read_bytes(), inside


def test_sdist_is_the_whole_tracked_source(dist: Dist) -> None:
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    # Only the CI driver and git's own files stay out: the sdist builds, tests and packages.
    wanted = {f for f in tracked if not f.startswith((".ci/", ".git"))}
    with tarfile.open(dist.sdist) as sdist:
        prefix = f"airlock-{__version__}/"
        names = {m.name.removeprefix(prefix) for m in sdist.getmembers() if m.isfile()}
    missing = wanted - names
    assert not missing, f"tracked but not in the sdist: {sorted(missing)[:20]}"


def _fresh_venv(where: Path, wheel: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(where / "bin/python"), "install", "-q",
         "--no-index", "--no-deps", "--disable-pip-version-check", str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    # rich and httpx from this run's virtualenv: a plain path line, so its .pth files (the
    # editable airlock's finder among them) are not processed.
    site = Path(sysconfig.get_paths()["purelib"])
    lib = next((where / "lib").glob("python3*/site-packages"))
    (lib / "zz-test-libraries.pth").write_text(f"{site}\n")
    return where


def test_installed_wheel_renders_from_its_own_templates(dist: Dist, tmp_path: Path) -> None:
    venv = _fresh_venv(tmp_path / "venv", dist.wheel)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": str(tmp_path)}

    def run(*argv: str | Path) -> str:
        done = subprocess.run(
            [str(a) for a in argv], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    assert run(venv / "bin/airlock", "--version").strip() == f"airlock {__version__}"
    where = run(venv / "bin/python", "-c", "import airlock; print(airlock.__file__)").strip()
    assert Path(where).is_relative_to(venv), f"airlock imported from {where}, not the wheel"
    init = run(
        venv / "bin/python",
        "-c",
        "from importlib import resources; print(resources.files('airlock.lab')"
        ".joinpath('guest/init').read_text().splitlines()[0])",
    )
    assert init.startswith("#!")
    run(venv / "bin/airlock", "keygen", tmp_path / "key")
    out = tmp_path / "out"
    run(venv / "bin/airlock", "render", "--version", "2.0",
        "--update-url", "https://updates.example.invalid/spectrum",
        "--signing-key", tmp_path / "key/import-pubring.gpg", "--out", out)  # fmt: skip
    for name in ("50-verity.transfer", "60-root.transfer", "70-kernel.transfer"):
        shipped = SRC / "release/templates/vm-sysupdate.d" / name
        assert (out / "etc/vm-sysupdate.d" / name).read_bytes() == shipped.read_bytes()
        assert (out / "etc/sysupdate.d" / name).is_file()
    assert "IMAGE_VERSION=2.0" in (out / "etc/os-release").read_text()
    assert os.listdir(tmp_path / "venv/bin").count("spectrum-update") == 1
    assert (venv / "share/man/man8/airlock.8").is_file()
