# SPDX-License-Identifier: MIT
"""GpgvVerifier: the fallback verifier, GnuPG's ``gpgv`` driven through ``--status-fd``.

gpgv "assumes that all keys in the keyring are trustworthy" and does not refuse expired or revoked
keys nor SHA-1 (design.md#tools-gpgv), and its exit status alone does not say that *every* signature
was good.  So this module reads the machine status lines and requires, for every signature packet,
one ``NEWSIG``/``GOODSIG``/``VALIDSIG`` triple, takes the **primary** fingerprint (last VALIDSIG
field), creation time and hash algorithm from ``VALIDSIG``, and refuses on any ``BADSIG``,
``ERRSIG``, ``EXPSIG``, ``EXPKEYSIG``, ``REVKEYSIG``, ``NO_PUBKEY`` or similar line, on a non-zero
exit status (1 bad, 2 missing key: both are failures), and on SHA-1.
gpgv runs with an empty temporary home (no user configuration) and an absolute keyring path
(a bare name would be looked up inside the home, C14).  gpgv accepts signatures created in the
future and (2.2) has no option to pass it the reference time, so the template refuses any whose
creation time, read from the packet and from ``VALIDSIG``, is past ``Work.not_after`` — the same
bound sqv gets as ``--not-after``.  Trusts the gpgv binary only.
"""

from __future__ import annotations

import datetime as dt
import functools
import shutil
import tempfile
from pathlib import Path

from airlock import proc
from airlock.backends.openpgp import ACCEPTED_HASHES, BaseVerifier, ValidSignature, Work
from airlock.errors import AirlockError, HostError, SignatureError
from airlock.text import display, tail

GPGV = "gpgv"
PREFIX = "[GNUPG:] "
REFUSED = frozenset(
    {
        "BADSIG",
        "ERRSIG",
        "EXPSIG",
        "EXPKEYSIG",
        "REVKEYSIG",
        "NO_PUBKEY",
        "BADARMOR",
        "NODATA",
        "UNEXPECTED",
        "FAILURE",
        "BADMDC",
        "DECRYPTION_FAILED",
        "KEYREVOKED",
        "KEYEXPIRED",
    }
)


@functools.cache
def _present() -> bool:
    try:
        proc.run([GPGV, "--version"], timeout=10)
    except AirlockError:
        return False
    return True


def _timestamp(field: str) -> dt.datetime:
    if field.isdigit():
        return dt.datetime.fromtimestamp(int(field), tz=dt.UTC)
    try:  # ISO 8601 basic form, used by gpg when --fixed-list-mode/--with-colons style applies
        return dt.datetime.strptime(field, "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
    except ValueError:
        raise SignatureError(f"gpgv printed an unexpected timestamp {display(field)}") from None


def parse_status(out: bytes, *, expected: int) -> list[ValidSignature]:
    """Turn gpgv ``--status-fd`` output into ValidSignatures, refusing anything doubtful."""
    newsig = goodsig = 0
    found: list[ValidSignature] = []
    for raw_line in out.decode("utf-8", errors="replace").splitlines():
        if not raw_line.startswith(PREFIX):
            continue
        words = raw_line[len(PREFIX) :].split(" ")
        keyword = words[0]
        if keyword in REFUSED:
            raise SignatureError(f"Signature refused (gpgv: {display(' '.join(words[:2]))})")
        if keyword == "NEWSIG":
            newsig += 1
        elif keyword == "GOODSIG":
            goodsig += 1
        elif keyword == "VALIDSIG":
            if len(words) < 11:
                raise SignatureError("gpgv printed a short VALIDSIG line")
            hash_algo, sig_class, primary = int(words[8]), words[9], words[10].upper()
            if hash_algo not in ACCEPTED_HASHES:
                raise SignatureError(
                    f"Signature uses hash algorithm {hash_algo}; only SHA-256/384/512 accepted"
                )
            if sig_class not in ("00", "01"):
                raise SignatureError(f"Signature class {display(sig_class)} is not a document one")
            found.append(
                ValidSignature(
                    fingerprint=primary,
                    created=_timestamp(words[3]),
                    hash_algo=hash_algo,
                )
            )
    if not newsig == goodsig == len(found) == expected:
        raise SignatureError(
            f"gpgv validated {len(found)} of {expected} signatures "
            f"({newsig} seen, {goodsig} good)"
        )
    return found


class GpgvVerifier(BaseVerifier):
    """Verify with gpgv and a strict reading of its status lines."""

    @staticmethod
    def check_available() -> None:
        """Raise ``HostError`` unless gpgv runs."""
        if not _present():
            raise HostError("gpgv is not usable", code="host.gpgv")

    def _verify(self, work: Work) -> list[ValidSignature]:
        home = Path(tempfile.mkdtemp(prefix="airlock-gpgv-"))
        try:
            res = proc.run(
                [
                    GPGV,
                    "--homedir",
                    home,
                    "--status-fd",
                    "1",
                    "--keyring",
                    work.keyring_file.absolute(),
                    work.signature_file,
                    work.data_file,
                ],
                timeout=work.timeout_s,
                check=False,
                max_output=256 * 1024,
                env={"GNUPGHOME": str(home)},
            )
        finally:
            shutil.rmtree(home, ignore_errors=True)
        found = parse_status(res.stdout, expected=len(work.sigs))
        if res.returncode != 0:
            raise SignatureError(f"Signature verification failed (gpgv: {tail(res.stderr)})")
        return found
