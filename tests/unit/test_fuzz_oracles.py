# SPDX-License-Identifier: MIT
"""Negative controls for the fuzz targets' oracles: each fires when its defence is broken.

A target that can never fail proves nothing.  Each test breaks one rule of the code under test in
process (``monkeypatch``), runs the target's own seeds, and requires the target to report it:
``FuzzFailure`` for a broken invariant or an unprintable message, or the stray exception itself.
The same seeds pass on the real code (``test_fuzz_smoke.py::test_seeds_pass_the_oracle``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import pytest

import fuzz.definitions
import fuzz.manifest
import fuzz.pattern
import fuzz.signature
import fuzz.tree
import fuzz.version
from airlock.backends.openpgp import packets
from airlock.errors import FormatError
from airlock.formats import manifest, pattern, sdconf, transfer, version
from airlock.untrusted import walk
from fuzz.common import FuzzFailure


def _some_seed_fails(test_one: Callable[[bytes], None], seeds: list[bytes]) -> BaseException:
    for seed in seeds:
        try:
            test_one(seed)
        except (FuzzFailure, ValueError) as exc:
            return exc
    pytest.fail("no seed made the target fail")


def test_tree_oracle_fires_when_the_walk_lists_non_regular_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the walk's type/link/mode/size check, the listing oracle reports what it kept."""
    monkeypatch.setattr(walk, "_check_regular", lambda st, raw, limits: None)
    exc = _some_seed_fails(fuzz.tree.test_one, list(fuzz.tree.seeds()))
    assert isinstance(exc, FuzzFailure)
    assert not [p for p in os.listdir(fuzz.tree._workdir()) if p == "snapshot"]  # removed


def test_manifest_oracle_fires_when_format_loses_best_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = manifest.format
    monkeypatch.setattr(manifest, "format", lambda entries, best_before=None: real(entries))
    exc = _some_seed_fails(fuzz.manifest.test_one, list(fuzz.manifest.seeds()))
    assert "BEST-BEFORE" in str(exc)


def test_version_oracle_fires_on_an_order_that_is_not_antisymmetric(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(version, "compare", lambda a, b: 0 if a == b else 1)
    exc = _some_seed_fails(fuzz.version.test_one, list(fuzz.version.seeds()))
    assert "antisymmetric" in str(exc)


def test_pattern_oracle_fires_when_format_does_not_read_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pattern.Pattern, "format", lambda self, fields: "no-match")
    exc = _some_seed_fails(fuzz.pattern.test_one, list(fuzz.pattern.seeds()))
    assert "does not match" in str(exc)


def test_definitions_oracle_fires_on_a_message_with_a_raw_newline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An error quoting input without ``text.display`` is a crash, although its type is right."""

    def unescaped(
        origin: str, line: int | None, problem: str, *, key: str | None = None
    ) -> FormatError:
        return FormatError(f"{origin}:{line}: {key}=:\n{problem}", code="config.definition")

    monkeypatch.setattr(sdconf, "fail", unescaped)
    monkeypatch.setattr(transfer, "fail", unescaped)
    exc = _some_seed_fails(fuzz.definitions.test_one, list(fuzz.definitions.seeds()))
    assert "printable" in str(exc)


def test_signature_oracle_fires_on_a_naive_creation_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A parser that dropped the time zone would let a local clock skew the future check."""
    real = packets._parse_v4

    def naive(body: bytes) -> packets.SignaturePacket:
        sig = real(body)
        return dataclasses.replace(sig, created=sig.created.replace(tzinfo=None))

    monkeypatch.setattr(packets, "_parse_v4", naive)
    exc = _some_seed_fails(fuzz.signature.test_one, list(fuzz.signature.seeds()))
    assert "naive" in str(exc)


def test_signature_oracle_fires_when_armour_changes_the_packets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A dearmor that decodes armour wrongly (here: the bytes reversed): a binary file is still
    # accepted, and its armoured twin must then be refused or differ.
    real = packets.dearmor

    def reversed_armour(raw: bytes, *, kind: bytes) -> bytes:
        out = real(raw, kind=kind)
        return out[::-1] if out != raw else out

    monkeypatch.setattr(packets, "dearmor", reversed_armour)
    exc = _some_seed_fails(fuzz.signature.test_one, list(fuzz.signature.seeds()))
    assert isinstance(exc, FuzzFailure)
    assert "twin" in str(exc)
