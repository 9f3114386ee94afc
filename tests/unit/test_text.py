# SPDX-License-Identifier: MIT
"""airlock.text: the escaping every untrusted string passes through."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from airlock.text import display, display_argv


def test_controls_and_bidi_are_escaped() -> None:
    shown = display("a\x1b[31mb\r\n\u202e\u200bc")
    assert shown.isascii() and shown.isprintable()
    assert "\\x1b" in shown and "\\u202e" in shown and "\\u200b" in shown


def test_non_utf8_bytes_are_escaped() -> None:
    shown = display(b"\xff\xfeok")
    assert shown.isascii() and "ok" in shown


def test_long_values_are_cut_with_a_count() -> None:
    shown = display("x" * 1000, limit=50)
    assert len(shown) < 80 and "+" in shown


def test_display_argv_quotes_only_what_needs_it() -> None:
    assert display_argv(["/bin/echo", "plain", "two words"]) == "/bin/echo plain 'two words'"


@given(st.one_of(st.text(), st.binary()), st.integers(min_value=1, max_value=200))
def test_display_is_printable_ascii_bounded_and_deterministic(
    value: str | bytes, limit: int
) -> None:
    shown = display(value, limit=limit)
    assert shown.isascii() and shown.isprintable()
    assert len(shown) <= limit + 40
    assert shown == display(value, limit=limit)
