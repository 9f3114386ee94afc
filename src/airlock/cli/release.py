# SPDX-License-Identifier: MIT
"""CLI verbs of the maintainer side: ``publish``, ``render``, ``keygen``, ``serve``.

Thin: parse, call ``airlock.release``, print one summary (or one JSON object with ``--json``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from airlock.cli.report import print_json
from airlock.errors import UsageError
from airlock.text import display

# publish's default BEST-BEFORE horizon (docs/adr/0155): a week covers a weekly release cadence
# with a day to spare while bounding how long a replayed manifest keeps a host "fresh".
DEFAULT_VALID_FOR_DAYS = 7


def _positive(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _pairs(items: list[str] | None, what: str, cast: type[int] | type[float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.rpartition("=")
        if not sep or not name:
            raise UsageError(f"--{what} wants NAME=VALUE, got {display(item)}", code="usage.serve")
        try:
            out[name] = cast(value)
        except ValueError:
            raise UsageError(
                f"--{what}: bad value in {display(item)}", code="usage.serve"
            ) from None
    return out


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's verbs to the parser."""
    p = sub.add_parser(
        "publish",
        help="add one version to a signed release directory",
        description="Copy one version's artefacts into RELEASE_DIR, regenerate "
        "and sign SHA256SUMS (atomically; the directory is unchanged on error).",
    )
    p.add_argument("release_dir", type=Path, metavar="RELEASE_DIR")
    p.add_argument(
        "artifacts",
        type=Path,
        nargs="*",
        metavar="ARTIFACT",
        help="files named as the transfers' source patterns expect",
    )
    p.add_argument("--gnupghome", type=Path, required=True, help="GnuPG home with the key(s)")
    p.add_argument(
        "--signer",
        action="append",
        default=[],
        metavar="FPR",
        help="sign with this key (repeat for several signatures)",
    )
    fresh = p.add_mutually_exclusive_group()
    fresh.add_argument(
        "--valid-for",
        type=_positive,
        default=DEFAULT_VALID_FOR_DAYS,
        metavar="DAYS",
        help="add a BEST-BEFORE entry DAYS days from today (UTC; default"
        f" {DEFAULT_VALID_FOR_DAYS}: publish again within that time)",
    )
    fresh.add_argument(
        "--no-best-before",
        dest="valid_for",
        action="store_const",
        const=None,
        help="write no BEST-BEFORE entry: a Spectrum-compatible manifest that never expires"
        " (hosts then cannot tell a replay from no news; docs/release.md)",
    )
    p.add_argument(
        "--definitions",
        type=Path,
        metavar="DIR",
        help="transfer definitions (default: Spectrum's host transfers)",
    )
    p.add_argument("--keep", type=_positive, metavar="N", help="keep only the newest N versions")
    p.add_argument("--force", action="store_true", help="allow an older or equal version")
    p.add_argument(
        "--spectrum",
        action="store_true",
        help="name the artefacts from --version/--roothash (Spectrum's names)",
    )
    p.add_argument("--version", dest="spectrum_version", metavar="V")
    p.add_argument("--roothash", metavar="HEX64")
    p.add_argument("--root", type=Path, metavar="FILE", help="EROFS root image")
    p.add_argument("--verity", type=Path, metavar="FILE", help="dm-verity superblock + tree")
    p.add_argument("--uki", type=Path, metavar="FILE", help="unified kernel image")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=_publish)

    p = sub.add_parser(
        "render",
        help="render os-release, update-url, keyring and transfers",
        description="Write the build-time files of Spectrum's design under OUT.",
    )
    p.add_argument("--version", dest="render_version", required=True, metavar="V")
    p.add_argument("--update-url", required=True, metavar="URL")
    p.add_argument(
        "--signing-key",
        type=Path,
        required=True,
        metavar="FILE",
        help="binary OpenPGP public keyring",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument(
        "--templates",
        type=Path,
        metavar="DIR",
        help="templates (default: the package's, reproducing Spectrum's files)",
    )
    p.add_argument(
        "--boot-tries",
        type=int,
        metavar="N",
        help="opt in to boot counting: new UKIs get N tries (Spectrum_V+N-0.efi), after which "
        "systemd-boot falls back to the previous version",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_render)

    p = sub.add_parser(
        "keygen",
        help="make a development signing key and public keyring",
        description="Create DIR/gnupg (GNUPGHOME) and DIR/import-pubring.gpg; "
        "print the fingerprint.",
    )
    p.add_argument("directory", type=Path, metavar="DIR")
    p.add_argument("--uid", default=None, help="user ID of the key")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_keygen)

    p = sub.add_parser(
        "serve",
        help="serve a directory over HTTP/1.1 (lab and tests)",
        description="A small file server with Range/ETag support, a JSON-lines "
        "log of bytes served, and fault switches. Default bind 127.0.0.1.",
    )
    p.add_argument("directory", type=Path, metavar="DIR")
    p.add_argument("--bind", default="127.0.0.1", metavar="ADDR")
    p.add_argument("--port", type=int, default=8080, metavar="N", help="0: pick a free port")
    p.add_argument("--log", type=Path, metavar="FILE", help="append JSON lines here")
    p.add_argument(
        "--cut",
        action="append",
        metavar="NAME=BYTES",
        help="send only BYTES body bytes of NAME, then close",
    )
    p.add_argument(
        "--delay",
        action="append",
        metavar="NAME=SECONDS",
        help="wait before answering for NAME ('*' for every file)",
    )
    p.add_argument(
        "--fail",
        action="append",
        metavar="NAME=STATUS",
        help="answer STATUS (e.g. 404, 500) for NAME",
    )
    p.add_argument("--max-connections", type=_positive, default=32, metavar="N")
    p.set_defaults(func=_serve)


