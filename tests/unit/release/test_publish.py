# SPDX-License-Identifier: MIT
"""airlock.release.publish: names, versions, manifest, two signature files, atomicity."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from airlock.backends.openpgp import gpg
from airlock.errors import BusyError, ConfigError, UsageError
from airlock.formats import blockindex, manifest
from airlock.release import commit, publish
from tests.support.releases import (
    ROOTHASH,
    SigningKey,
    make_release,
    payload,
    spectrum_files,
    spectrum_names,
    write_definitions,
)

TODAY = dt.date(2026, 11, 26)


def tree(directory: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every entry of a flat directory: contents, inode and mtime (for 'left exactly as it was')."""
    out = {}
    for name in sorted(os.listdir(directory)):
        st = os.lstat(directory / name)
        data = (directory / name).read_bytes() if not (directory / name).is_dir() else b"<dir>"
        out[name] = (data, st.st_ino, st.st_mtime_ns)
    return out


def sqv(keyring: Path, sig: Path, data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sqv", *extra, "--keyring", str(keyring), str(sig), str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def gpgv(keyring: Path, sig: Path, data: Path, home: Path) -> subprocess.CompletedProcess[str]:
    home.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run(
        [
            "gpgv",
            "--homedir",
            str(home),
            "--status-fd",
            "1",
            "--keyring",
            str(keyring.absolute()),
            str(sig),
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_spectrum_names_from_root_hash(tmp_path: Path) -> None:
    arts = publish.spectrum_artifacts(
        ver="1.2", roothash=ROOTHASH, root=tmp_path / "r", verity=tmp_path / "v", uki=tmp_path / "u"
    )
    assert [a.name for a in arts] == [
        f"Spectrum_1.2_{ROOTHASH[:32]}.root",
        f"Spectrum_1.2_{ROOTHASH[32:]}.verity",
        "Spectrum_1.2.efi",
    ]
    with pytest.raises(UsageError):
        publish.spectrum_artifacts(
            ver="1.2", roothash=ROOTHASH.upper(), root=tmp_path, verity=tmp_path, uki=tmp_path
        )
    with pytest.raises(UsageError):
        publish.spectrum_artifacts(
            ver="1_2", roothash=ROOTHASH, root=tmp_path, verity=tmp_path, uki=tmp_path
        )


def test_publish_spectrum_release(tmp_path: Path, key: SigningKey) -> None:
    rel = tmp_path / "rel"
    res = make_release(rel, "1.0", None, key, valid_for_days=30, today=TODAY)
    assert sorted(os.listdir(rel)) == sorted(
        [
            *spectrum_names("1.0"),
            *(n + ".blocks" for n in spectrum_names("1.0")),
            "SHA256SUMS",
            "SHA256SUMS.gpg",
            "SHA256SUMS.sha256.asc",
        ]
    )
    for name in spectrum_names("1.0"):  # each payload's block index matches its bytes
        index = blockindex.parse((rel / f"{name}.blocks").read_bytes(), max_file_bytes=1 << 40)
        assert index.header.sha256 == hashlib.sha256((rel / name).read_bytes()).hexdigest()
    raw = (rel / "SHA256SUMS").read_bytes()
    assert raw == res.manifest
    parsed = manifest.parse(raw)
    assert parsed.best_before == dt.date(2026, 12, 26)
    for name in spectrum_names("1.0"):
        entry = parsed.get(name)
        assert entry is not None
        assert entry.sha256 == hashlib.sha256((rel / name).read_bytes()).hexdigest()
    lines = raw.decode().splitlines()
    assert lines[0].endswith(" *BEST-BEFORE-2026-12-26")
    assert lines[1:] == sorted(lines[1:], key=lambda x: x.split("*", 1)[1])
    assert all(line[64:66] == " *" for line in lines)
    assert (rel / "SHA256SUMS.sha256.asc").read_bytes().startswith(b"-----BEGIN PGP SIGNATURE")
    assert oct(os.stat(rel / spectrum_names("1.0")[0]).st_mode & 0o777) == "0o644"


@pytest.mark.parametrize("sig", ["SHA256SUMS.gpg", "SHA256SUMS.sha256.asc"])
def test_signatures_verify_with_sqv_and_gpgv(tmp_path: Path, key: SigningKey, sig: str) -> None:
    rel = tmp_path / "rel"
    make_release(rel, "1.0", None, key)
    r = sqv(key.pubring, rel / sig, rel / "SHA256SUMS")
    assert r.returncode == 0, r.stderr
    assert key.fingerprint in r.stdout
    g = gpgv(key.pubring, rel / sig, rel / "SHA256SUMS", tmp_path / "gh")
    assert g.returncode == 0, g.stderr
    assert f"VALIDSIG {key.fingerprint}" in g.stdout


def test_signature_negative_controls(tmp_path: Path, key: SigningKey, key2: SigningKey) -> None:
    rel = tmp_path / "rel"
    make_release(rel, "1.0", None, key)
    (rel / "SHA256SUMS").write_bytes((rel / "SHA256SUMS").read_bytes().replace(b"*", b" ", 1))
    for sig in ("SHA256SUMS.gpg", "SHA256SUMS.sha256.asc"):
        assert sqv(key.pubring, rel / sig, rel / "SHA256SUMS").returncode != 0
        assert gpgv(key.pubring, rel / sig, rel / "SHA256SUMS", tmp_path / "gh").returncode != 0
    make_release(tmp_path / "r2", "1.0", None, key)
    assert (
        sqv(key2.pubring, tmp_path / "r2/SHA256SUMS.gpg", tmp_path / "r2/SHA256SUMS").returncode
        != 0
    )


def test_armoured_and_binary_carry_the_same_packets(tmp_path: Path, key: SigningKey) -> None:
    rel = tmp_path / "rel"
    make_release(rel, "1.0", None, key)
    home = tmp_path / "gh"
    home.mkdir(mode=0o700)
    out = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--dearmor"],
        input=(rel / "SHA256SUMS.sha256.asc").read_bytes(),
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    assert out == (rel / "SHA256SUMS.gpg").read_bytes()


def test_several_signers(tmp_path: Path) -> None:
    home = tmp_path / "both"
    f1 = gpg.generate_key(home, "One <one@example.invalid>")
    f2 = gpg.generate_key(home, "Two <two@example.invalid>")
    ring = tmp_path / "ring.gpg"
    ring.write_bytes(gpg.export_public(home, [f1, f2]))
    both = SigningKey(gnupghome=home, fingerprint=f1, pubring=ring)
    try:
        rel = tmp_path / "rel"
        res = make_release(rel, "1.0", None, both, signers=[f1, f2])
        with pytest.raises(ConfigError):  # two keys and none named: ambiguous
            publish.resolve_signers(home, ())
    finally:
        both.close()
    assert set(res.signers) == {f1, f2}
    for sig in ("SHA256SUMS.gpg", "SHA256SUMS.sha256.asc"):
        r = sqv(ring, rel / sig, rel / "SHA256SUMS", "--signatures", "2")
        assert r.returncode == 0, r.stderr
        assert f1 in r.stdout
        assert f2 in r.stdout
    # Negative control: one key alone does not reach a threshold of 2.
    one = tmp_path / "one.gpg"
    one.write_bytes(gpg.export_public(home, [f1]))
    assert sqv(one, rel / "SHA256SUMS.gpg", rel / "SHA256SUMS", "--signatures", "2").returncode != 0


def test_missing_signer_changes_nothing(tmp_path: Path, key: SigningKey) -> None:
    rel = tmp_path / "rel"
    make_release(rel, "1.0", None, key)
    before = tree(rel)
    with pytest.raises(ConfigError) as info:
        make_release(rel, "2.0", None, key, signers=["0" * 40])
    assert info.value.code == "config.signer"
    assert tree(rel) == before


def test_same_inputs_are_byte_identical_apart_from_signatures(
    tmp_path: Path, key: SigningKey
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        make_release(d, "1.0", None, key, valid_for_days=9, today=TODAY)
        make_release(d, "1.1", None, key, valid_for_days=9, today=TODAY)
    assert sorted(os.listdir(a)) == sorted(os.listdir(b))
    for name in os.listdir(a):
        if name.startswith("SHA256SUMS.") and name != "SHA256SUMS":
            continue
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # Republishing the same version with --force leaves the payloads and manifest identical.
    snap = {n: (a / n).read_bytes() for n in os.listdir(a) if not n.startswith("SHA256SUMS.")}
    make_release(a, "1.1", None, key, valid_for_days=9, today=TODAY, force=True)
    assert {
        n: (a / n).read_bytes() for n in os.listdir(a) if not n.startswith("SHA256SUMS.")
    } == snap


def test_refuses_older_or_equal_unless_forced(tmp_path: Path, key: SigningKey) -> None:
    rel = tmp_path / "rel"
    make_release(rel, "2.0", None, key)
    before = tree(rel)
    for ver in ("2.0", "1.9", "2.00"):  # 2.00 compares equal to 2.0
        with pytest.raises(UsageError) as info:
            make_release(rel, ver, None, key)
        assert info.value.code == "usage.version"
        assert tree(rel) == before
    res = make_release(rel, "1.9", None, key, force=True)
    assert res.versions == ("2.0", "1.9")


def test_force_same_version_replaces_old_files(tmp_path: Path, key: SigningKey) -> None:
    rel = tmp_path / "rel"
    make_release(rel, "2.0", None, key)
    other = hashlib.sha256(b"another root hash").hexdigest()
    res = make_release(rel, "2.0", spectrum_files("2.0", roothash=other), key, force=True)
    assert sorted(res.removed) == sorted(spectrum_names("2.0")[:2])
    names = sorted(n for n in os.listdir(rel) if not n.startswith("SHA256SUMS"))
    new = spectrum_names("2.0", other)
    assert names == sorted([*new, *(f"{n}.blocks" for n in new)])  # old indexes went too


def test_keep_drops_oldest(tmp_path: Path, key: SigningKey) -> None:
    rel = tmp_path / "rel"
    for ver in ("1.9", "1.10", "1.11"):  # version order, not string order
        make_release(rel, ver, None, key)
    res = make_release(rel, "2.0", None, key, keep=2)
    assert res.versions == ("2.0", "1.11")
    assert sorted(res.removed) == sorted([*spectrum_names("1.9"), *spectrum_names("1.10")])
    listed = {e.name for e in manifest.parse((rel / "SHA256SUMS").read_bytes()).entries}
    assert listed == {*spectrum_names("2.0"), *spectrum_names("1.11")}
    indexes = {f"{n}.blocks" for n in listed}
    assert listed | indexes | {"SHA256SUMS", "SHA256SUMS.gpg", "SHA256SUMS.sha256.asc"} == set(
        os.listdir(rel)
    )


def test_manifest_covers_older_payloads_and_ignores_strangers(
    tmp_path: Path, key: SigningKey
) -> None:
    rel = tmp_path / "rel"
    make_release(rel, "1.0", None, key)
    (rel / "README").write_text("not a payload\n")
    (rel / ".hidden").write_text("x")
    make_release(rel, "1.1", None, key)
    listed = {e.name for e in manifest.parse((rel / "SHA256SUMS").read_bytes()).entries}
    assert listed == {*spectrum_names("1.0"), *spectrum_names("1.1")}
    assert (rel / "README").exists()


def test_existing_payload_is_rehashed_not_trusted(tmp_path: Path, key: SigningKey) -> None:
    rel = tmp_path / "rel"
    make_release(rel, "1.0", None, key)
    victim = rel / spectrum_names("1.0")[2]
    victim.write_bytes(payload(100, seed="changed"))
    make_release(rel, "1.1", None, key)
    entry = manifest.parse((rel / "SHA256SUMS").read_bytes()).get(victim.name)
    assert entry is not None
    assert entry.sha256 == hashlib.sha256(victim.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("files", "code"),
    [
        ({"Spectrum_2.0.efi": 100, "random.bin": 100}, "usage.artifact"),  # no pattern
        ({**spectrum_files("2.0"), "Spectrum_2.1.efi": 100}, "usage.artifact"),  # mixed + 2 efi
        ({n: 100 for n in spectrum_names("2.0")[:2]}, "usage.artifact"),  # incomplete
        (
            {**dict.fromkeys(spectrum_names("2.0")[:2], 100), "Spectrum_2.0.efi": b"\0" * 5},
            "usage.artifact",
        ),  # too short
        (
            {
                **dict.fromkeys(spectrum_names("2.0")[:2], 100),
                "Spectrum_2.0.efi": gzip.compress(b"x" * 100),
            },
            "usage.artifact",
        ),  # compressed
        ({"-Spectrum_2.0.efi": 100}, "usage.artifact"),  # unsafe name
        ({"SHA256SUMS": 100}, "usage.artifact"),
    ],
)
def test_bad_artefacts_change_nothing(
    tmp_path: Path, key: SigningKey, files: dict[str, int | bytes], code: str
) -> None:
    rel = tmp_path / "rel"
    make_release(rel, "1.0", None, key)
    before = tree(rel)
    with pytest.raises(UsageError) as info:
        make_release(rel, "2.0", files, key)  # type: ignore[arg-type]  # mixed on purpose
    assert info.value.code == code
    assert "\n" not in info.value.message
    assert tree(rel) == before


def test_mixed_versions_refused(tmp_path: Path, key: SigningKey) -> None:
    files = dict(spectrum_files("2.0"))
    efi = spectrum_names("2.0")[2]
    files[efi.replace("2.0", "2.1")] = files.pop(efi)
    with pytest.raises(UsageError, match="mix versions"):
        make_release(tmp_path / "rel", "2.0", files, key)


def test_unreadable_artefact(tmp_path: Path, key: SigningKey) -> None:
    rel = tmp_path / "rel"
    rel.mkdir()
    arts = publish.spectrum_artifacts(
        ver="1.0",
        roothash=ROOTHASH,
        root=tmp_path / "missing",
        verity=tmp_path / "missing",
        uki=tmp_path / "missing",
    )
    with pytest.raises(UsageError, match="Failed to read artefact"):
        publish.publish(rel, arts, gnupghome=key.gnupghome)
    assert os.listdir(rel) == []


def test_definitions_dir_and_single_transfer(tmp_path: Path, key: SigningKey) -> None:
    defs = write_definitions(tmp_path / "defs")
    res = make_release(tmp_path / "rel", "7", {"foo_7.img": 64}, key, definitions=defs)
    assert res.added == ("foo_7.img",)
    with pytest.raises(UsageError):  # Spectrum names do not match this definition
        make_release(tmp_path / "rel", "8", None, key, definitions=defs)


def test_failure_during_commit_rolls_back(tmp_path: Path, key: SigningKey) -> None:
    """A real failure after the payloads were renamed: SHA256SUMS.sha256.asc is a directory."""
    rel = tmp_path / "rel"
    make_release(rel, "1.0", None, key)
    (rel / "SHA256SUMS.sha256.asc").unlink()
    (rel / "SHA256SUMS.sha256.asc").mkdir()
    (rel / "SHA256SUMS.sha256.asc" / "blocker").write_text("x")
    before = tree(rel)
    with pytest.raises(ConfigError):
        make_release(rel, "1.1", None, key)
    assert tree(rel) == before
    assert not [n for n in os.listdir(rel) if n.startswith(commit.PREFIX)]


def test_negative_control_commit_failure_is_reached(tmp_path: Path, key: SigningKey) -> None:
    """Without the blocker the same publish succeeds, so the failure above came from commit."""
    rel = tmp_path / "rel"
    make_release(rel, "1.0", None, key)
    make_release(rel, "1.1", None, key)
    assert spectrum_names("1.1")[0] in os.listdir(rel)


def test_concurrent_publish_is_busy(tmp_path: Path, key: SigningKey) -> None:
    import fcntl

    rel = tmp_path / "rel"
    rel.mkdir()
    fd = os.open(rel, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(BusyError):
            make_release(rel, "1.0", None, key)
    finally:
        os.close(fd)
    assert os.listdir(rel) == []


def test_release_dir_symlinked_payload_refused(tmp_path: Path, key: SigningKey) -> None:
    rel = tmp_path / "rel"
    make_release(rel, "1.0", None, key)
    (tmp_path / "elsewhere").write_bytes(payload(64))
    os.symlink(tmp_path / "elsewhere", rel / "Spectrum_0.9.efi")
    before = tree(rel)
    with pytest.raises(ConfigError, match="not a regular file"):
        make_release(rel, "1.1", None, key)
    assert tree(rel) == before


def test_option_bounds(tmp_path: Path, key: SigningKey) -> None:
    with pytest.raises(UsageError):
        make_release(tmp_path / "r", "1", None, key, keep=0)
    with pytest.raises(UsageError):
        make_release(tmp_path / "r", "1", None, key, valid_for_days=0)


def test_leftovers_of_a_killed_publish_are_ignored_then_removed(
    tmp_path: Path, key: SigningKey
) -> None:
    rel = tmp_path / "rel"
    make_release(rel, "1.0", None, key)
    stale = rel / f"{commit.PREFIX}dead-new1"
    stale.write_bytes(payload(64))
    listed_before = manifest.parse((rel / "SHA256SUMS").read_bytes())
    make_release(rel, "1.1", None, key)
    assert not stale.exists()
    listed = {e.name for e in manifest.parse((rel / "SHA256SUMS").read_bytes()).entries}
    assert stale.name not in listed
    assert {e.name for e in listed_before.entries} < listed


def test_missing_release_dir_is_created_and_removed_on_failure(
    tmp_path: Path, key: SigningKey
) -> None:
    with pytest.raises(UsageError):
        make_release(tmp_path / "x" / "rel", "1", {"nomatch": 64}, key)  # helper makes parents
    assert os.listdir(tmp_path / "x" / "rel") == []
    # Fails after the directory was created (the sources are opened under the lock).
    arts = publish.spectrum_artifacts(
        ver="1",
        roothash=ROOTHASH,
        root=tmp_path / "missing",
        verity=tmp_path / "missing",
        uki=tmp_path / "missing",
    )
    with pytest.raises(UsageError, match="Failed to read artefact"):
        publish.publish(tmp_path / "new", arts, gnupghome=key.gnupghome)
    assert not (tmp_path / "new").exists()
    res = make_release(tmp_path / "fresh", "1", None, key)
    assert res.release_dir == tmp_path / "fresh"


def test_missing_or_stale_index_of_a_kept_payload_is_written_again(
    tmp_path: Path, key: SigningKey
) -> None:
    rel = tmp_path / "rel"
    make_release(rel, "1.0", None, key)
    root, verity, efi = spectrum_names("1.0")
    (rel / f"{root}.blocks").unlink()
    (rel / f"{verity}.blocks").write_bytes(b"stale")
    efi_index = (rel / f"{efi}.blocks").stat()
    make_release(rel, "1.1", None, key)
    for name in (root, verity, efi):
        raw = (rel / f"{name}.blocks").read_bytes()
        header = blockindex.parse(raw, max_file_bytes=1 << 40).header
        assert header.sha256 == hashlib.sha256((rel / name).read_bytes()).hexdigest()
    # A current index is left as it was (same inode: not rewritten).
    assert (rel / f"{efi}.blocks").stat().st_ino == efi_index.st_ino


def test_a_blocks_file_of_no_payload_is_left_alone(tmp_path: Path, key: SigningKey) -> None:
    rel = tmp_path / "rel"
    make_release(rel, "1.0", None, key)
    (rel / "notes.blocks").write_bytes(b"the maintainer's own file")
    make_release(rel, "1.1", None, key, keep=1)
    assert (rel / "notes.blocks").read_bytes() == b"the maintainer's own file"
    assert not [n for n in os.listdir(rel) if n.startswith("Spectrum_1.0")]  # dropped, indexes too
