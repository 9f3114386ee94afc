# SPDX-License-Identifier: MIT
"""CLI verb ``demo``: the whole system on one machine (airlock.lab)."""

from __future__ import annotations

import argparse
from pathlib import Path

from airlock.backends.apply import runtime_choices
from airlock.lab.hostile import ATTACKS


def _demo(args: argparse.Namespace) -> int:
    from airlock.lab import demo  # imported lazily: the lab is not needed by other verbs

    return demo.run(
        args.workdir,
        attack=args.attack,
        keep=args.keep,
        as_json=args.json,
        fetcher=args.fetcher,
        runtime=args.runtime,
        boot=args.boot,
        boot_tries=args.boot_tries,
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo``."""
    p = sub.add_parser(
        "demo",
        help="run the whole update flow on this machine (root)",
        description="Build signed releases 1.0-3.0, an A/B GPT disk, btrfs staging and an update "
        "server in a private network namespace; update 1.0 -> 2.0, rerun (no-op), update "
        "2.0 -> 3.0, optionally replay an attack, and show the disk before and after.",
    )
    p.add_argument(
        "--workdir", type=Path, help="work directory (default: a new one in $TMPDIR or /var/tmp)"
    )
    p.add_argument(
        "--fetcher",
        choices=["sandbox", "qemu"],
        default="sandbox",
        help="where the untrusted agent runs: bubblewrap sandbox (default) or a QEMU VM",
    )
    p.add_argument(
        "--runtime",
        choices=runtime_choices(),
        default="auto",
        help="which systemd-sysupdate applies (setting apply.runtime; docs/sysupdate-versions.md)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    p.add_argument(
        "--attack",
        choices=sorted(ATTACKS),
        help="replay one hostile VM behaviour before the last update",
    )
    p.add_argument(
        "--boot",
        action="store_true",
        help="boot the disk in QEMU (OVMF, systemd-boot, UKI, dm-verity) before and after each "
        "update instead of simulating the reboot (about 20 s per boot under TCG)",
    )
    p.add_argument(
        "--boot-tries",
        type=int,
        metavar="N",
        help="render the host's kernel transfer with boot counting (N tries per new UKI)",
    )
    p.add_argument("--json", action="store_true", help="print the final report as JSON")
    p.set_defaults(func=_demo)
