# SPDX-License-Identifier: MIT
"""The release verbs through the real CLI: exit statuses, one-line errors, JSON, serve."""

from __future__ import annotations

import datetime
import json
import os
import select
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from airlock.formats import blockindex, manifest
from tests.support import schemas
from tests.support.releases import ROOTHASH, SigningKey, payload, spectrum_names


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "airlock", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    schemas.check_output(args, done.stdout)
    return done


def one_line_error(r: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ")
    assert len([x for x in r.stderr.splitlines() if x.startswith("error:")]) == 1


def _images(tmp: Path) -> list[str]:
    for n in ("root", "verity", "uki"):
        (tmp / n).write_bytes(payload(2048, seed=n))
    return ["--root", str(tmp / "root"), "--verity", str(tmp / "verity"), "--uki", str(tmp / "uki")]


def test_publish_spectrum_mode_json(tmp_path: Path, key: SigningKey) -> None:
    rel = tmp_path / "rel"
    rel.mkdir()
    r = cli(
        "publish",
        str(rel),
        "--gnupghome",
        str(key.gnupghome),
        "--spectrum",
        "--version",
        "3.1",
        "--roothash",
        ROOTHASH,
        *_images(tmp_path),
        "--valid-for",
        "5",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["version"] == "3.1"
    assert sorted(out["added"]) == sorted(spectrum_names("3.1"))
    assert out["signers"] == [key.fingerprint]
    assert out["best_before"] is not None
    # Again: equal version → refused, exit 2, directory untouched.
    before = {n: (rel / n).read_bytes() for n in os.listdir(rel)}
    r = cli(
        "publish",
        str(rel),
        "--gnupghome",
        str(key.gnupghome),
        "--spectrum",
        "--version",
        "3.1",
        "--roothash",
        ROOTHASH,
        *_images(tmp_path),
    )
    assert r.returncode == 2
    one_line_error(r)
    assert {n: (rel / n).read_bytes() for n in os.listdir(rel)} == before


def test_publish_operands(tmp_path: Path, key: SigningKey) -> None:
    rel = tmp_path / "rel"
    rel.mkdir()
    srcs = []
    for name in spectrum_names("1"):
        (tmp_path / name).write_bytes(payload(100, seed=name))
        srcs.append(str(tmp_path / name))
    r = cli("publish", str(rel), *srcs, "--gnupghome", str(key.gnupghome))
    assert r.returncode == 0, r.stderr
    assert "published 1" in r.stdout


def test_publish_errors_are_one_line(tmp_path: Path, key: SigningKey) -> None:
    rel = tmp_path / "rel"
    rel.mkdir()
    (tmp_path / "x.bin").write_bytes(payload(100))
    cases = [
        (["publish", str(rel), str(tmp_path / "x.bin"), "--gnupghome", str(key.gnupghome)], 2),
        (["publish", str(rel), "--gnupghome", str(key.gnupghome), "--spectrum"], 2),
        (
            [
                "publish",
                str(rel),
                "--gnupghome",
                str(tmp_path / "nohome"),
                "--spectrum",
                "--version",
                "1",
                "--roothash",
                ROOTHASH,
                *_images(tmp_path),
            ],
            3,
        ),
        (
            [
                "publish",
                str(rel),
                "--gnupghome",
                str(key.gnupghome),
                "--signer",
                "nobody",
                "--spectrum",
                "--version",
                "1",
                "--roothash",
                ROOTHASH,
                *_images(tmp_path),
            ],
            3,
        ),
        (["publish", str(rel), "--gnupghome", str(key.gnupghome), "--keep", "0"], 2),
    ]
    for args, status in cases:
        r = cli(*args)
        assert r.returncode == status, (args, r.stderr)
        one_line_error(r)
    assert os.listdir(rel) == []


def test_render_and_keygen_cli(tmp_path: Path) -> None:
    r = cli("keygen", str(tmp_path / "k"), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    try:
        r = cli(
            "render",
            "--version",
            "2",
            "--update-url",
            "https://u.example.invalid/x",
            "--signing-key",
            info["pubring"],
            "--out",
            str(tmp_path / "o"),
        )
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "o/etc/update-url").read_text() == "https://u.example.invalid/x\n"
        r = cli(
            "render",
            "--version",
            "2",
            "--update-url",
            "https://u.example.invalid/x?",
            "--signing-key",
            info["pubring"],
            "--out",
            str(tmp_path / "o2"),
        )
        assert r.returncode == 2
        one_line_error(r)
        assert not (tmp_path / "o2").exists()
    finally:
        subprocess.run(
            ["gpgconf", "--kill", "gpg-agent"],
            check=False,
            timeout=30,
            env={**os.environ, "GNUPGHOME": info["gnupghome"]},
        )


def test_serve_cli_with_faults(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a").write_bytes(b"a" * 1000)
    (root / "b").write_bytes(b"b" * 10)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airlock",
            "serve",
            str(root),
            "--port",
            "0",
            "--fail",
            "b=500",
            "--log",
            str(tmp_path / "log"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert select.select([proc.stdout], [], [], 20)[0]
        url = proc.stdout.readline().strip().rsplit(" at ", 1)[1]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/a", timeout=10) as resp:  # noqa: S310 - loopback
            assert resp.read() == b"a" * 1000
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url + "/b", timeout=10)  # noqa: S310 - loopback
        assert info.value.code == 500
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_bad_fault_spec() -> None:
    r = cli("serve", ".", "--cut", "nonumber")
    assert r.returncode == 2
    one_line_error(r)


SPECTRUM_VM = Path(__file__).resolve().parents[2] / "data/spectrum/vm"


def test_publish_accepts_spectrum_s_vm_transfer_templates_as_they_are(
    tmp_path: Path, key: SigningKey
) -> None:
    # Path=@UPDATE_URL@ is what the VM substitutes; a publisher needs only the patterns (#13).
    assert "Path=@UPDATE_URL@" in (SPECTRUM_VM / "60-root.transfer").read_text()
    rel = tmp_path / "rel"
    srcs = []
    for name in spectrum_names("3"):
        (tmp_path / name).write_bytes(payload(1024, seed=name))
        srcs.append(str(tmp_path / name))
    r = cli(
        "publish", str(rel), *srcs, "--gnupghome", str(key.gnupghome),
        "--definitions", str(SPECTRUM_VM), "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    indexes = [n + blockindex.SUFFIX for n in spectrum_names("3")]  # publish indexes each image
    assert sorted(os.listdir(rel)) == sorted(
        [*spectrum_names("3"), *indexes, "SHA256SUMS", "SHA256SUMS.gpg", "SHA256SUMS.sha256.asc"]
    )


def test_negative_control_a_name_spectrum_s_vm_templates_do_not_match_is_refused(
    tmp_path: Path, key: SigningKey
) -> None:
    (tmp_path / "Spectrum_3.img").write_bytes(b"x")
    r = cli(
        "publish", str(tmp_path / "rel"), str(tmp_path / "Spectrum_3.img"),
        "--gnupghome", str(key.gnupghome), "--definitions", str(SPECTRUM_VM),
    )  # fmt: skip
    assert r.returncode != 0
    one_line_error(r)
    assert "Spectrum_3.img" in r.stderr


def test_publish_writes_a_seven_day_best_before_unless_told_not_to(
    tmp_path: Path, key: SigningKey
) -> None:
    # docs/adr/0155: a marker by default; --no-best-before for Spectrum-compatible manifests.
    srcs = []
    for name in spectrum_names("1"):
        (tmp_path / name).write_bytes(payload(100, seed=name))
        srcs.append(str(tmp_path / name))
    for extra, days in (((), 7), (("--valid-for", "30"), 30), (("--no-best-before",), None)):
        rel = tmp_path / f"rel-{days}"
        rel.mkdir()
        r = cli("publish", str(rel), *srcs, "--gnupghome", str(key.gnupghome), "--json", *extra)
        assert r.returncode == 0, r.stderr
        best = manifest.parse((rel / "SHA256SUMS").read_bytes()).best_before
        today = datetime.datetime.now(datetime.UTC).date()
        assert best == (None if days is None else today + datetime.timedelta(days=days))
        assert json.loads(r.stdout)["best_before"] == (best.isoformat() if best else None)
    both = cli("publish", str(tmp_path / "rel-7"), *srcs, "--gnupghome", str(key.gnupghome),
               "--valid-for", "3", "--no-best-before")  # fmt: skip
    assert both.returncode == 2
