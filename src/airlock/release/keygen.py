# SPDX-License-Identifier: MIT
"""``airlock keygen DIR``: a signing key for development and tests.

Creates ``DIR/gnupg`` (a GNUPGHOME, mode 0700, key without passphrase) and
``DIR/import-pubring.gpg`` (the binary public keyring that systemd-sysupdate and the host read),
and returns the primary fingerprint.  Refuses a ``DIR`` that exists and is not empty, so an
existing key is never overwritten.  The gpg-agent it starts is stopped before returning.

This is a development tool: a real release key belongs on an offline machine or a token.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from airlock import fsutil
from airlock.backends.openpgp import gpg
from airlock.errors import AirlockError, ConfigError, HostError, UsageError
from airlock.release import pubring
from airlock.text import display

DEFAULT_UID = "airlock development key <airlock-dev@example.invalid>"
PUBRING = "import-pubring.gpg"
GNUPGHOME = "gnupg"


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneratedKey:
    """A fresh key: where its home and public keyring are, and its fingerprint."""

    fingerprint: str
    gnupghome: Path
    pubring: Path


def generate(directory: Path, *, uid: str = DEFAULT_UID) -> GeneratedKey:
    """Create the key pair under ``directory`` (see the module docstring).

    Raises:
        UsageError: ``directory`` exists and is not empty.
        ConfigError, HostError: gpg failed.
    """
    if directory.is_symlink() or (directory.exists() and any(directory.iterdir())):
        raise UsageError(
            f"Refusing to create a key in {display(os.fspath(directory))}: "
            "it exists and is not empty",
            code="usage.keygen",
        )
    created = not directory.exists()
    try:
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise HostError(
            f"Failed to create {display(os.fspath(directory))}: {exc.strerror}", code="host.keygen"
        ) from exc
    home = directory / GNUPGHOME
    try:
        try:
            fpr = gpg.generate_key(home, uid)
            public = gpg.export_public(home, [fpr])
        finally:
            if home.exists():
                gpg.kill_agent(home)
        ring = pubring.parse(public)
        if ring.fingerprints != (fpr,):
            raise ConfigError(
                "gpg exported a keyring that does not hold exactly the new key", code="config.key"
            )
        fsutil.atomic_write(directory / PUBRING, public, mode=0o644)
    except (AirlockError, OSError) as exc:
        shutil.rmtree(home, ignore_errors=True)
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        if isinstance(exc, OSError):
            raise HostError(
                f"Failed to write the public keyring: {exc.strerror}", code="host.keygen"
            ) from exc
        raise
    return GeneratedKey(fingerprint=fpr, gnupghome=home, pubring=directory / PUBRING)
