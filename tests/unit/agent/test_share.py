# SPDX-License-Identifier: MIT
"""airlock.agent.share: Spectrum's URL rule, rendering, and never writing into etc/."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from airlock.agent import share
from airlock.errors import ConfigError
from tests.unit.agent.conftest import World


@pytest.mark.parametrize(
    "url",
    [
        "https://updates.example.org/spectrum",
        "http://127.0.0.1:8080/",
        "http://[::1]:8080/x",
        "https://h/a%20b/~c,d;e=f",
        "file:///media/usb/spectrum",
        "file://localhost/media/usb",
    ],
)
def test_good_urls_are_accepted(url: str) -> None:
    assert share.validate_url(url + "\n") == url
    assert share.validate_url(url + "\n\n") == url  # $(cat) strips every trailing newline


@pytest.mark.parametrize(
    "url",
    [
        "https://h/a b",  # whitespace
        "https://h/a\tb",
        "https://h/x?y=1",  # query
        "https://h/x#frag",  # fragment
        "https://h/\x7f",  # DEL
        "https://h/\x1b[31m",  # control
        "https://h/a\\b",  # backslash (ours)
        "ftp://h/x",  # scheme
        "file:relative/path",
        "file://otherhost/x",
        "https:///nohost",
        "",
        "https://h/x\nhttps://other/y\n",  # a second line
        "\nhttps://h/x",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        share.validate_url(url)
    assert info.value.code == "config.url"


def test_non_utf8_url_is_refused() -> None:
    with pytest.raises(ConfigError):
        share.validate_url(b"https://h/\xff")


def test_render_substitutes_the_url_and_retargets_updates() -> None:
    text = "[Source]\nPath=@UPDATE_URL@\n\n[Target]\nPath=/host/updates\nMatchPattern=x_@v\n"
    out = share.render_transfer(text, url="https://h/a%20b", updates=Path("/srv/share/updates"))
    assert "Path=https://h/a%%20b\n" in out  # % doubled: systemd expands specifiers in Path=
    assert "[Target]\nPath=/srv/share/updates\n" in out


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for d, _dirs, files in sorted(os.walk(root)):
        for n in sorted(files):
            p = Path(d) / n
            st = p.lstat()
            h.update(f"{p}:{st.st_mode}:{st.st_mtime_ns}".encode() + p.read_bytes())
    return h.hexdigest()


def test_reading_and_rendering_leave_etc_untouched(world: World) -> None:
    world.set_url("https://updates.example.org/spectrum")
    before = _tree_digest(world.share / "etc")
    config = share.read_share(world.share)
    with share.rendered_definitions(config) as directory:
        transfers = share.load_transfers(directory)
        assert not directory.is_relative_to(world.share)
    assert not directory.exists()
    assert _tree_digest(world.share / "etc") == before
    assert [t.name for t in transfers] == ["50-verity", "60-root", "70-kernel"]
    assert {t.source.path for t in transfers} == {"https://updates.example.org/spectrum"}
    assert {t.target.path for t in transfers} == {os.fspath(world.updates)}
    in_memory = share.parse_transfers(config)
    assert [(t.name, t.source, t.target) for t in in_memory] == [
        (t.name, t.source, t.target) for t in transfers
    ]


def test_symlinked_update_url_is_refused(world: World) -> None:
    target = world.root / "elsewhere"
    target.write_text("https://h/x\n")
    os.symlink(target, world.share / "etc" / "update-url")
    with pytest.raises(ConfigError) as info:
        share.read_share(world.share)
    assert info.value.code == "config.share"


def test_huge_update_url_is_refused(world: World) -> None:
    (world.share / "etc" / "update-url").write_text("https://h/" + "a" * 10000)
    with pytest.raises(ConfigError):
        share.read_share(world.share)


def test_transfers_naming_two_sources_are_refused(world: World) -> None:
    world.set_url("https://h/x")
    path = world.share / "etc" / "vm-sysupdate.d" / "70-kernel.transfer"
    path.write_text(path.read_text().replace("@UPDATE_URL@", "https://other/y"))
    config = share.read_share(world.share)
    with pytest.raises(ConfigError) as info:
        share.parse_transfers(config)
    assert info.value.code == "config.definition"


def test_missing_keyring_is_a_config_error(world: World) -> None:
    world.set_url("https://h/x")
    (world.share / "etc" / "systemd" / "import-pubring.gpg").unlink()
    with pytest.raises(ConfigError) as info:
        share.read_share(world.share)
    assert info.value.code == "config.keyring"
