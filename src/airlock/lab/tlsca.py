# SPDX-License-Identifier: MIT
"""A throwaway certificate authority for the lab and tests: a CA and server certificates.

Made with the ``openssl`` command into a directory the caller owns (keys are 0600 and never leave
it).  Certificates are short-lived (2 days), P-256, with ``subjectAltName`` for the names and IP
addresses given, so a TLS client that checks host names accepts them only for those.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from airlock import proc

OPENSSL = "/usr/bin/openssl"
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Authority:
    """A CA certificate and key."""

    cert: Path
    key: Path


def make_ca(directory: Path, name: str = "airlock lab CA") -> Authority:
    """A self-signed CA in ``directory`` (``ca.pem``, ``ca.key``).

    Raises:
        CommandFailed: openssl failed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "ca.pem", directory / "ca.key"
    proc.run(
        [OPENSSL, "req", "-x509", *_KEY, "-keyout", key, "-out", cert, "-days", "2",
         "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        timeout=60,
    )  # fmt: skip
    os.chmod(key, 0o600)
    return Authority(cert=cert, key=key)


def issue(
    ca: Authority, directory: Path, *, dns: tuple[str, ...], ips: tuple[str, ...]
) -> tuple[Path, Path]:
    """A server certificate signed by ``ca`` for ``dns`` names and ``ips``; (cert, key) paths.

    Raises:
        CommandFailed: openssl failed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    stem = (dns or ips)[0].replace(":", "_")
    cert, key, csr = (directory / f"{stem}{ext}" for ext in (".pem", ".key", ".csr"))
    ext = directory / f"{stem}.ext"
    alt = ",".join([*(f"DNS:{d}" for d in dns), *(f"IP:{i}" for i in ips)])
    ext.write_text(
        f"subjectAltName={alt}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    proc.run([OPENSSL, "req", *_KEY, "-keyout", key, "-out", csr, "-subj", f"/CN={stem}"],
             timeout=60)  # fmt: skip
    os.chmod(key, 0o600)
    proc.run(
        [OPENSSL, "x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key,
         "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext],
        timeout=60,
    )  # fmt: skip
    return cert, key
