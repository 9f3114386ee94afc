# SPDX-License-Identifier: MIT
"""Where the setup caches live and how their stamps are named: one file, ``layout.env``.

The shell scripts source ``layout.env``, the Makefile includes it, and this module parses it, so
a stamp name cannot differ between the script that writes it and the code that reads it
(``tests/unit/test_layout.py`` checks that all three agree).  Trusts: the installed package only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_LINE = re.compile(r"([A-Z][A-Z0-9_]*)=([^\s'\"$`]*)")


def parse(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines of ``layout.env`` (comments and blank lines skipped).

    Raises:
        ValueError: a line that is neither (the file ships with the package: a bug).
    """
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = _LINE.fullmatch(line)
        if m is None:
            raise ValueError(f"layout.env line {number}: not KEY=VALUE")
        out[m.group(1)] = m.group(2)
    return out


def values() -> dict[str, str]:
    """The parsed ``layout.env`` shipped with the package."""
    beside = Path(__file__).with_name("layout.env")
    if beside.is_file():  # an installed or source tree: no importlib.resources (≈ 20 ms to import)
        return parse(beside.read_text(encoding="utf-8"))
    from importlib import resources

    return parse(resources.files("airlock").joinpath("layout.env").read_text(encoding="utf-8"))


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeBuild:
    """One systemd-sysupdate runtime root that ``scripts/make-runtime.sh`` builds."""

    name: str  # the systemd major version the root holds, e.g. "262"
    suite: str  # the Debian suite it is bootstrapped from
    root: Path
    stamp: Path

    @property
    def major(self) -> int:
        """``name`` as a number."""
        return int(self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """The setup caches under one cache directory."""

    cache: Path
    runtimes: tuple[RuntimeBuild, ...]
    default_runtime: str
    guest: Path
    guest_stamp_prefix: str
    debs: Path
    debs_stamp_prefix: str
    spectrum_host: Path
    spectrum_host_stamp_prefix: str

    def spectrum_host_layer(self) -> Path | None:
        """The Spectrum host's package layer (``scripts/make-spectrum-host.sh``), if built."""
        stamps = list(self.spectrum_host.glob(self.spectrum_host_stamp_prefix + "*"))
        root = self.spectrum_host / "root"
        return root if stamps and root.is_dir() else None

    @classmethod
    def load(cls, cache: Path | None = None) -> Layout:
        """The layout under ``cache``, else ``$AIRLOCK_CACHE``, else the default."""
        v = values()
        base = cache or Path(os.environ.get("AIRLOCK_CACHE") or v["AIRLOCK_CACHE_DEFAULT"])
        builds = []
        for name in v["RUNTIMES"].split(","):
            root = base / v[f"RUNTIME_{name}_DIR"]
            builds.append(
                RuntimeBuild(
                    name=name,
                    suite=v[f"RUNTIME_{name}_SUITE"],
                    root=root,
                    stamp=root / v[f"RUNTIME_{name}_STAMP"],
                )
            )
        return cls(
            cache=base,
            runtimes=tuple(builds),
            default_runtime=v["RUNTIME_DEFAULT"],
            guest=base / v["GUEST_DIR"],
            guest_stamp_prefix=v["GUEST_STAMP_PREFIX"],
            debs=base / v["DEBS_DIR"],
            debs_stamp_prefix=v["DEBS_STAMP_PREFIX"],
            spectrum_host=base / v["SPECTRUM_HOST_DIR"],
            spectrum_host_stamp_prefix=v["SPECTRUM_HOST_STAMP_PREFIX"],
        )

    def runtime(self, name: str | None = None) -> RuntimeBuild:
        """The runtime build called ``name`` (default: ``RUNTIME_DEFAULT``).

        Raises:
            KeyError: no runtime of that name is declared.
        """
        wanted = name or self.default_runtime
        for build in self.runtimes:
            if build.name == wanted:
                return build
        raise KeyError(wanted)
