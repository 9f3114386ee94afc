# SPDX-License-Identifier: MIT
"""Signing with GnuPG: key generation, public key export and detached signatures.

Used by the publisher (``airlock.release``) and tests only, never by the host's update path.
Everything runs against an explicit ``gnupghome`` with ``--batch`` and an empty passphrase
(``--pinentry-mode loopback``); callers that create throwaway homes stop the agent with
``kill_agent()``.  Nothing here reads untrusted input.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from airlock import proc
from airlock.errors import ConfigError, HostError

GPG = "gpg"
TIMEOUT_S = 60.0


def _gpg(
    gnupghome: Path,
    args: Sequence[str | os.PathLike[str]],
    *,
    input: bytes | None = None,
    faked_time: str | None = None,
) -> proc.Completed:
    argv: list[str | os.PathLike[str]] = [
        GPG,
        "--homedir",
        gnupghome,
        "--batch",
        "--no-tty",
        "--quiet",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
    ]
    if faked_time is not None:  # frozen ("!"): a slow gpg must not sign a second later
        argv += ["--faked-system-time", faked_time.rstrip("!") + "!"]
    return proc.run(
        [*argv, *args], timeout=TIMEOUT_S, input=input, env={"GNUPGHOME": os.fspath(gnupghome)}
    )


def _ensure_home(gnupghome: Path) -> None:
    gnupghome.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(gnupghome, 0o700)


def fingerprints(gnupghome: Path, selector: str | None = None) -> tuple[str, ...]:
    """Primary fingerprints of the secret keys in ``gnupghome`` (optionally ``selector``'s)."""
    selected = [selector] if selector else []
    out = _gpg(gnupghome, ["--with-colons", "--list-secret-keys", *selected])
    fprs: list[str] = []
    want_fpr = False
    for line in out.stdout.decode("utf-8", errors="replace").splitlines():
        fields = line.split(":")
        if fields[0] == "sec":
            want_fpr = True
        elif fields[0] == "fpr" and want_fpr:
            fprs.append(fields[9].upper())
            want_fpr = False
        elif fields[0] == "ssb":
            want_fpr = False
    return tuple(fprs)


def generate_key(
    gnupghome: Path,
    uid: str,
    *,
    algo: str = "ed25519",
    usage: str = "sign",
    expire: str = "never",
    faked_time: str | None = None,
) -> str:
    """Create a key (no passphrase) and return its primary fingerprint (40 uppercase hex).

    ``usage="cert"`` makes a certify-only primary; add a signing subkey with ``add_subkey``.
    ``faked_time`` (gpg's ``--faked-system-time`` form, e.g. ``20200101T120000``; the clock is
    frozen there) is for tests.
    """
    _ensure_home(gnupghome)
    before = set(fingerprints(gnupghome))
    _gpg(gnupghome, ["--quick-gen-key", uid, algo, usage, expire], faked_time=faked_time)
    new = [f for f in fingerprints(gnupghome) if f not in before]
    if len(new) != 1:
        raise HostError("gpg --quick-gen-key did not create exactly one key", code="host.gpg")
    return new[0]


def add_subkey(
    gnupghome: Path,
    fingerprint: str,
    *,
    algo: str = "ed25519",
    usage: str = "sign",
    expire: str = "never",
) -> None:
    """Add a subkey to the key ``fingerprint``."""
    _gpg(gnupghome, ["--quick-add-key", fingerprint, algo, usage, expire])


def export_public(gnupghome: Path, fingerprints: Sequence[str]) -> bytes:
    """The binary public keys of ``fingerprints`` (a keyring gpgv and sqv both read)."""
    if not fingerprints:
        raise ConfigError("No key to export", code="config.keyring")
    out = _gpg(gnupghome, ["--export", *fingerprints]).stdout
    if not out:
        raise ConfigError("gpg exported nothing for the given keys", code="config.keyring")
    return out


def sign(
    data: bytes,
    *,
    gnupghome: Path,
    signer: str | None,
    armor: bool,
    digest_algo: str | None = None,
    faked_time: str | None = None,
) -> bytes:
    """A detached signature over ``data``: binary (``.gpg``) or armoured (``.asc``)."""
    args: list[str] = ["--detach-sign", "--output", "-"]
    if signer is not None:
        args += ["--local-user", signer]
    if armor:
        args.append("--armor")
    if digest_algo is not None:
        args += ["--digest-algo", digest_algo]
    return _gpg(gnupghome, args, input=data, faked_time=faked_time).stdout


def kill_agent(gnupghome: Path) -> None:
    """Stop the gpg-agent of ``gnupghome`` (if one runs)."""
    proc.run(
        ["gpgconf", "--kill", "gpg-agent"],
        timeout=TIMEOUT_S,
        check=False,
        env={"GNUPGHOME": os.fspath(gnupghome)},
    )
