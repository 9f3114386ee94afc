# SPDX-License-Identifier: MIT
"""``airlock state show|reset``: the administrator's way out of a state an update cannot fix.

The state file (``airlock.state``) only moves forward: the rollback floor, the replay floor (the
newest signature time) and the freshness ratchet never go back in a run.  That is the point of
them, and also why a mistake — a release signed with a clock far ahead, a publisher that stops
writing ``BEST-BEFORE`` on purpose, a version recorded as failed that was repaired — would need
the file edited by hand.  These verbs do it safely (docs/adr/0155):

* root only: anyone else gets ``host.root`` (exit 5) before anything is read;
* the update lock (``airlock.lock``, the lock every update holds for its whole run) is taken
  without waiting for the read-modify-write, so a reset never races a run (``busy.lock``, exit 4,
  names the holder's pid);
* ``reset`` changes only the fields named (``--field NAME``, repeatable, from
  ``state.RESETTABLE``, or ``--all``) and only with ``--yes``; without it nothing is written and
  it says what would change (``usage.confirm``, exit 2);
* the new file is written atomically (``state.save``), and every change is printed, old → new.

Exit statuses: 0 done, 2 usage (no ``--yes``, no field, unknown field), 3 the state file is
corrupt (``show``; ``reset --all`` replaces it), 4 an update holds the lock, 5 not root or the
file cannot be written.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from airlock import lock, state
from airlock.cli.host import effective
from airlock.cli.report import print_json
from airlock.errors import ConfigError, HostError, UsageError
from airlock.text import display

EPILOG = "exit: 0 done, 2 usage (nothing written), 3 corrupt state, 4 busy, 5 not root"


def _require_root() -> None:
    if os.geteuid() != 0:
        raise HostError(
            "airlock state needs root (the state file is root's, mode 0600)", code="host.root"
        )


def _where(args: argparse.Namespace) -> tuple[Path, Path]:
    """The state file and the lock file of this invocation's config."""
    cfg = effective(args).config
    if args.staging_dir is not None:
        return cfg.state.file(Path(os.path.abspath(args.staging_dir))), cfg.lock.path
    if cfg.state.path is None:
        raise UsageError(
            "Which state? Give STAGING_DIR (the state is kept there unless [state] path is set)",
            code="usage.invalid",
        )
    return cfg.state.path, cfg.lock.path


def _text(value: object) -> str:
    """A state value: itself when printable ASCII (``state.load`` checks that), else escaped."""
    text = str(value)
    return text if text.isascii() and text.isprintable() else display(text)


def _shown(value: object) -> str:
    if value is None or value == []:
        return "none"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return _text(value)


def _fields(saved: state.State) -> dict[str, object]:
    body = saved.to_json()
    body.pop("format")
    return body


def _show(args: argparse.Namespace) -> int:
    _require_root()
    path, _ = _where(args)
    saved = state.load(path)
    if args.json:
        print_json(
            "state", state_file=os.fspath(path), state=_fields(saved), reset=[], previous=None
        )
        return 0
    print(f"state file: {_text(os.fspath(path))}")
    for name, value in _fields(saved).items():
        print(f"  {name + ':':18} {_shown(value)}")
    return 0


def _chosen(args: argparse.Namespace) -> tuple[str, ...]:
    if args.all:
        return tuple(state.RESETTABLE)
    if not args.field:
        raise UsageError(
            "Say what to reset: --field NAME (repeatable) or --all; nothing was written",
            code="usage.invalid",
            hint="fields: " + ", ".join(state.RESETTABLE),
        )
    return tuple(dict.fromkeys(args.field))


def _reset(args: argparse.Namespace) -> int:
    _require_root()
    fields = _chosen(args)
    path, lock_path = _where(args)
    with lock.hold(lock_path):  # never while an update runs: it would overwrite the reset
        try:
            old = state.load(path)
        except ConfigError as exc:
            if not args.all:
                raise ConfigError(
                    f"{exc.message}; only --all replaces an unreadable state file",
                    code=exc.code,
                ) from exc
            old = None  # corrupt: --all replaces it with the empty state
        new = state.reset(old or state.State(), fields)
        before = _fields(old or state.State())
        changes = [(f, before[f], value) for f, value in _fields(new).items() if before[f] != value]
        if not args.yes:
            for name, was, now in [] if args.json else changes:
                print(f"would reset {name}: {_shown(was)} -> {_shown(now)}")
            raise UsageError(
                f"Nothing was written: add --yes to reset {', '.join(fields)}",
                code="usage.confirm",
            )
        state.save(path, new)
    if args.json:
        print_json(
            "state",
            state_file=os.fspath(path),
            state=_fields(new),
            reset=list(fields),
            previous=None if old is None else before,
        )
        return 0
    if old is None:
        print(f"replaced the unreadable {_text(os.fspath(path))} with the empty state")
    for name, was, now in changes:
        what = f"  ({state.RESETTABLE[name]})" if name in state.RESETTABLE else ""
        print(f"reset {name}: {_shown(was)} -> {_shown(now)}{what}")
    if not changes:
        print("nothing to change: the fields named were already at their defaults")
    print(f"wrote {_text(os.fspath(path))}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="host config (TOML)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--spectrum", action="store_true", help="Spectrum's default paths")
    p.add_argument(
        "staging_dir",
        metavar="STAGING_DIR",
        nargs="?",
        help="the staging directory whose state.json to use (unless [state] path is set)",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``state show`` and ``state reset``."""
    p = sub.add_parser(
        "state",
        help="show or reset the persisted state (floors, freshness ratchet; root)",
        description="The administrator's way out: show the state file, or reset named fields "
        "(the rollback floor, the newest signature time, the freshness ratchet, pending, ...). "
        "Root only; refuses while an update holds the lock.",
    )
    verbs = p.add_subparsers(dest="state_verb", metavar="VERB", parser_class=type(p), required=True)
    show = verbs.add_parser("show", help="print every field of the state file", epilog=EPILOG)
    _common(show)
    show.set_defaults(func=_show)
    reset = verbs.add_parser(
        "reset",
        help="reset named fields of the state file (needs --yes)",
        description="Reset the fields named to their defaults, under the update lock, "
        "atomically. Fields: "
        + "; ".join(f"{name}: {what}" for name, what in state.RESETTABLE.items())
        + ". Without --yes nothing is written and the changes are printed.",
        epilog=EPILOG,
    )
    _common(reset)
    reset.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="NAME",
        choices=tuple(state.RESETTABLE),
        help="a field to reset (repeatable)",
    )
    reset.add_argument("--all", action="store_true", help="reset every field listed above")
    reset.add_argument("--yes", action="store_true", help="really write the reset state")
    reset.set_defaults(func=_reset)
