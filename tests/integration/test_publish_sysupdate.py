# SPDX-License-Identifier: MIT
"""Acceptance: the REAL systemd-sysupdate (257 and 262) installs what ``airlock publish`` made, and
refuses it after tampering.

The release is Spectrum-named and signed by ``publish``; the transfer files are Spectrum's VM
files as ``airlock render`` writes them (``@UPDATE_URL@`` replaced, as the update VM does), with
``Verify=yes`` and the published keyring bound over every keyring path the version reads (as the
update VM's own sysupdate would find it).  Each case runs once over ``file://`` and once over
HTTP from ``airlock serve``, with the server and sysupdate both inside a fresh network namespace
that has only ``lo`` and no route, against each runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import airlock
from airlock.backends.apply.runtime import Runtime
from airlock.formats import dialect, manifest
from airlock.release import render
from tests.support.releases import SigningKey, make_key, make_release, payload, spectrum_names

pytestmark = [pytest.mark.sysupdate, pytest.mark.timeout(300)]

PYTHONPATH = os.fspath(Path(airlock.__file__).resolve().parents[1])
REPO = Path(PYTHONPATH).parent
SIZE = 64 * 1024
DRIVER = """
import json, sys
from pathlib import Path
from airlock.backends.apply import runtime
spec = json.loads(sys.argv[1])
binds = [runtime.Bind(source=Path(s), target=t, read_only=ro) for s, t, ro in spec["binds"]]
res = runtime.locate(choice=spec["runtime"]).run(spec["args"], binds=binds, timeout=spec["timeout"])
print(json.dumps({"rc": res.returncode, "out": res.stdout.decode(errors="replace"),
                  "err": res.stderr.decode(errors="replace")}))
"""
CASES = ("good", "payload-byte", "manifest-line", "wrong-key", "missing-signature")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SigningKey, SigningKey]]:
    base = tmp_path_factory.mktemp("keys")
    good, other = make_key(base / "good"), make_key(base / "other", uid="Other <o@x.invalid>")
    yield good, other
    good.close()
    other.close()


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, keys: tuple[SigningKey, SigningKey]) -> Path:
    """Two published versions; sysupdate must pick 1.1."""
    rel = tmp_path_factory.mktemp("release") / "rel"
    make_release(rel, "1.0", None, keys[0])
    make_release(rel, "1.1", dict.fromkeys(spectrum_names("1.1"), SIZE), keys[0], valid_for_days=30)
    return rel


def tamper(case: str, src: Path, dst: Path) -> None:
    """Copy the release to ``dst`` and apply one attack."""
    shutil.copytree(src, dst)
    root = dst / spectrum_names("1.1")[0]
    efi = dst / spectrum_names("1.1")[2]
    if case == "payload-byte":
        data = bytearray(root.read_bytes())
        data[SIZE // 2] ^= 0x01
        root.write_bytes(bytes(data))
    elif case == "manifest-line":
        # The attacker's best move: swap a payload AND fix its line; only the signature objects.
        evil = payload(SIZE, seed="evil")
        efi.write_bytes(evil)
        raw = (dst / "SHA256SUMS").read_bytes()
        old = manifest.parse(raw).get(efi.name)
        assert old is not None
        (dst / "SHA256SUMS").write_bytes(
            raw.replace(old.sha256.encode(), hashlib.sha256(evil).hexdigest().encode())
        )
    elif case == "missing-signature":
        (dst / "SHA256SUMS.gpg").unlink()


def definitions(out: Path, url: str, key: Path) -> Path:
    """Spectrum's VM transfer files from ``airlock render``, URL substituted as the VM does."""
    files = render.plan(
        ver="1.0",
        update_url="https://placeholder.invalid/x",
        key=key.read_bytes(),
        templates=render.default_templates(),
    )
    defs = out / "defs"
    defs.mkdir(parents=True)
    for rel, data in files.items():
        if rel.startswith("etc/vm-sysupdate.d/"):
            text = data.decode().replace("@UPDATE_URL@", url)
            assert "Verify=yes" in text
            (defs / Path(rel).name).write_text(text)
    assert len(list(defs.iterdir())) == 3
    return defs


