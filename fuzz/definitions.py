# SPDX-License-Identifier: MIT
"""Target ``definitions``: ``.transfer``/``.conf`` and ``.feature`` files, with drop-ins.

The input is split at NUL bytes into a main file and its drop-ins.  Text that is not UTF-8 stops
where ``sdconf.read_text`` refuses it.  ``transfer.read`` and ``features.parse_feature`` may raise
only ``FormatError`` (``config.definition``).  An accepted transfer's patterns each carry ``@v``.
"""

from __future__ import annotations

from collections.abc import Iterator

from airlock.errors import FormatError
from airlock.formats import definitions, transfer
from fuzz.common import Reader, check, refusals

_OS_RELEASE = "ID=spectrum\nIMAGE_ID=spectrum\nIMAGE_VERSION=2\nVERSION_ID=2\nBUILD_ID=b\n"
_SPECIFIERS = definitions.Specifiers.from_os_release(_OS_RELEASE, architecture="x86-64")
_FEATURES = {
    "on": definitions.parse_feature(
        [("[Feature]\nEnabled=yes\n", "/etc/sysupdate.d/on.feature")], specifiers=_SPECIFIERS
    )
}


def test_one(data: bytes) -> None:
    """Parse the input as a transfer (even first byte) or a feature (odd), with drop-ins."""
    r = Reader(data)
    kind = r.byte() & 1
    try:
        texts = [part.decode("utf-8", errors="strict") for part in r.rest().split(b"\x00")[:4]]
    except UnicodeDecodeError:
        return  # sdconf.read_text refuses the file before any parsing
    suffix = ".feature" if kind else ".transfer"
    sources = [(texts[0], f"/etc/sysupdate.d/50-fuzz{suffix}")]
    sources += [
        (t, f"/etc/sysupdate.d/50-fuzz{suffix}.d/{i}.conf") for i, t in enumerate(texts[1:])
    ]
    with refusals((FormatError,), "config.definition"):
        if kind:
            definitions.parse_feature(sources, specifiers=_SPECIFIERS)
            return
        parsed = transfer.read(sources, specifiers=_SPECIFIERS, features=_FEATURES)
        for resource in (parsed.source, parsed.target):
            for p in resource.match_patterns:
                check("v" in p.markers, f"pattern without @v kept: {p.text!r}")


def seeds() -> Iterator[bytes]:
    """Spectrum's definitions, drop-ins, and the strictness cases of docs/adr/0020."""
    spectrum = (
        "[Transfer]\nProtectVersion=%A\n\n"
        "[Source]\nType=url-file\nPath=file:///run/updater\nMatchPattern=Spectrum_@v_@u.root\n\n"
        "[Target]\nType=partition\nPath=auto\nMatchPartitionType=root\nPartitionFlags=0\n"
        "ReadOnly=1\nMatchPattern=Spectrum_@v\n"
    )
    kernel = (
        "[Source]\nType=url-file\nPath=https://u.example/\nMatchPattern=Spectrum_@v.efi\n\n"
        "[Target]\nType=regular-file\nPath=/EFI/Linux\nPathRelativeTo=boot\nMode=0444\n"
        "MatchPattern=Spectrum_@v+@l-@d.efi Spectrum_@v.efi\nInstancesMax=2\nTriesLeft=3\n"
        "TriesDone=0\n"
    )
    for text in (
        spectrum,
        kernel,
        kernel + "\x00[Transfer]\nFeatures=on\nRequisiteFeatures=off\n",
        kernel + "\x00[Target]\nMode=04755\n",
        kernel.replace("Spectrum_@v.efi\n", "Spectrum_@v.efi \\\n  Other_@v.efi\n"),
        kernel + "[Transfer]\nMinVersion=%A\nX-Vendor=1\n",
        kernel + "[Bogus]\nKey=1\n",
        kernel.replace("url-file", "partition"),
        kernel.replace("Path=/EFI/Linux", "Path=auto"),
        kernel + "[Transfer]\nCurrentSymlink=/EFI/Linux/current.efi\n",
        "# comment\n; other\n" + kernel.replace("\n", "\r\n"),
    ):
        yield b"\x00" + text.encode()
    yield b"\x01[Feature]\nDescription=d %A\nDocumentation=https://d.example/\nEnabled=no\x00"
    yield b"\x01[Feature]\nEnabled=maybe\n"
