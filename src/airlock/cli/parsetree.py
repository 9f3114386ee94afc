# SPDX-License-Identifier: MIT
"""The argument parser as a tree of commands: what the man page and the completions are made of.

``tree(build_parser())`` walks argparse's own structures once (the sub-parsers of each verb, their
actions) into frozen values, so the generators never touch argparse internals themselves and both
describe exactly the parser ``airlock`` runs with.
"""

from __future__ import annotations

import argparse
import enum
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class Value(enum.StrEnum):
    """What the word after an option (or a positional) is, for completion."""

    NONE = "none"  # a flag: no value
    WORD = "word"  # free text: a number, a version, a URL
    CHOICE = "choice"  # one of ``choices``
    FILE = "file"  # a path (file or directory)
    DIR = "dir"  # a directory


@dataclass(frozen=True, slots=True, kw_only=True)
class Option:
    """One option or positional argument of a command."""

    flags: tuple[str, ...]  # empty for a positional
    metavar: str  # as ``--help`` shows it ("" for a flag)
    help: str
    value: Value
    choices: tuple[str, ...] = ()
    required: bool = False
    repeat: bool = False  # may be given more than once, or takes several words


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """``airlock`` or one of its verbs (``path`` is ``("config", "show")`` for ``config show``)."""

    path: tuple[str, ...]
    summary: str  # the one-line help its parent lists
    description: str
    epilog: str
    options: tuple[Option, ...]
    positionals: tuple[Option, ...]
    children: tuple[Command, ...]
    help_flag: bool = True  # takes --help (updates-dir-check, like Spectrum's tool, does not)

    @property
    def name(self) -> str:
        """``airlock config show``."""
        return " ".join(("airlock", *self.path))


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help:
        return ""
    # The formatter expands %(default)s and friends exactly as --help does.
    return " ".join(parser._get_formatter()._expand_help(action).split())


def _metavar(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if isinstance(action.metavar, str):
        return action.metavar
    if action.choices is not None:
        return "{" + ",".join(map(str, action.choices)) + "}"
    return action.dest.upper() if action.option_strings else action.dest


def _value(action: argparse.Action, metavar: str) -> tuple[Value, tuple[str, ...]]:
    if action.nargs == 0:
        return Value.NONE, ()
    if action.choices is not None:
        return Value.CHOICE, tuple(map(str, action.choices))
    if "|" in metavar and " " not in metavar:  # "cleanup|check DIR" is two arguments
        return Value.CHOICE, tuple(metavar.split("|"))
    if metavar.endswith("DIR") or action.dest.endswith(("_dir", "workdir", "gnupghome")):
        return Value.DIR, ()
    if metavar in {"PATH", "FILE"} or action.type is Path:
        return Value.FILE, ()
    return Value.WORD, ()


def _option(parser: argparse.ArgumentParser, action: argparse.Action) -> Option:
    metavar = _metavar(action)
    value, choices = _value(action, metavar)
    return Option(
        flags=tuple(action.option_strings),
        metavar=metavar,
        help=_help(parser, action),
        value=value,
        choices=choices,
        required=bool(action.required),
        repeat=isinstance(action, argparse._AppendAction) or action.nargs in ("*", "+"),
    )


def tree(parser: argparse.ArgumentParser, path: tuple[str, ...] = (), summary: str = "") -> Command:
    """The command tree under ``parser`` (hidden options and ``--help`` left out)."""
    options: list[Option] = []
    positionals: list[Option] = []
    children: list[Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                children.append(tree(sub, (*path, name), helps.get(name, "")))
        elif isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        elif action.option_strings:
            options.append(_option(parser, action))
        else:
            positionals.append(_option(parser, action))
    return Command(
        path=path,
        summary=summary,
        description=" ".join((parser.description or "").split()),
        epilog=" ".join((parser.epilog or "").split()),
        options=tuple(options),
        positionals=tuple(positionals),
        children=tuple(children),
        help_flag=any(isinstance(a, argparse._HelpAction) for a in parser._actions),
    )


def walk(command: Command) -> Iterator[Command]:
    """``command`` and every command below it, depth first, in ``--help`` order."""
    yield command
    for child in command.children:
        yield from walk(child)
