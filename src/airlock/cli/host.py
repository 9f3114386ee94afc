# SPDX-License-Identifier: MIT
"""Host verbs: ``update``, ``check``, ``status``, ``config show``.

``spectrum-update DIR`` is ``update --spectrum DIR``.  Every setting a flag can override is
declared once with its section (``airlock.config``); the verbs register those flags with
``config.add_flags`` and pass what was given to ``config.load``, the one place they apply.

Exit statuses (``airlock --exit-codes``): 0 updated or already up to date, 100 (``check``) a newer
verified version is available, 20 could not check (fetcher failed, timed out, sent nothing),
21 rejected (nothing applied), 22 apply failed, 4 busy, 3 bad config, 2 usage.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from functools import cmp_to_key
from pathlib import Path

from airlock import config, state
from airlock.backends.apply.sysupdate import SysupdateHostApplier
from airlock.cli.report import make_reporter, print_json
from airlock.errors import ExitStatus
from airlock.formats import version
from airlock.pipeline.context import Outcome
from airlock.pipeline.update import run_check, run_update
from airlock.pipeline.wiring import build_context, make_applier

# The settings ``update``, ``check`` and ``config show`` take as flags.
RUN_FLAGS = ("fetcher.backend", "fetcher.timeout_s", "lock.wait", "apply.runtime")
# The settings ``status`` takes as flags.
STATUS_FLAGS = ("apply.runtime",)


def effective(args: argparse.Namespace) -> config.Effective:
    """The effective config of this invocation: defaults, the file, then flags.

    The file is ``--config``, else ``/etc/airlock/host.toml`` when it exists.  ``--spectrum``
    (``spectrum-update``) adds ``spectrum-update``'s own defaults (it waits for the lock).
    """
    path = args.config
    if path is None and os.path.lexists(config.DEFAULT_FILE):
        path = config.DEFAULT_FILE
    preset = config.SPECTRUM_DEFAULTS if getattr(args, "spectrum", False) else None
    return config.load(path, flags=config.given_flags(args), preset=preset)


def _staging(raw: str) -> Path:
    path = Path(raw)
    if not path.is_absolute():
        path = Path.cwd() / path
    return path


def _result(args: argparse.Namespace, outcome: Outcome, status: ExitStatus) -> int:
    if args.json:
        print_json("result", outcome=str(outcome), exit_status=int(status))
    else:
        text = {
            Outcome.UPDATED: "Updated; the new version is used after a reboot.",
            Outcome.UP_TO_DATE: "Already up to date (a fresh, valid manifest was seen).",
            Outcome.AVAILABLE: "A newer verified version is available.",
        }[outcome]
        print(text, flush=True)
    return int(status)


def _run(args: argparse.Namespace, *, check: bool) -> int:
    ctx = build_context(
        effective(args).config,
        _staging(args.staging_dir),
        reporter=make_reporter(json_lines=args.json),
        now=datetime.now(UTC),
    )
    if check:
        outcome = run_check(ctx)
        status = ExitStatus.AVAILABLE if outcome is Outcome.AVAILABLE else ExitStatus.OK
        return _result(args, outcome, status)
    return _result(args, run_update(ctx), ExitStatus.OK)


def _update(args: argparse.Namespace) -> int:
    return _run(args, check=False)


def _check(args: argparse.Namespace) -> int:
    return _run(args, check=True)


def _sysupdate(applier: SysupdateHostApplier) -> dict[str, object]:
    """Which systemd-sysupdate applies, and whose rules the judge applies with it."""
    rt, rules = applier.runtime, applier.dialect
    return {
        "version": rt.version,
        "runtime": rt.name,
        "root": str(rt.root),
        "rules": rules.since,
        "rules_verified": rules.verified,
        "signature_names": list(
            rules.signature_names if rules.file_fallback else rules.signature_names[:1]
        ),
    }


def _status(args: argparse.Namespace) -> int:
    cfg = effective(args).config
    where: Path | None = cfg.state.path
    if args.staging_dir is not None:
        where = cfg.state.file(_staging(args.staging_dir))
    saved = state.load(where) if where is not None else state.State()
    applier = make_applier(cfg)
    installed = applier.installed()
    boot = applier.booted()
    if boot.entries:
        pending = boot.pending[-1] if boot.pending else None
    else:  # no boot entries to read: what sysupdate installed beyond the booted version
        current = installed.current
        pending = current if current and current != boot.booted else None
    failed = sorted(set(boot.failed) | set(saved.failed), key=cmp_to_key(version.compare))
    sysupdate = _sysupdate(applier)
    body: dict[str, object] = {
        **saved.to_json(),
        "booted": boot.booted,
        "blessed": boot.blessed,
        "newest_installed": installed.current,
        "installed": list(installed.versions),
        "pending_reboot": pending,
        "failed": failed,
        "state_file": os.fspath(where) if where is not None else None,
        "sysupdate": sysupdate,
    }
    body.pop("format", None)
    if args.json:
        print_json("status", **body)
        return 0
    runs = "the host's own" if sysupdate["runtime"] == "host" else f"runtime {sysupdate['root']}"
    verified = "" if sysupdate["rules_verified"] else ", not verified for this version"
    rules = f"rules of {sysupdate['rules']}{verified}"
    print(f"sysupdate:       {sysupdate['version']} ({runs}; {rules})")
    trial = " (blessed)" if boot.blessed else " (on trial: its boot counter still runs)"
    # Versions only: checked against sysupdate's version charset before they were stored.
    print(f"booted:          {boot.booted + trial if boot.booted else 'unknown'}")
    print(f"installed:       {', '.join(installed.versions) or 'none'}")
    print(f"pending reboot:  {pending or 'nothing'}")
    if failed:
        print(f"failed to boot:  {', '.join(failed)} (rolled back)")
    if where is None:
        print("last check:      unknown (give STAGING_DIR: the state is kept there)")
    elif saved.last_check is None:
        print("last check:      never (no fresh, valid manifest seen yet)")
    else:
        print(f"last check:      {saved.last_check.isoformat()} (fresh, valid manifest)")
    print(f"rollback floor:  {saved.floor or 'none'}")
    if saved.newest_signature is not None:
        print(f"newest signature: {saved.newest_signature.isoformat()}")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    eff = effective(args)
    if args.json:
        print_json("config", **config.show_json(eff))
    else:
        print(config.show(eff), end="", flush=True)
    return 0


def _common(p: argparse.ArgumentParser, *, staging: bool, flags: bool) -> None:
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"host config (TOML; default {config.DEFAULT_FILE} when it exists)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per event per line")
    p.add_argument("--spectrum", action="store_true", help="Spectrum's default paths")
    if staging:
        p.add_argument("staging_dir", metavar="STAGING_DIR", help="staging directory on btrfs")
    if flags:
        config.add_flags(p, RUN_FLAGS)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's verbs to the parser."""
    p = sub.add_parser(
        "update",
        help="fetch, judge and install the newest verified release",
        epilog="exit: 0 updated/up to date, 20 fetch, 21 rejected, 22 apply, "
        "4 busy, 3 config, 2 usage",
    )
    _common(p, staging=True, flags=True)
    p.set_defaults(func=_update)
    p = sub.add_parser(
        "check",
        help="everything but apply; exit 100 when a newer one exists",
        epilog="exit: 0 up to date, 100 newer available, 20, 21, 4, 3, 2",
    )
    _common(p, staging=True, flags=True)
    p.set_defaults(func=_check)
    p = sub.add_parser("status", help="installed versions, pending reboot, last check")
    _common(p, staging=False, flags=False)
    p.add_argument(
        "staging_dir",
        metavar="STAGING_DIR",
        nargs="?",
        help="the staging directory whose state to show (unless [state] path is set)",
    )
    config.add_flags(p, STATUS_FLAGS)
    p.set_defaults(func=_status)
    p = sub.add_parser("config", help="the effective host config")
    verbs = p.add_subparsers(
        dest="config_verb", metavar="VERB", parser_class=type(p), required=True
    )
    show = verbs.add_parser(
        "show",
        help="print the effective host config and where each value came from",
        description="Print every setting's effective value and its origin: default, the"
        " --config file, or a flag.",
    )
    _common(show, staging=False, flags=True)
    show.set_defaults(func=_config_show)