def keyring_binds(rt: Runtime, keyring: Path) -> list[tuple[str, str, bool]]:
    """The keyring over every path ``rt``'s sysupdate reads (the vendor one masked too)."""
    return [(os.fspath(keyring), t, True) for t in dialect.for_version(rt.version).keyrings]


def sysupdate(
    rt: Runtime,
    args: list[str],
    binds: list[tuple[str, str, bool]],
    netns: str | None = None,
) -> dict[str, object]:
    spec = json.dumps({"args": args, "binds": binds, "timeout": 120, "runtime": rt.name})
    argv = [sys.executable, "-c", DRIVER, spec]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    r = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env, check=False)
    assert r.returncode == 0, r.stderr
    result: dict[str, object] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"airlock-rel-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=30)
        routes = subprocess.run(
            ["ip", "-n", name, "route", "show", "default"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        assert routes.strip() == ""  # loopback only: no default route
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True, timeout=30)


def start_server(netns: str, root: Path, log: Path) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            "-m",
            "airlock",
            "serve",
            os.fspath(root),
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--log",
            os.fspath(log),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
    )
    assert server.stdout is not None
    ready, _, _ = select.select([server.stdout], [], [], 20)
    if not ready:
        server.kill()
        server.wait()
        pytest.fail("airlock serve did not start")
    line = server.stdout.readline().strip()
    assert " at http://127.0.0.1:" in line, line
    return server, line.rsplit(" at ", 1)[1]


@pytest.mark.parametrize("transport", ["file", "http"])
@pytest.mark.parametrize("case", CASES)
def test_sysupdate_installs_published_release_and_refuses_tampering(
    systemd_runtime: Runtime,
    tmp_path: Path,
    release: Path,
    keys: tuple[SigningKey, SigningKey],
    case: str,
    transport: str,
    request: pytest.FixtureRequest,
) -> None:
    served = tmp_path / "served"
    tamper(case, release, served)
    keyring = keys[1].pubring if case == "wrong-key" else keys[0].pubring
    dst = tmp_path / "dst"
    dst.mkdir()
    token = uuid.uuid4().hex[:8]
    base = f"/srv/airlock-release-{token}"
    server = None
    ns = None
    try:
        if transport == "http":
            ns = request.getfixturevalue("netns")
            server, url = start_server(ns, served, tmp_path / "serve.jsonl")
        else:
            url = f"file://{base}/rel"
        defs = definitions(tmp_path, url, keyring)
        binds = [
            (os.fspath(served), f"{base}/rel", True),
            (os.fspath(defs), f"{base}/defs", True),
            *keyring_binds(systemd_runtime, keyring),
            (os.fspath(dst), "/host/updates", False),
        ]
        res = sysupdate(systemd_runtime, [f"--definitions={base}/defs", "update"], binds, netns=ns)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
    err = str(res["err"])
    installed = sorted(os.listdir(dst))
    rules = dialect.for_version(systemd_runtime.version)
    # "missing-signature" removes SHA256SUMS.gpg: a version that reads .sha256.asc installs.
    present = {"SHA256SUMS.sha256.asc"} | (
        {"SHA256SUMS.gpg"} if case != "missing-signature" else set()
    )
    reads = rules.reads_signature(present)
    if case == "good" or (case == "missing-signature" and reads is not None):
        assert res["rc"] == 0, err
        assert "Signature verification succeeded" in err
        assert installed == sorted(spectrum_names("1.1"))
        for name in installed:
            assert (dst / name).read_bytes() == (release / name).read_bytes()
        if transport == "http":
            log = [json.loads(x) for x in (tmp_path / "serve.jsonl").read_text().splitlines()]
            fetched = {e["path"] for e in log if e["status"] == 200}
            assert {"SHA256SUMS", str(reads), *spectrum_names("1.1")} <= fetched
        return
    assert res["rc"] != 0, f"sysupdate accepted a tampered release ({case}): {err}"
    assert case != "missing-signature" or reads is None
    # 260+ keep what they acquired before the failure as partial/pending instances (dot names).
    leftovers = [
        n for n in installed if n.startswith((".sysupdate.partial.", ".sysupdate.pending."))
    ]
    assert leftovers == ([] if not rules.partial_instances else leftovers), installed
    assert [n for n in installed if n not in leftovers] == [], installed
    expected = {
        "payload-byte": "did not check out" if systemd_runtime.version < 262 else "yikes",
        "manifest-line": "Signature verification failed",
        "wrong-key": "No public key",
        "missing-signature": "Failed to retrieve signature file",
    }[case]
    assert expected in err, err


