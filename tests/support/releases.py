# SPDX-License-Identifier: MIT
"""Build signed release directories in-process, through ``airlock.release.publish``.

The simple entry points::

    with make_key(tmp_path / "key") as key:                # throwaway GNUPGHOME + pubring;
                                                            # leaving stops its gpg-agent
        rel = make_release(tmp_path / "rel", "1.0", None, key)             # Spectrum's 3 files
        rel = make_release(tmp_path / "rel", "2.0", {"foo_2.0.img": 4096}, key,
                           definitions=write_definitions(tmp_path / "defs"))  # sizes → payloads
        rel = make_release(tmp_path / "rel", "3.0", {"foo_3.0.img": b"..."}, key,
                           definitions=...)                                 # exact bytes

Every ``make_release`` signs with gpg, which starts a gpg-agent in the key's home: use the key as a
context manager (or call ``close()``) so the agent is stopped, also after a test kills a publish.

``make_release`` returns ``publish.Published`` (version, manifest bytes, signers, …).  Payloads
generated from sizes are deterministic per (name, size), at least 6 bytes, and start with 512 zero
bytes so systemd-sysupdate never mistakes them for compressed data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from airlock.backends.openpgp import gpg
from airlock.release import keygen, publish

#: A fixed fake dm-verity root hash (64 lowercase hex) for Spectrum-named test releases.
ROOTHASH = hashlib.sha256(b"airlock test root hash").hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningKey:
    """A throwaway key: its GNUPGHOME, primary fingerprint and binary public keyring."""

    gnupghome: Path
    fingerprint: str
    pubring: Path

    def close(self) -> None:
        """Stop the gpg-agent that signing started (safe to call twice)."""
        gpg.kill_agent(self.gnupghome)

    def __enter__(self) -> SigningKey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_key(directory: Path, uid: str = "Release Test <release@example.invalid>") -> SigningKey:
    """``airlock keygen`` into ``directory`` (must not exist or be empty)."""
    key = keygen.generate(directory, uid=uid)
    return SigningKey(gnupghome=key.gnupghome, fingerprint=key.fingerprint, pubring=key.pubring)


def payload(size: int, *, seed: str = "") -> bytes:
    """Deterministic bytes: 512 zero bytes (or fewer), then SHA-256-counter noise; ≥ 6 bytes."""
    if size < 6:
        raise ValueError("url-file payloads must be at least 6 bytes (systemd 257)")
    head = b"\0" * min(512, size)
    out = bytearray(head)
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{size}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def spectrum_names(version: str, roothash: str = ROOTHASH) -> tuple[str, str, str]:
    """(root, verity, efi) names as Spectrum publishes them (design.md#artefact-names)."""
    return (
        f"Spectrum_{version}_{roothash[:32]}.root",
        f"Spectrum_{version}_{roothash[32:]}.verity",
        f"Spectrum_{version}.efi",
    )


def spectrum_files(version: str, *, size: int = 4096, roothash: str = ROOTHASH) -> dict[str, int]:
    """Spectrum's three names for ``version``, each with ``size`` bytes."""
    return dict.fromkeys(spectrum_names(version, roothash), size)


def write_definitions(
    directory: Path,
    *,
    source_path: str = "file:///srv/release",
    patterns: Mapping[str, str] | None = None,
    target_path: str = "/srv/installed",
    verify: bool = True,
) -> Path:
    """Write one url-file → regular-file ``.transfer`` per (stem → pattern) into ``directory``.

    Default: ``50-foo.transfer`` with ``MatchPattern=foo_@v.img``.  Returns ``directory``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for stem, pat in (patterns or {"50-foo": "foo_@v.img"}).items():
        (directory / f"{stem}.transfer").write_text(
            "[Transfer]\n"
            f"Verify={'yes' if verify else 'no'}\n\n"
            "[Source]\nType=url-file\n"
            f"Path={source_path}\nMatchPattern={pat}\n\n"
            "[Target]\nType=regular-file\n"
            f"Path={target_path}\nMatchPattern={pat}\nMode=0644\n"
        )
    return directory


def make_release(
    directory: Path,
    version: str,
    files: Mapping[str, bytes] | Mapping[str, int] | None,
    key: SigningKey,
    *,
    definitions: Path | None = None,
    signers: Sequence[str] = (),
    valid_for_days: int | None = None,
    keep: int | None = None,
    force: bool = False,
    today: dt.date | None = None,
) -> publish.Published:
    """Publish ``files`` (name → bytes, or name → size) as ``version`` into ``directory``.

    ``files=None`` means Spectrum's three files of 4096 bytes.  ``definitions`` is a directory of
    ``.transfer`` files (default: Spectrum's host transfers).  ``directory`` is created if needed.
    Raises whatever ``publish.publish`` raises.
    """
    directory.mkdir(parents=True, exist_ok=True)
    wanted: Mapping[str, bytes | int] = files if files is not None else spectrum_files(version)
    transfers = publish.load_transfers(definitions) if definitions is not None else None
    with tempfile.TemporaryDirectory(prefix="airlock-release-src-") as tmp:
        artifacts = []
        for name, content in wanted.items():
            data = content if isinstance(content, bytes) else payload(content, seed=name)
            src = Path(tmp, name)
            src.write_bytes(data)
            artifacts.append(publish.Artifact(name=name, source=src))
        return publish.publish(
            directory,
            artifacts,
            gnupghome=key.gnupghome,
            signers=tuple(signers) or (key.fingerprint,),
            transfers=transfers,
            valid_for_days=valid_for_days,
            keep=keep,
            force=force,
            today=today,
        )


def write_vm_transfers(directory: Path) -> Path:
    """Spectrum's VM transfer files as airlock ships them (release/templates/vm-sysupdate.d,
    with the literal ``@UPDATE_URL@`` the VM replaces), copied into ``directory``."""
    from airlock.release import render

    directory.mkdir(parents=True, exist_ok=True)
    for src in sorted((render.default_templates() / "vm-sysupdate.d").glob("*.transfer")):
        (directory / src.name).write_text(src.read_text())
    return directory
