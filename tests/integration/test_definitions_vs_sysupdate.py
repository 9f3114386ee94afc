# SPDX-License-Identifier: MIT
"""Differential: airlock.formats.definitions against the real systemd-sysupdate of each runtime.

Each definition is given to both.  What airlock accepts, sysupdate must load without a warning;
what it refuses, airlock must refuse; what it only warns about and ignores, airlock refuses (ADR
0020) and names the same line.  Each runtime (257 and 262) is run the way ``airlock update`` runs
it (``tests.support.oracles``): ``--offline list`` (no network, no installation) in a private
mount namespace that is gone when the process exits, with one fixed os-release bound over the
runtime's (as the product binds the host's), so specifiers expand alike in both.  Where the two
versions read a value differently, airlock accepts only what both read alike.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from airlock.backends.apply.runtime import Runtime
from airlock.errors import FormatError
from airlock.formats import definitions as d
from airlock.formats import dialect
from tests.support.oracles import WORK, sysupdate

pytestmark = pytest.mark.sysupdate


@dataclass(frozen=True, slots=True)
class Listed:
    returncode: int
    stdout: str
    stderr: str


OS_RELEASE = 'ID=debian\nVERSION_ID="13"\nVERSION_CODENAME=trixie\nBUILD_ID=b1\n'


def os_release(defs: Path) -> Path:
    """The fixed os-release, beside (not in) the definitions directory."""
    path = defs.parent / f"{defs.name}.os-release"
    path.write_text(OS_RELEASE)
    return path


def sysupdate_defs(rt: Runtime, defs: Path, *args: str) -> Listed:
    done = sysupdate(rt, defs, f"--definitions={WORK}", *args, os_release=os_release(defs))
    return Listed(
        returncode=done.returncode,
        stdout=done.stdout.decode(errors="replace"),
        stderr=done.stderr.decode(errors="replace"),
    )


def runtime_specifiers(rt: Runtime) -> d.Specifiers:
    """The specifiers sysupdate expands in ``rt`` (from the os-release bound over its own)."""
    del rt  # every runtime gets OS_RELEASE
    return d.Specifiers.from_os_release(OS_RELEASE)


def warnings(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if re.search(r"ignoring|Unknown|[Ff]ailed|refusing", line)
    ]


BASE = """\
[Source]
Type=url-file
Path=https://updates.example/os
MatchPattern=os_@v.raw

[Target]
Path=/run/targets/os
"""

ACCEPTED = {
    "minimal": BASE,
    "every-fs-key": """\
[Transfer]
MinVersion=1.0
ProtectVersion=2.0
ProtectVersion=%w
Verify=no
ChangeLog=https://h/changes/@v
AppStream=https://h/%o/%w.xml
Features=
RequisiteFeatures=

[Source]
Type=url-file
Path=https://h/%o
PathRelativeTo=root
MatchPattern=os_@v_@u.raw os_@v.raw

[Target]
Type=regular-file
Path=/run/targets/os
PathRelativeTo=root
MatchPattern=os_@v+@l-@d.raw os_@v.raw
Mode=0644
TriesLeft=3
TriesDone=0
InstancesMax=4
RemoveTemporary=no
ReadOnly=yes
CurrentSymlink=current
X-Local=ignored by both
""",
    "tree": """\
[Source]
Type=url-tar
Path=https://h/trees
MatchPattern=tree_@v.tar.xz

