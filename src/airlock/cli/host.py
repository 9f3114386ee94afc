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
from pathlib import Path

from airlock import config, state, status
from airlock.cli.report import make_reporter, notify_status, print_json
from airlock.errors import ExitStatus
from airlock.pipeline.context import Outcome, RunContext
from airlock.pipeline.update import run_check, run_update
from airlock.pipeline.wiring import build_context

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


RESULT_TEXT = {
    Outcome.UPDATED: "Updated; the new version is used after a reboot.",
    Outcome.UP_TO_DATE: "Already up to date",
    Outcome.AVAILABLE: "A newer verified version is available.",
}


def result_text(outcome: Outcome, saved: state.State, now: datetime) -> str:
    """The last line of a successful run; "up to date" says what the run could know.

    ``saved`` is the state the run recorded: its ``last_check`` is the run's reference time
    exactly when the run saw a fresh manifest (``state.fresh``).
    """
    if outcome is not Outcome.UP_TO_DATE:
        return RESULT_TEXT[outcome]
    text = status.freshness_text(saved, now)
    if saved.last_check == now:
        return f"{RESULT_TEXT[outcome]} ({text})."
    return f"{RESULT_TEXT[outcome]} as far as known ({text})."


def _result(args: argparse.Namespace, outcome: Outcome, code: ExitStatus, ctx: RunContext) -> int:
    saved = state.load(ctx.state_file)
    text = result_text(outcome, saved, ctx.now)
    notify_status(text)
    if args.json:
        fresh = saved.last_check == ctx.now
        print_json("result", outcome=str(outcome), exit_status=int(code), fresh=fresh)
    else:
        print(text, flush=True)
    return int(code)


def _run(args: argparse.Namespace, *, check: bool) -> int:
    ctx = build_context(
        effective(args).config,
        _staging(args.staging_dir),
        reporter=make_reporter(json_lines=args.json),
        now=datetime.now(UTC),
    )
    if check:
        outcome = run_check(ctx)
        code = ExitStatus.AVAILABLE if outcome is Outcome.AVAILABLE else ExitStatus.OK
        return _result(args, outcome, code, ctx)
    return _result(args, run_update(ctx), ExitStatus.OK, ctx)


def _update(args: argparse.Namespace) -> int:
    return _run(args, check=False)


def _check(args: argparse.Namespace) -> int:
    return _run(args, check=True)


def _status(args: argparse.Namespace) -> int:
    staging = None if args.staging_dir is None else _staging(args.staging_dir)
    facts = status.gather(effective(args).config, now=datetime.now(UTC), staging_dir=staging)
    advice = status.advise(facts)
    if args.json:
        print_json("status", **status.as_json(facts, advice))
    else:
        print(status_text(facts, advice), end="", flush=True)
    return 0


def _runtime_text(rt: status.RuntimeInfo) -> str:
    """``systemd-sysupdate 262 (runtime 262 at CACHE/testing; rules of 262)``."""
    where = "the host's own" if rt.source == "host" else f"runtime {rt.name} at {rt.root}"
    rules = "" if rt.rules is None else f"; rules of {rt.rules}"
    unverified = "" if rt.rules_verified else ", not verified for this version"
    return f"systemd-sysupdate {rt.version} ({where}{rules}{unverified})"


def status_text(facts: status.Facts, advice: status.Advice) -> str:
    """``airlock status`` for a person: one line per fact, the next action last."""
    shown = status.shown_version
    saved = facts.saved
    if facts.booted is None:
        booted = "unknown (no IMAGE_VERSION)"
    else:
        if not facts.blessed:
            trial = " (on trial: its boot counter still runs)"
        else:  # with boot entries to go by: a good boot
            trial = " (blessed)" if facts.entry_pending is not None else ""
        booted = shown(facts.booted) + trial
    lines = [f"booted:      {booted}"]
    installed = ", ".join(shown(v) for v in facts.installed) or "none"  # newest first
    lines.append(f"installed:   {installed}")
    pending = ", ".join(shown(v) for v in facts.pending)
    lines.append(f"pending:     {pending + ' (after a reboot)' if pending else 'nothing'}")
    if facts.failed:
        failed = ", ".join(shown(v) for v in facts.failed)
        lines.append(f"failed:      {failed} (did not boot; rolled back)")
    if saved.available is not None:
        lines.append(f"available:   {shown(saved.available)} (verified by the last check)")
    if facts.state_file is None:
        lines.append("last check:  unknown (give STAGING_DIR: the state is kept there)")
    elif saved.last_check is None:
        lines.append("last check:  never (no fresh, valid manifest seen yet)")
    else:
        # Never "fresh" without an unexpired BEST-BEFORE (docs/adr/0155): a VM replaying the
        # last release is "no newer manifest since …", an unmarked one "freshness unknown".
        ago = status.age(facts.check_age_s or 0.0)
        kind, text = facts.freshness, status.freshness_text(saved, facts.now)
        stale = ", stale" if facts.stale and kind is not status.Freshness.EXPIRED else ""
        if kind is status.Freshness.NO_NEWER:
            lines.append(f"last check:  {text} ({ago} ago{stale})")
        else:
            when = saved.last_check.strftime("%Y-%m-%d %H:%M:%S UTC")
            lines.append(f"last check:  {when}, {ago} ago ({text}{stale})")
    if saved.floor:
        floor = f"{saved.floor} (older releases are refused)"
    else:
        floor = "unknown" if facts.state_file is None else "none"
    lines.append(f"floor:       {floor}")
    if facts.runtime is None:
        lines.append("runtime:     none usable")
    else:
        lines.append(f"runtime:     {_runtime_text(facts.runtime)}")
    lines += [f"problem:     [{p.code}] {p.message}" for p in facts.problems]
    lines += [f"warning:     {w}" for w in facts.warnings]
    if advice.action is status.Action.FIX:
        lines.append("next:        fix the problem above, then run airlock status again")
    else:
        command = f": {advice.command}" if advice.command else ""
        lines.append(f"next:        {advice.action}{command} ({advice.reason})")
    return "\n".join(lines) + "\n"


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
    p = sub.add_parser(
        "status",
        help="booted, installed and pending versions, last check, floor, runtime, what next",
        description="Show the host's update state at a glance: the booted, installed and "
        "pending versions, a newer release the last check verified, the last successful check "
        "and whether it is stale, the rollback floor, the systemd-sysupdate runtime, and the "
        "next action (fix, reboot, update, check or none). The last check, the floor and the "
        "available release come from the state file: [state] path, else state.json in "
        "STAGING_DIR (unknown without either). What cannot be read is listed as a problem with "
        "its error code; the rest is still shown (exit 0).",
    )
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
