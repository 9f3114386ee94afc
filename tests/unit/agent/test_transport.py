# SPDX-License-Identifier: MIT
"""airlock.agent.transport: URL joining, validators, file:// sources."""

from __future__ import annotations

import http.client
import time
from pathlib import Path

import pytest

from airlock.agent import transport, web
from airlock.agent.offline import FileSource
from airlock.errors import FetchError


@pytest.mark.parametrize(
    ("base", "name", "url"),
    [
        ("https://h/dir", "SHA256SUMS", "https://h/dir/SHA256SUMS"),
        ("https://h/dir///", "SHA256SUMS", "https://h/dir/SHA256SUMS"),
        ("http://[::1]:8080", "Spectrum_1.efi", "http://[::1]:8080/Spectrum_1.efi"),
        ("file:///media/usb/", "a+b", "file:///media/usb/a%2Bb"),
    ],
)
def test_join_appends_one_quoted_name(base: str, name: str, url: str) -> None:
    assert transport.join(base, name) == url


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"etag": '"abc"', "last-modified": "Wed, 21 Oct 2015 07:28:00 GMT"}, '"abc"'),
        (
            {"etag": 'W/"weak"', "last-modified": "Wed, 21 Oct 2015 07:28:00 GMT"},
            "Wed, 21 Oct 2015 07:28:00 GMT",
        ),
        ({"etag": 'W/"weak"'}, None),  # a weak ETag may not be used with If-Range
        ({"last-modified": "not a date"}, None),
        ({}, None),
    ],
)
def test_validator_prefers_a_strong_etag(headers: dict[str, str], expected: str | None) -> None:
    response = http.client.HTTPResponse.__new__(http.client.HTTPResponse)
    response.headers = http.client.HTTPMessage()
    for key, value in headers.items():
        response.headers[key] = value
    assert web._validator(response) == expected


def test_file_source_decodes_percent_escapes(tmp_path: Path) -> None:
    stick = tmp_path / "usb stick"
    stick.mkdir()
    (stick / "SHA256SUMS").write_bytes(b"x")
    source = transport.source_for(f"file://{tmp_path}/usb%20stick", stall_s=1, deadline=0)
    with source.open("SHA256SUMS") as body:
        assert body is not None
        assert b"".join(transport.iter_chunks(body)) == b"x"
    with source.open("absent") as body:
        assert body is None


def test_file_source_resumes_only_with_the_same_validator(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    source = FileSource(f"file://{tmp_path}")
    with source.open("f") as body:
        assert body is not None
        validator = body.validator
    with source.open("f", offset=4, validator=validator) as body:
        assert body is not None
        assert (body.offset, b"".join(transport.iter_chunks(body))) == (4, b"456789")
    with source.open("f", offset=4, validator="other") as body:
        assert body is not None
        assert body.offset == 0


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(FetchError):
        transport.source_for("gopher://h/x", stall_s=1, deadline=time.monotonic())