def _publish(args: argparse.Namespace) -> int:
    from airlock.release import publish

    if args.spectrum:
        missing = [
            o
            for o, v in (
                ("--version", args.spectrum_version),
                ("--roothash", args.roothash),
                ("--root", args.root),
                ("--verity", args.verity),
                ("--uki", args.uki),
            )
            if v is None
        ]
        if missing or args.artifacts:
            raise UsageError(
                "--spectrum needs --version, --roothash, --root, --verity and --uki"
                " and no ARTIFACT operands",
                code="usage.invalid",
            )
        artifacts = publish.spectrum_artifacts(
            ver=args.spectrum_version,
            roothash=args.roothash,
            root=args.root,
            verity=args.verity,
            uki=args.uki,
        )
    else:
        if any(
            v is not None
            for v in (args.spectrum_version, args.roothash, args.root, args.verity, args.uki)
        ):
            raise UsageError(
                "--version/--roothash/--root/--verity/--uki need --spectrum", code="usage.invalid"
            )
        artifacts = tuple(publish.Artifact(name=a.name, source=a) for a in args.artifacts)
    transfers = publish.load_transfers(args.definitions) if args.definitions else None
    result = publish.publish(
        args.release_dir,
        artifacts,
        gnupghome=args.gnupghome,
        signers=args.signer,
        transfers=transfers,
        valid_for_days=args.valid_for,
        keep=args.keep,
        force=args.force,
    )
    summary = {
        "release_dir": os.fspath(result.release_dir),
        "version": result.version,
        "added": list(result.added),
        "removed": list(result.removed),
        "versions": list(result.versions),
        "manifest_sha256": result.manifest_sha256,
        "signers": list(result.signers),
        "best_before": result.best_before.isoformat() if result.best_before else None,
    }
    if args.json:
        print_json("published", **summary)
    else:
        print(
            f"published {result.version} into {os.fspath(result.release_dir)}: "
            f"{len(result.added)} added, {len(result.removed)} removed, "
            f"versions {', '.join(result.versions)}; signed by {', '.join(result.signers)}"
        )
    return 0


def _render(args: argparse.Namespace) -> int:
    from airlock.release import render

    result = render.render(
        ver=args.render_version,
        update_url=args.update_url,
        signing_key=args.signing_key,
        out=args.out,
        templates=args.templates,
        boot_tries=args.boot_tries,
    )
    if args.json:
        print_json(
            "rendered",
            out=os.fspath(result.out),
            files=list(result.files),
            fingerprints=list(result.fingerprints),
        )
    else:
        for rel in result.files:
            print(os.fspath(result.out / rel))
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from airlock.release import keygen

    kwargs = {"uid": args.uid} if args.uid else {}
    key = keygen.generate(args.directory, **kwargs)
    if args.json:
        print_json(
            "key",
            fingerprint=key.fingerprint,
            gnupghome=os.fspath(key.gnupghome),
            pubring=os.fspath(key.pubring),
        )
    else:
        print(key.fingerprint)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from airlock.release import serve

    faults = serve.Faults(
        cut_after_bytes={k: int(v) for k, v in _pairs(args.cut, "cut", int).items()},
        delay_s=_pairs(args.delay, "delay", float),
        status={k: int(v) for k, v in _pairs(args.fail, "fail", int).items()},
    )
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is out of range", code="usage.serve")
    config = serve.ServeConfig(
        root=args.directory,
        bind=args.bind,
        port=args.port,
        log_path=args.log,
        faults=faults,
        max_connections=args.max_connections,
    )
    server = serve.Server(config)
    try:
        print(f"serving {os.fspath(args.directory)} at {server.url}", flush=True)
        server.serve_forever()
    finally:
        server.close()
        sys.stdout.flush()
    return 0
