# SPDX-License-Identifier: MIT
"""formats.names accepts exactly its grammar."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from airlock.errors import InspectionError
from airlock.formats import names

FIRST = "abcxyzABCXYZ"
REST = FIRST + "0123456789_.-"
# The reference predicate, written independently: a regex on bytes with an explicit \Z (a
# plain '$' would also accept a trailing newline).
REFERENCE = re.compile(rb"[A-Za-z][A-Za-z0-9_.-]*\Z")


def _reference(raw: bytes) -> bool:
    return REFERENCE.match(raw) is not None and not raw.endswith(b".") and len(raw) <= 255


@given(
    st.builds(
        lambda a, b, c: a + b + c,
        st.sampled_from(FIRST),
        st.text(alphabet=REST, max_size=200),
        st.sampled_from(REST.replace(".", "")) | st.just(""),
    ).filter(lambda n: not n.endswith("."))
)
def test_grammar_names_are_accepted(name: str) -> None:
    assert names.parse(name) == name
    assert names.is_safe(name.encode())


@given(st.one_of(st.binary(max_size=300), st.binary(max_size=8).map(lambda b: b"a" + b)))
@example(b"a\n")
@example(b"..")
@example(b"-a")
@example(b"a" * 256)
def test_is_safe_is_exactly_the_reference(raw: bytes) -> None:
    assert names.is_safe(raw) == _reference(raw)
    if names.is_safe(raw):
        assert b"/" not in raw
        assert b"\0" not in raw
        assert raw not in (b".", b"..")
        assert not raw.startswith(b"-")
    else:
        with pytest.raises(InspectionError):
            names.parse(raw)


@given(st.text(max_size=40))
def test_text_and_bytes_agree(text: str) -> None:
    assert names.is_safe(text) == names.is_safe(text.encode("utf-8", "surrogateescape"))
