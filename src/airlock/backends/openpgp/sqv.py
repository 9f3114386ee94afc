# SPDX-License-Identifier: MIT
"""SqvVerifier: the preferred verifier, Sequoia's ``sqv`` with its legacy CLI (1.0–1.2).

Runs ``sqv --keyring K --not-after T -n N SIG DATA`` (T: the reference time plus the clock skew
the template allows, so sqv and gpgv accept the same creation times) where N is the number of
signature packets, so every packet must be a valid signature by a distinct certificate in the
keyring (sqv counts certificates, and
prints each one's **primary** fingerprint — also when a signing subkey made the signature; verified
with sqv 1.1.0).  sqv itself refuses revoked certificates and SHA-1; expired keys and the creation
times come from the template's cross-check against the keyring and the parsed packets.
Trusts the sqv binary; the signature and data are untrusted and only passed as files.
"""

from __future__ import annotations

import datetime as dt
import functools
import re

from airlock import proc
from airlock.backends.openpgp import BaseVerifier, ValidSignature, Work
from airlock.errors import AirlockError, HostError, SignatureError
from airlock.text import tail

SQV = "sqv"
_VERSION = re.compile(rb"^sqv (\d+)\.(\d+)\.(\d+)")
_FPR = re.compile(r"^[0-9A-F]{40}$")


@functools.cache
def _version() -> tuple[int, int, int]:
    try:
        res = proc.run([SQV, "--version"], timeout=10)
    except AirlockError as exc:
        raise HostError(f"sqv is not usable: {exc.message}", code="host.sqv") from None
    m = _VERSION.match(res.stdout.strip())
    if m is None:
        raise HostError("sqv --version printed something unexpected", code="host.sqv")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)))


class SqvVerifier(BaseVerifier):
    """Verify with sqv (legacy command line, pinned by version)."""

    @staticmethod
    def check_available() -> None:
        """Raise ``HostError`` unless sqv with the legacy CLI (1.0 ≤ version < 1.3) is present."""
        major, minor, _ = _version()
        if (major, minor) < (1, 0) or (major, minor) >= (1, 3):
            raise HostError(
                f"sqv {major}.{minor} is not supported (the legacy CLI of 1.0-1.2 is)",
                code="host.sqv",
            )

    def _verify(self, work: Work) -> list[ValidSignature]:
        res = proc.run(
            [
                SQV,
                "--keyring",
                work.keyring_file,
                "--not-after",
                work.not_after.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "-n",
                str(len(work.sigs)),
                work.signature_file,
                work.data_file,
            ],
            timeout=work.timeout_s,
            check=False,
            max_output=64 * 1024,
        )
        if res.returncode != 0:
            raise SignatureError(f"Signature verification failed (sqv: {tail(res.stderr)})")
        printed = res.stdout.decode("ascii", errors="replace").split()
        if not printed or any(_FPR.match(f) is None for f in printed):
            raise SignatureError("sqv printed something other than fingerprints")
        if len(set(printed)) != len(work.sigs):
            raise SignatureError(
                f"sqv accepted {len(set(printed))} signers for {len(work.sigs)} signatures"
            )
        # sqv names signers but not times: take creation time and hash from the packet that the
        # keyring attributes to each printed primary (the template then re-checks the whole set).
        out: list[ValidSignature] = []
        for sig in work.sigs:
            key = work.keyring.lookup(fingerprint=sig.issuer_fingerprint, key_id=sig.issuer_key_id)
            if key is None or key.primary not in printed:
                raise SignatureError("A signature packet is not among those sqv accepted")
            out.append(
                ValidSignature(
                    fingerprint=key.primary, created=sig.created, hash_algo=sig.hash_algo
                )
            )
        return out