[Target]
Type=directory
Path=/run/targets/trees
MatchPattern=tree_@v
""",
    "spectrum-vm": (Path(__file__).resolve().parents[1] / "data/spectrum/vm/60-root.transfer")
    .read_text()
    .replace("@UPDATE_URL@", "https://spectrum-os.org/updates")
    .replace("/host/updates", "/run/targets/spectrum"),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_what_airlock_accepts_257_loads_without_warnings(
    systemd_runtime: Runtime, tmp_path: Path, name: str
) -> None:
    (tmp_path / f"10-{name}.transfer").write_text(ACCEPTED[name])
    (t,) = d.load_dir(tmp_path, specifiers=runtime_specifiers(systemd_runtime))
    result = sysupdate_defs(systemd_runtime, tmp_path, "--offline", "--json=short", "list")
    assert result.returncode == 0, result.stderr
    assert warnings(result.stderr) == []
    # the AppStream URLs, specifiers expanded, are the one parsed value 257 prints
    assert json.loads(result.stdout)["appstreamUrls"] == list(t.appstream)


def test_specifier_expansion_matches(systemd_runtime: Runtime, tmp_path: Path) -> None:
    text = BASE.replace(
        "[Source]", "[Transfer]\nAppStream=https://h/%o/%w/%W/%B/%M/%A/%%.xml\n\n" "[Source]"
    )
    (tmp_path / "10-a.transfer").write_text(text)
    (t,) = d.load_dir(tmp_path, specifiers=runtime_specifiers(systemd_runtime))
    result = sysupdate_defs(systemd_runtime, tmp_path, "--offline", "--json=short", "list")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["appstreamUrls"] == list(t.appstream)
    assert t.appstream[0].startswith("https://h/debian/13/")


WARNED = {
    # name: (line to add under a section, section) — 257 warns and ignores, airlock refuses
    "unknown-key": ("Transfer", "Bogus=1"),
    "bad-boolean": ("Transfer", "Verify=sometimes"),
    "min-version-specifier": ("Transfer", "MinVersion=%A"),
    "bad-protect-version": ("Transfer", "ProtectVersion=1:rc1"),
    "non-http-changelog": ("Transfer", "ChangeLog=ftp://h/x"),
    "bad-instances": ("Target", "InstancesMax=lots"),
    "bad-mode": ("Target", "Mode=banana"),
    "bad-uuid": ("Target", "PartitionUUID=xyz"),
    "typo-partition-type": ("Target", "MatchPartitionType=rooot"),
    "unknown-specifier": ("Target", "CurrentSymlink=%z"),
}


@pytest.mark.parametrize("name", sorted(WARNED))
def test_what_257_only_warns_about_airlock_refuses_at_the_same_line(
    systemd_runtime: Runtime, tmp_path: Path, name: str
) -> None:
    section, line = WARNED[name]
    text = BASE if f"[{section}]" in BASE else f"[{section}]\n\n{BASE}"
    text = text.replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1)
    number = text.splitlines().index(line) + 1
    path = tmp_path / "10-a.transfer"
    path.write_text(text)
    result = sysupdate_defs(systemd_runtime, tmp_path, "--offline", "list")
    assert result.returncode == 0, result.stderr
    assert any(
        w.startswith(f"{WORK}/10-a.transfer:{number}:") for w in warnings(result.stderr)
    ), result.stderr
    with pytest.raises(FormatError) as info:
        d.load_dir(tmp_path, specifiers=runtime_specifiers(systemd_runtime))
    assert f"{path}:{number}:" in info.value.message


@pytest.mark.parametrize("value", ["1~rc1", "1,1"])
def test_a_version_only_some_sysupdates_accept_is_refused(
    systemd_runtime: Runtime, tmp_path: Path, value: str
) -> None:
    # "~" is a version character from 260 on, "," only before: airlock accepts neither, so a
    # definition means the same to every runtime.
    text = f"[Transfer]\nProtectVersion={value}\n\n{BASE}"
    (tmp_path / "10-a.transfer").write_text(text)
    result = sysupdate_defs(systemd_runtime, tmp_path, "--offline", "list")
    assert result.returncode == 0, result.stderr
    valid_here = dialect.for_version(systemd_runtime.version).version_is_valid(value)
    warned = any(w.startswith(f"{WORK}/10-a.transfer:2:") for w in warnings(result.stderr))
    assert warned is not valid_here, result.stderr
    assert {value in "1~rc1", valid_here} != {True} or systemd_runtime.version >= 260
    with pytest.raises(FormatError):
        d.load_dir(tmp_path, specifiers=runtime_specifiers(systemd_runtime))


REFUSED = {
    "no-source-type": BASE.replace("Type=url-file\n", ""),
    "partition-source": BASE.replace("Type=url-file", "Type=partition"),
    "incompatible": BASE.replace("Path=/run/targets/os", "Type=directory\nPath=/run/t"),
    "relative-target": BASE.replace("Path=/run/targets/os", "Path=run/t"),
    "bad-url": BASE.replace("https://updates.example/os", "ftp://updates.example/os"),
    "no-version-field": BASE.replace("os_@v.raw", "os.raw"),
    "explicit-target": BASE.replace("Path=/run/targets/os", "Path=/t\nPathRelativeTo=explicit"),
    "no-pattern": BASE.replace("MatchPattern=os_@v.raw\n", ""),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_257_refuses_airlock_refuses(
    systemd_runtime: Runtime, tmp_path: Path, name: str
) -> None:
    (tmp_path / "10-a.transfer").write_text(REFUSED[name])
    result = sysupdate_defs(systemd_runtime, tmp_path, "--offline", "list")
    assert result.returncode != 0
    with pytest.raises(FormatError):
        d.load_dir(tmp_path, specifiers=runtime_specifiers(systemd_runtime))


def test_masking_dropins_and_conf_fallback_agree(systemd_runtime: Runtime, tmp_path: Path) -> None:
    (tmp_path / "10-a.conf").write_text(
        BASE.replace("[Source]", "[Transfer]\n" "AppStream=https://h/a\n\n[Source]")
    )
    (tmp_path / "20-b.conf").write_text(BASE.replace("os_@v", "b_@v"))
    (tmp_path / "20-b.conf.d").mkdir()
    (tmp_path / "10-a.conf.d").mkdir()
    (tmp_path / "10-a.conf.d" / "x.conf").write_text("[Transfer]\nAppStream=https://h/drop-in\n")
    (tmp_path / "30-c.conf").symlink_to("/dev/null")
    transfers = d.load_dir(tmp_path, specifiers=runtime_specifiers(systemd_runtime))
    assert [t.name for t in transfers] == ["10-a", "20-b"]
    result = sysupdate_defs(systemd_runtime, tmp_path, "--offline", "--json=short", "list")
    assert result.returncode == 0, result.stderr
    expected = [u for t in transfers for u in t.appstream]
    assert json.loads(result.stdout)["appstreamUrls"] == expected
    assert expected == ["https://h/a", "https://h/drop-in"]


def gpt_flags_after_install(rt: Runtime, work: Path, flags: str) -> int | None:
    """Install one version into a two-slot GPT image with ``PartitionFlags=flags``.

    Returns the new slot's attribute bits, or ``None`` if 257 refused to write them.
    """
    for sub in ("defs", "src", "img"):
        (work / sub).mkdir(parents=True)
    image = work / "img" / "disk.img"
    (work / "src" / "p_1.raw").write_bytes(bytes(512) + os.urandom(65024))
    (work / "defs" / "10-p.transfer").write_text(
        f"[Source]\nType=regular-file\nPath={WORK}/src\nMatchPattern=p_@v.raw\n\n"
        f"[Target]\nType=partition\nPath={image}\nMatchPattern=p_@v\n"
        f"PartitionFlags={flags}\n"
    )
    with image.open("wb") as handle:
        handle.truncate(8 << 20)
    slot = 'size=2MiB, type=0fc63daf-8483-4772-8e79-3d69d8477de4, name="_empty"\n'
    subprocess.run(
        ["sfdisk", "-q", os.fspath(image)],
        input="label: gpt\n" + slot * 2,
        text=True,
        check=True,
        timeout=30,
        capture_output=True,
    )
    done = sysupdate(rt, work, f"--definitions={WORK}/defs", "update", writable=[image])
    stderr = done.stderr.decode(errors="replace")
    entry = image.read_bytes()[1024:1152]  # first GPT entry (512-byte sectors)
    label = entry[56:128].decode("utf-16-le").rstrip("\0")
    if done.returncode != 0:
        assert label == "_empty", stderr
        return None
    assert label == "p_1"
    return int.from_bytes(entry[48:56], "little")


def test_partition_flags_base_as_each_version_reads_it(
    systemd_runtime: Runtime, tmp_path: Path
) -> None:
    # Measured: 257 reads PartitionFlags= with base 0 (safe_atou64): "1000000000000000" is the
    # decimal 0x38d7ea4c68000 (reserved bits; libfdisk refuses), while 262's parser
    # (safe_atoux64, base 16) reads bit 60.  airlock accepts only spellings both agree on.
    assert (
        gpt_flags_after_install(systemd_runtime, tmp_path / "hex", "0x1000000000000000") == 1 << 60
    )
    dec = gpt_flags_after_install(systemd_runtime, tmp_path / "dec", "1000000000000000")
    assert dec == (None if systemd_runtime.version < 262 else 1 << 60)
    assert gpt_flags_after_install(systemd_runtime, tmp_path / "zero", "0") == 0
    spec = runtime_specifiers(systemd_runtime)
    hex_text = (tmp_path / "hex" / "defs" / "10-p.transfer").read_text()
    hex_text = hex_text.replace(os.fspath(tmp_path / "hex/img/disk.img"), "/dev/vda")
    assert d.parse(hex_text, origin="10-p.transfer", specifiers=spec).partition_flags == 1 << 60
    with pytest.raises(FormatError, match="PartitionFlags="):
        d.parse(
            hex_text.replace("0x1000000000000000", "1000000000000000"),
            origin="10-p.transfer",
            specifiers=spec,
        )
