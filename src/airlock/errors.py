# SPDX-License-Identifier: MIT
"""The AirlockError tree, exit statuses and stable error codes.

This module is the one source of truth for what a failure means to a caller: ``ExitStatus`` says
what a script should do next, the string ``code`` says what happened.  README's exit-status table is
generated from ``ExitStatus`` (``airlock --exit-codes``).

Messages passed to these classes must already be safe to print: untrusted text goes through
``airlock.text.display()`` before it is interpolated.
"""

from __future__ import annotations

import enum

from airlock.text import display


class ExitStatus(enum.IntEnum):
    """Process exit statuses of every airlock command."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    CONFIG = 3
    BUSY = 4
    HOST = 5
    VERSION_NEWER = 11
    VERSION_OLDER = 12
    FETCH = 20
    REJECTED = 21
    APPLY = 22
    AVAILABLE = 100
    INTERRUPTED = 130


EXIT_STATUS_MEANING: dict[ExitStatus, str] = {
    ExitStatus.OK: "success (updated, already up to date, accepted, valid)",
    ExitStatus.INTERNAL: "internal error (a bug; rerun with --debug for the traceback)",
    ExitStatus.USAGE: "bad arguments",
    ExitStatus.CONFIG: "host config, transfer definitions or keyring unusable",
    ExitStatus.BUSY: "another update holds the lock",
    ExitStatus.HOST: "host unsuitable or a host operation failed",
    ExitStatus.VERSION_NEWER: "version-compare: A is newer than B",
    ExitStatus.VERSION_OLDER: "version-compare: A is older than B",
    ExitStatus.FETCH: "could not check: the fetcher failed, timed out or sent nothing usable",
    ExitStatus.REJECTED: "untrusted content refused; nothing applied",
    ExitStatus.APPLY: "systemd-sysupdate failed; state not advanced",
    ExitStatus.AVAILABLE: "check: a newer verified version is available",
    ExitStatus.INTERRUPTED: "interrupted (SIGINT/SIGTERM)",
}


# The exit status each code prefix stands for: ``usage.invalid`` exits 2, ``reject.digest`` 21.
CODE_PREFIXES: dict[str, ExitStatus] = {
    "usage": ExitStatus.USAGE,
    "config": ExitStatus.CONFIG,
    "busy": ExitStatus.BUSY,
    "host": ExitStatus.HOST,
    "fetch": ExitStatus.FETCH,
    "reject": ExitStatus.REJECTED,
    "apply": ExitStatus.APPLY,
}


class AirlockError(Exception):
    """Base of every expected failure.

    Args:
        message: one line, already escaped where it quotes untrusted text.
        code: a stable machine-readable code such as ``reject.name``; its prefix (before the
            first dot) belongs to the class's exit status (``CODE_PREFIXES``, checked by a test).
        hint: optional advice for the user.
        subject: the offending name, raw; kept escaped in ``subject`` (``text.display``) for
            machine output such as ``airlock inspect --json``.
    """

    exit_status: ExitStatus = ExitStatus.INTERNAL
    default_code: str = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        hint: str | None = None,
        subject: str | bytes | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.hint = hint
        self.subject: str | None = display(subject) if subject is not None else None

    def __str__(self) -> str:
        return self.message


class UsageError(AirlockError):
    """Bad command-line arguments."""

    exit_status = ExitStatus.USAGE
    default_code = "usage.invalid"


class ConfigError(AirlockError):
    """Host config, transfer definitions, templates or keyring unusable."""

    exit_status = ExitStatus.CONFIG
    default_code = "config.invalid"


class BusyError(AirlockError):
    """Another run holds the global lock."""

    exit_status = ExitStatus.BUSY
    default_code = "busy.lock"


class HostError(AirlockError):
    """The host is unsuitable or a host operation failed."""

    exit_status = ExitStatus.HOST
    default_code = "host.failed"


class CommandFailed(HostError):
    """A child process exited non-zero (raised by ``proc.run``)."""

    default_code = "host.command"

    def __init__(
        self,
        message: str,
        *,
        returncode: int,
        stdout: bytes = b"",
        stderr: bytes = b"",
        code: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, code=code, hint=hint)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class CommandTimedOut(HostError):
    """A child process ran past its timeout and was killed (raised by ``proc.run``)."""

    default_code = "host.timeout"


class FetchError(AirlockError):
    """Could not check: the fetcher failed, timed out or sent nothing usable."""

    exit_status = ExitStatus.FETCH
    default_code = "fetch.failed"


class BlockIndexError(FetchError):
    """A block index (``NAME.blocks``) is malformed or does not fit its file.

    The agent never fails on it: it reports the reason and downloads the whole file instead.
    """

    default_code = "fetch.index"


class RejectedError(AirlockError):
    """Untrusted content was refused; nothing was applied."""

    exit_status = ExitStatus.REJECTED
    default_code = "reject.invalid"


class InspectionError(RejectedError):
    """The staging tree breaks a structural rule (name, type, links, size, count, allowlist)."""

    default_code = "reject.inspection"


class ManifestError(RejectedError):
    """``SHA256SUMS`` is malformed.  ``line`` is 1-based, or ``None`` for whole-file problems."""

    default_code = "reject.manifest"

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        code: str | None = None,
        hint: str | None = None,
        subject: str | bytes | None = None,
    ) -> None:
        super().__init__(message, code=code, hint=hint, subject=subject)
        self.line = line


class SignatureError(RejectedError):
    """No acceptable signature over the manifest."""

    default_code = "reject.signature"


class DigestError(RejectedError):
    """A payload's SHA-256 differs from the manifest."""

    default_code = "reject.digest"


class FreshnessError(RejectedError):
    """Rollback, freeze or replay: the release is validly signed but not acceptable now."""

    default_code = "reject.freshness"


class ApplyError(AirlockError):
    """systemd-sysupdate failed; the state was not advanced."""

    exit_status = ExitStatus.APPLY
    default_code = "apply.failed"


class FormatError(ConfigError):
    """A trusted-side input (definition file, pattern, version) is malformed.

    ``where`` names ``file:line`` when known.
    """

    default_code = "config.format"