@pytest.mark.parametrize("case", CASES)
def test_sqv_and_gpgv_agree_on_the_same_releases(
    tmp_path: Path, release: Path, keys: tuple[SigningKey, SigningKey], case: str
) -> None:
    """The signature verdicts behind the sysupdate results, from sqv and gpgv directly.

    A flipped payload byte leaves the signature valid: only the digest check (sysupdate's, or the
    host's) catches it, which the sysupdate test above shows.
    """
    served = tmp_path / "served"
    tamper(case, release, served)
    keyring = keys[1].pubring if case == "wrong-key" else keys[0].pubring
    home = tmp_path / "gh"
    home.mkdir(mode=0o700)
    verdicts: list[bool | None] = []
    for sig in ("SHA256SUMS.gpg", "SHA256SUMS.sha256.asc"):
        if not (served / sig).exists():
            verdicts.append(None)
            continue
        s = subprocess.run(
            [
                "sqv",
                "--keyring",
                os.fspath(keyring),
                os.fspath(served / sig),
                os.fspath(served / "SHA256SUMS"),
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        g = subprocess.run(
            [
                "gpgv",
                "--homedir",
                os.fspath(home),
                "--keyring",
                os.fspath(keyring),
                os.fspath(served / sig),
                os.fspath(served / "SHA256SUMS"),
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert (s.returncode == 0) == (g.returncode == 0), (s.stderr, g.stderr)
        verdicts.append(s.returncode == 0)
    expected = {
        "good": [True, True],
        "payload-byte": [True, True],
        "manifest-line": [False, False],
        "wrong-key": [False, False],
        "missing-signature": [None, True],
    }[case]
    assert verdicts == expected


def test_two_signers_need_every_key_in_sysupdates_keyring(
    systemd_runtime: Runtime, tmp_path: Path
) -> None:
    """ADR 0041: sysupdate's gpg check fails if any signature's key is missing (257 and 262)."""
    from airlock.backends.openpgp import gpg

    home = tmp_path / "both"
    f1 = gpg.generate_key(home, "One <one@example.invalid>")
    f2 = gpg.generate_key(home, "Two <two@example.invalid>")
    ring_both, ring_one = tmp_path / "both.gpg", tmp_path / "one.gpg"
    ring_both.write_bytes(gpg.export_public(home, [f1, f2]))
    ring_one.write_bytes(gpg.export_public(home, [f1]))
    key = SigningKey(gnupghome=home, fingerprint=f1, pubring=ring_both)
    try:
        rel = tmp_path / "rel"
        make_release(rel, "2.0", None, key, signers=[f1, f2])
    finally:
        key.close()
    token = uuid.uuid4().hex[:8]
    base = f"/srv/airlock-release-{token}"
    results = {}
    for label, ring in (("both", ring_both), ("one", ring_one)):
        dst = tmp_path / f"dst-{label}"
        dst.mkdir()
        defs = definitions(tmp_path / label, f"file://{base}/rel", ring)
        binds = [
            (os.fspath(rel), f"{base}/rel", True),
            (os.fspath(defs), f"{base}/defs", True),
            *keyring_binds(systemd_runtime, ring),
            (os.fspath(dst), "/host/updates", False),
        ]
        res = sysupdate(systemd_runtime, [f"--definitions={base}/defs", "update"], binds)
        results[label] = (res["rc"], sorted(os.listdir(dst)))
    assert results["both"] == (0, sorted(spectrum_names("2.0")))
    assert results["one"][0] != 0
    assert results["one"][1] == []
