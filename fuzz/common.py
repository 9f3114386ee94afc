# SPDX-License-Identifier: MIT
"""What every target shares: a reader that turns fuzz bytes into choices, and the error oracle.

The oracle is the project's rule for bad input: only the documented ``AirlockError`` subclass may
escape, with a stable code of the documented prefix and a message that is one printable line
(untrusted text passed through ``text.display``).  Anything else is a crash.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from airlock.errors import AirlockError


class FuzzFailure(AssertionError):
    """An invariant of the code under test was broken (the fuzzer reports it as a crash)."""


class Reader:
    """Consume fuzz bytes as small choices; past the end every read gives zeros or nothing."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        """The next byte (0 past the end)."""
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def below(self, n: int) -> int:
        """A choice in ``range(n)``, ``n`` ≤ 256."""
        return self.byte() % n

    def take(self, n: int) -> bytes:
        """Up to ``n`` next bytes."""
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk

    def rest(self) -> bytes:
        """Everything not consumed yet."""
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


def check(condition: bool, what: str) -> None:
    """Raise ``FuzzFailure`` unless ``condition`` (``assert`` would vanish under ``-O``)."""
    if not condition:
        raise FuzzFailure(what)


def check_error(exc: AirlockError, prefixes: tuple[str, ...]) -> None:
    """The bad-input rule: a documented code, and a one-line printable message and hint."""
    check(exc.code.startswith(prefixes), f"undocumented code {exc.code!r}")
    for text in (exc.message, exc.hint or ""):
        check(text.isprintable(), f"message not one printable line: {text!r}")


@contextlib.contextmanager
def refusals(types: tuple[type[AirlockError], ...], *prefixes: str) -> Iterator[None]:
    """Let only ``types`` (with a code under ``prefixes``) escape the block, and check them."""
    try:
        yield
    except types as exc:
        check_error(exc, prefixes)
