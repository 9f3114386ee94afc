# SPDX-License-Identifier: MIT
"""Command-line entry points.

``main(argv)`` parses, sets up logging and the reporter, dispatches to a verb, and is the only
place that turns ``AirlockError`` into an exit status.  Each verb module exposes
``register(subparsers)``; the table below lists them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from airlock import __version__
from airlock.cli.jsonout import print_json
from airlock.errors import EXIT_STATUS_MEANING, AirlockError, ExitStatus, UsageError
from airlock.text import display

# Verb modules, in --help order, with the verbs each registers (register(subparsers) -> None).
# Only the module of the verb being run is imported: the agent inside the VM never loads host
# code, and a short command does not pay for HTTP or terminal libraries it does not use.
VERBS: dict[str, tuple[str, ...]] = {
    "airlock.cli.host": ("update", "check", "status", "config"),
    "airlock.cli.admin": ("state",),
    "airlock.cli.inspection": ("inspect",),
    "airlock.cli.release": ("publish", "render", "keygen", "serve"),
    "airlock.cli.agent": ("agent",),
    "airlock.cli.tools": ("version-compare", "pattern"),
    "airlock.cli.manifest": ("manifest",),
    "airlock.cli.dircheck": ("updates-dir-check",),
    "airlock.cli.lab": ("demo",),
}
VERB_MODULES = tuple(VERBS)
SCHEMA = "schemas/airlock.v1.schema.json"  # the promised shape of --json (docs/json.md)


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so errors stay one line."""

    def error(self, message: str) -> None:  # type: ignore[override]  # argparse says NoReturn
        raise UsageError(f"{self.prog}: {message}", code="usage.invalid")


def _module_for(argv: Sequence[str]) -> str | None:
    """The verb module for ``argv``'s verb, or None (help, unknown verb: load them all)."""
    for arg in argv:
        if not arg.startswith("-"):
            return next((mod for mod, verbs in VERBS.items() if arg in verbs), None)
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The argument parser (only the verb module ``argv`` needs, or all of them)."""
    parser = _Parser(
        prog="airlock",
        description="A secure OS updater: an untrusted VM downloads, the host judges and applies.",
    )
    parser.add_argument("--version", action="version", version=f"airlock {__version__}")
    parser.add_argument("--debug", action="store_true", help="debug logging and tracebacks")
    parser.add_argument(
        "--exit-codes", action="store_true", help="print the exit-status table and exit"
    )
    parser.add_argument(
        "--json-schema",
        action="store_true",
        help="print the JSON Schema of every --json output and exit",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    only = _module_for(argv)
    for name in VERB_MODULES:
        if only is None or name == only:
            importlib.import_module(name).register(sub)
    return parser


def exit_code_table() -> str:
    """README's exit-status table, generated from ExitStatus."""
    rows = ["| status | meaning |", "|---|---|"]
    rows += [f"| {s.value} | {EXIT_STATUS_MEANING[s]} |" for s in ExitStatus]
    return "\n".join(rows)


def json_schema() -> str:
    """The JSON Schema of every ``--json`` output, as shipped in the package."""
    from importlib import resources  # here: importing it costs ≈ 20 ms of every command

    return resources.files("airlock").joinpath(SCHEMA).read_text(encoding="utf-8")


def _setup_logging(debug: bool) -> Callable[[], None]:
    """Log to this run's stderr; returns what undoes it (``main`` may run more than once)."""
    log = logging.getLogger("airlock")
    level, propagate = log.level, log.propagate
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.WARNING)
    log.propagate = False

    def restore() -> None:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate

    return restore


def _report_error(exc: AirlockError, *, as_json: bool) -> None:
    from airlock.cli.report import notify_status  # here: a verb that succeeds never needs it

    notify_status(f"failed: [{exc.code}] {_one_line(exc.message)}")
    if as_json:
        print_json("error", code=exc.code, message=exc.message, exit_status=int(exc.exit_status))
    # The message is already escaped where it quotes untrusted text; escape controls anyway.
    print(f"error: {_one_line(exc.message)}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {_one_line(exc.hint)}", file=sys.stderr)


def _one_line(text: str) -> str:
    if text.isprintable():
        return text
    return display(text, limit=2000)[1:-1]


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM (systemctl stop, kill) unwinds like ^C: every step's cleanup runs (the VM is
    # stopped, mounts and the snapshot are removed) and the exit status is 130.
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run airlock with ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list or os.environ.get("AIRLOCK_DEBUG") == "1"
    as_json = "--json" in args_list
    restore_logging = _setup_logging(debug)
    try:
        return _run(args_list, debug=debug, as_json=as_json)
    finally:
        # A handler left behind would write to this run's stderr after it is gone (in-process
        # callers: the lab, the tests).
        restore_logging()


def _run(args_list: list[str], *, debug: bool, as_json: bool) -> int:
    try:
        parser = build_parser(args_list)
        args = parser.parse_args(args_list)
        if args.exit_codes:
            print(exit_code_table())
            return 0
        if args.json_schema:
            print(json_schema(), end="")
            return 0
        if not getattr(args, "func", None):
            parser.print_help()
            return int(ExitStatus.USAGE) if args.verb is None and not args_list else 0
        return int(args.func(args))
    except AirlockError as exc:
        _report_error(exc, as_json=as_json)
        if debug:
            logging.getLogger("airlock").exception("traceback")
        return int(exc.exit_status)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    except Exception as exc:
        if debug:
            logging.getLogger("airlock").exception("internal error")
        print(
            f"error: internal error: {type(exc).__name__}: {display(str(exc), limit=300)}"
            " (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return int(ExitStatus.INTERNAL)


def spectrum_update_main() -> int:
    """``spectrum-update STAGING_DIR``: Spectrum's one-argument entry point."""
    argv = sys.argv[1:]
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: spectrum-update STAGING_DIR", file=sys.stderr)
        return int(ExitStatus.USAGE)
    return main(["update", "--spectrum", argv[0]])
