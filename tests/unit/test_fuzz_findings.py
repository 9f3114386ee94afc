# SPDX-License-Identifier: MIT
"""Inputs the fuzz targets (``fuzz/``) found crashing, kept as regression tests.

Each finding is the input as libFuzzer wrote it, the documented refusal it now gets, and a
negative control: the target's oracle still reports it as a crash when the fix is taken out.
"""

from __future__ import annotations

import pytest

import fuzz.url
from airlock.errors import ConfigError
from airlock.formats import updateurl
from fuzz.common import FuzzFailure

# fuzz/url.py, 2,167 executions from its seeds with only the ASCII rule in place:
# "https://%s%s:%2\n": the port "%2" passed Spectrum's rule; the agent's HTTP transport then
# raised ValueError from urllib's .port (a traceback, exit 1, instead of config.url).
PORT_NOT_A_NUMBER = b"https://%s%s:%2\n"
# Found by reading what the port finding pointed at (urlsplit raises before .port is read):
UNBALANCED_BRACKET = b"http://[::1/x"
PORT_OUT_OF_RANGE = b"http://h:99999/"
# fuzz/url.py, from its seed corpus on the first run: sysupdate refuses a non-ASCII URL in the
# rendered transfer, so the VM would fail later with config.definition instead of config.url.
NON_ASCII_HOST = "https://u\u00e9.example/".encode()

FINDINGS = (PORT_NOT_A_NUMBER, UNBALANCED_BRACKET, PORT_OUT_OF_RANGE, NON_ASCII_HOST)


@pytest.mark.parametrize("raw", FINDINGS)
def test_update_url_finding_is_refused_with_config_url(raw: bytes) -> None:
    with pytest.raises(ConfigError) as info:
        updateurl.validate(raw)
    assert info.value.code == "config.url"
    assert info.value.message.isprintable()
    fuzz.url.test_one(raw)  # the target's oracle is satisfied


@pytest.mark.parametrize("raw", FINDINGS)
def test_the_url_oracle_fires_without_the_fix(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: with the rule added for these findings removed, each input crashes."""
    monkeypatch.setattr(updateurl, "_check_parts", lambda text: None)
    with pytest.raises((ValueError, FuzzFailure)):
        fuzz.url.test_one(raw)


def test_a_good_url_with_a_port_is_still_accepted() -> None:
    assert updateurl.validate(b"http://[::1]:8080/x\n") == "http://[::1]:8080/x"
    assert updateurl.validate(b"https://h:443") == "https://h:443"
