# SPDX-License-Identifier: MIT
"""airlock.formats.definitions: every key, defaults, specifiers, drop-ins, masking, errors."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from airlock.errors import FormatError
from airlock.formats import definitions as d

DATA = Path(__file__).resolve().parents[2] / "data" / "spectrum"
SPEC = d.Specifiers(image_version="42.1")
MINIMAL = """\
[Source]
Type=url-file
Path=https://updates.example/os
MatchPattern=os_@v.raw

[Target]
Path=/var/lib/os
"""


def parse(text: str, origin: str = "/etc/sysupdate.d/10-os.transfer", **kw: object) -> d.Transfer:
    return d.parse(text, origin=origin, specifiers=kw.pop("specifiers", SPEC), **kw)  # type: ignore[arg-type]


def texts(t: d.Resource) -> tuple[str, ...]:
    return tuple(p.text for p in t.match_patterns)


def refused(text: str, *fragments: str) -> FormatError:
    with pytest.raises(FormatError) as info:
        parse(text)
    assert info.value.code == "config.definition"
    message = info.value.message
    assert message.isprintable()
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return info.value


def with_line(section: str, line: str, base: str = MINIMAL) -> str:
    if f"[{section}]" not in base:
        return f"[{section}]\n{line}\n\n{base}"
    return base.replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1)


# --- Spectrum's real files (design.md#transfers-host) -------------------------------------------


def test_spectrum_host_definitions() -> None:
    spec = d.Specifiers.from_os_release('ID=spectrum\nIMAGE_VERSION="0.0.0"\n')
    verity, root, kernel = d.load_dir(DATA / "host", specifiers=spec)
    assert [t.name for t in (verity, root, kernel)] == ["50-verity", "60-root", "70-kernel"]
    for t, suffix in ((verity, ".verity"), (root, ".root")):
        assert t.protect_versions == ("0.0.0",)
        assert t.verify is True
        assert t.enabled is True
        assert t.source.type == d.ResourceType.URL_FILE
        assert t.source.path == "file:///run/updater"
        assert texts(t.source) == (f"Spectrum_@v_@u{suffix}",)
        assert t.target.type == d.ResourceType.PARTITION
        assert t.target.path == "auto"
        assert t.partition_flags == 0
        assert t.read_only is True
        assert t.instances_max == d.UNLIMITED
        assert t.partition_uuid is None
        assert t.mode is None
        assert t.tries_left is None
    assert texts(verity.target) == ("Spectrum_@v.verity",)
    assert verity.target.match_partition_type == "root-verity"
    assert texts(root.target) == ("Spectrum_@v",)
    assert root.target.match_partition_type == "root"
    assert kernel.source.path == "file:///run/updater"
    assert texts(kernel.source) == texts(kernel.target) == ("Spectrum_@v.efi",)
    assert kernel.target.type == d.ResourceType.REGULAR_FILE
    assert kernel.target.path == "/EFI/Linux"
    assert kernel.target.path_relative_to == d.PathRelativeTo.BOOT
    assert kernel.mode == 0o644
    assert kernel.instances_max == 2
    assert kernel.target.match_partition_type is None
    assert kernel.read_only is None


def test_spectrum_vm_definitions_after_url_substitution(tmp_path: Path) -> None:
    for src in (DATA / "vm").iterdir():
        text = src.read_text().replace("@UPDATE_URL@", "https://spectrum-os.org/updates")
        (tmp_path / src.name).write_text(text)
    transfers = d.load_dir(tmp_path, specifiers=d.Specifiers())
    assert [t.name for t in transfers] == ["50-verity", "60-root", "70-kernel"]
    for t in transfers:
        assert t.verify is True
        assert t.protect_versions == ()
        assert t.source.path == "https://spectrum-os.org/updates"
        assert t.target.type == d.ResourceType.REGULAR_FILE
        assert t.target.path == "/host/updates"
        assert texts(t.target) == texts(t.source)
        assert t.mode == 0o644
        assert t.instances_max == 3
        assert t.remove_temporary is True
    assert texts(transfers[1].source) == ("Spectrum_@v_@u.root",)


def test_spectrum_vm_template_unsubstituted_is_refused() -> None:
    with pytest.raises(FormatError) as info:
        d.load_dir(DATA / "vm", specifiers=d.Specifiers())
    assert re.search(
        r"50-verity\.transfer:10: Path=: not a valid http\(s\) or file URL", info.value.message
    )


# --- defaults -------------------------------------------------------------------------------


def test_defaults() -> None:
    t = parse(MINIMAL)
    assert t.name == "10-os"
    assert t.origin == "/etc/sysupdate.d/10-os.transfer"
    assert (t.min_version, t.protect_versions, t.changelog, t.appstream) == (None, (), (), ())
    assert (t.features, t.requisite_features, t.verify, t.enabled) == ((), (), True, True)
    assert t.source == d.Resource(
        type=d.ResourceType.URL_FILE,
        path="https://updates.example/os",
        match_patterns=t.source.match_patterns,
    )
    assert t.target.type == d.ResourceType.REGULAR_FILE  # inferred from url-file
    assert t.target.path_relative_to == d.PathRelativeTo.ROOT
    assert texts(t.target) == ("os_@v.raw",)  # copied from the source
    assert t.target.match_partition_type is None  # 257: no default, any type
    assert (t.instances_max, t.remove_temporary, t.mode, t.size_max) == (3, True, None, None)
    assert (t.tries_left, t.tries_done, t.partition_uuid, t.partition_flags) == (None,) * 4
    assert (t.read_only, t.no_auto, t.growfs, t.current_symlink) == (None,) * 4


def test_conf_suffix_and_odd_origin_give_the_stem() -> None:
    assert parse(MINIMAL, origin="/x/20-a.conf").name == "20-a"
    assert parse(MINIMAL, origin="plain").name == "plain"


# --- every key ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "line", "attribute", "expected"),
    [
        ("Transfer", "MinVersion=1.2", "min_version", "1.2"),
        ("Transfer", "ProtectVersion=%A", "protect_versions", ("42.1",)),
        ("Transfer", "Verify=no", "verify", False),
        ("Transfer", "Verify=", "verify", True),
        ("Transfer", "ChangeLog=https://h/cl/@v", "changelog", ("https://h/cl/@v",)),
        ("Transfer", "AppStream=http://h/a.xml", "appstream", ("http://h/a.xml",)),
        ("Transfer", "Features=a b", "features", ("a", "b")),
        ("Transfer", "RequisiteFeatures=c", "requisite_features", ("c",)),
        ("Target", "Mode=0640", "mode", 0o640),
        ("Target", "TriesLeft=0x10", "tries_left", 16),
        ("Target", "TriesDone=0", "tries_done", 0),
        ("Target", "InstancesMax=5", "instances_max", 5),
        ("Target", "InstancesMax=1", "instances_max", 2),
        ("Target", "InstancesMax=", "instances_max", 3),
        ("Target", "RemoveTemporary=off", "remove_temporary", False),
        ("Target", "ReadOnly=true", "read_only", True),
        ("Target", "ReadOnly=", "read_only", None),
        ("Target", "CurrentSymlink=cur//./os", "current_symlink", "cur/os"),
        ("Target", "CurrentSymlink=/run/os", "current_symlink", "/run/os"),
    ],
)
def test_transfer_and_fs_target_keys(
    section: str, line: str, attribute: str, expected: object
) -> None:
    assert getattr(parse(with_line(section, line)), attribute) == expected


PARTITION = MINIMAL.replace("Path=/var/lib/os", "Type=partition\nPath=/dev/sda")


@pytest.mark.parametrize(
    ("line", "attribute", "expected"),
    [
        (
            "PartitionUUID=0123ABCD-0123-4567-89ab-0123456789AB",
            "partition_uuid",
            "0123abcd0123456789ab0123456789ab",
        ),
        (
            "PartitionUUID=0123abcd0123456789ab0123456789ab",
            "partition_uuid",
            "0123abcd0123456789ab0123456789ab",
        ),
        ("PartitionFlags=0", "partition_flags", 0),
        ("PartitionFlags=0x1000000000000000", "partition_flags", 1 << 60),
        ("PartitionNoAuto=yes", "no_auto", True),
        ("PartitionGrowFileSystem=0", "growfs", False),
        ("InstancesMax=", "instances_max", d.UNLIMITED),
        ("CurrentSymlink=/run/current", "current_symlink", "/run/current"),
    ],
)
def test_partition_target_keys(line: str, attribute: str, expected: object) -> None:
    assert getattr(parse(with_line("Target", line, PARTITION)), attribute) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("root", "root"),
        ("root-x86-64-verity", "root-x86-64-verity"),
        ("linux-generic", "linux-generic"),
        ("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "4f68bce3e8cd4db196e7fbcaf984b709"),
    ],
)
def test_match_partition_type(value: str, expected: str) -> None:
    t = parse(with_line("Target", f"MatchPartitionType={value}", PARTITION))
    assert t.target.match_partition_type == expected


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("MatchPartitionType=rooot", "MatchPartitionType=: unknown partition type 'rooot'"),
        ("PartitionUUID=xyz", "PartitionUUID=: not a UUID"),
        ("PartitionFlags=10", "PartitionFlags=: write flags as one digit or in hex"),
        ("PartitionFlags=0x", "PartitionFlags="),
        ("PartitionNoAuto=maybe", "PartitionNoAuto=: not a boolean 'maybe'".replace(" '", ": '")),
        ("CurrentSymlink=relative", "CurrentSymlink=: must be an absolute path"),
    ],
)
def test_partition_target_key_errors(line: str, problem: str) -> None:
    with pytest.raises(FormatError) as info:
        parse(with_line("Target", line, PARTITION))
    assert problem in info.value.message
    assert "10-os.transfer:" in info.value.message


@pytest.mark.parametrize(
    ("section", "line", "fragments"),
    [
        ("Transfer", "MinVersion=%A", ("MinVersion=", "not honoured")),
        ("Transfer", "MinVersion=1~rc", ("MinVersion=: not a valid version: '1~rc'",)),
        ("Transfer", "MinVersion=", ("MinVersion=: not a valid version",)),
        ("Transfer", "ProtectVersion=1^2", ("ProtectVersion=: not a valid version",)),
        ("Transfer", "ChangeLog=ftp://h/x", ("ChangeLog=: not an http(s) URL",)),
        ("Transfer", "AppStream=file:///x", ("AppStream=: not an http(s) URL",)),
        ("Transfer", 'Features="a b"', ("Features=: quotes and backslash",)),
        ("Transfer", "Verify=sometimes", ("Verify=: not a boolean",)),
        ("Transfer", "MaxVersion=2", ("MaxVersion=: unknown key in [Transfer]",)),
        ("Source", "Typo=1", ("Typo=: unknown key in [Source]",)),
        ("Target", "MatchPatern=x_@v", ("MatchPatern=: unknown key in [Target]",)),
        ("Target", "Mode=0666", ("Mode=: refusing world-writable",)),
        ("Target", "Mode=4755", ("Mode=: refusing",)),
        ("Target", "Mode=8", ("Mode=: not an octal file mode",)),
        ("Target", "Mode=", ("Mode=: not an octal",)),
        ("Target", "TriesLeft=-1", ("TriesLeft=: not an unsigned 64-bit number",)),
        ("Target", "TriesDone=", ("TriesDone=: not an unsigned",)),
        ("Target", "InstancesMax=18446744073709551616", ("InstancesMax=: not an unsigned",)),
        ("Target", "MatchPartitionType=root", ("only meaningful for partition targets",)),
        ("Target", "PathRelativeTo=explicit", ("PathRelativeTo=: explicit can only be used",)),
        ("Target", "PathRelativeTo=nowhere", ("PathRelativeTo=: unknown value 'nowhere'",)),
        ("Target", "CurrentSymlink=../x", ("CurrentSymlink=: not a usable path",)),
        ("Source", "PathRelativeTo=esp", ("PathRelativeTo=: esp is only allowed",)),
        ("Source", "MatchPattern=a\\x40v", ("MatchPattern=: quotes and backslash",)),
        ("Source", "MatchPattern=noversion", ("MatchPattern=: invalid pattern",)),
        ("Source", "MatchPattern=d_@v/x", ("MatchPattern=: invalid pattern",)),
    ],
)
def test_invalid_values_are_refused_with_file_line_and_key(
    section: str, line: str, fragments: tuple[str, ...]
) -> None:
    error = refused(with_line(section, line), *fragments)
    number = with_line(section, line).splitlines().index(line) + 1
    assert f"/etc/sysupdate.d/10-os.transfer:{number}:" in error.message


def test_valid_control_is_accepted_for_each_refused_family() -> None:
    # Negative controls: the nearest valid value of each refused family parses.
    for section, line in [
        ("Transfer", "MinVersion=1.0"),
        ("Target", "Mode=0755"),
        ("Transfer", "Features=a"),
        ("Target", "TriesLeft=3"),
        ("Source", "MatchPattern=other_@v.raw"),
    ]:
        parse(with_line(section, line))


# --- accumulation and reset -------------------------------------------------------------------


def test_lists_accumulate_and_empty_resets() -> None:
    text = with_line(
        "Transfer",
        "ProtectVersion=1\nProtectVersion=\nProtectVersion=2\n"
        "ProtectVersion=1\nFeatures=a\nFeatures=\nFeatures=b c\n"
        "ChangeLog=https://a\nChangeLog=\nChangeLog=https://b\n"
        "AppStream=https://x\nAppStream=https://x",
    )
    t = parse(text)
    assert t.protect_versions == ("1", "2")  # no reset; duplicates are one version
    assert t.features == ("b", "c")
    assert t.changelog == ("https://b",)
    assert t.appstream == ("https://x",)


def test_protect_version_expanding_to_nothing_is_ignored() -> None:
    t = parse(with_line("Transfer", "ProtectVersion=%A"), specifiers=d.Specifiers())
    assert t.protect_versions == ()


def test_match_patterns_accumulate_dedupe_and_reset() -> None:
    text = MINIMAL.replace(
        "MatchPattern=os_@v.raw",
        "MatchPattern=x_@v\nMatchPattern=\nMatchPattern=a_@v b_@v\tb_@v\n" "MatchPattern=c_@v a_@v",
    )
    t = parse(text)
    assert texts(t.source) == ("a_@v", "b_@v", "c_@v")
    assert texts(t.target) == texts(t.source)
    t = parse(with_line("Target", "MatchPattern=t_@v_@u.raw t_@v.raw"))
    assert texts(t.target) == ("t_@v_@u.raw", "t_@v.raw")  # the first names new installs


def test_last_scalar_wins() -> None:
    t = parse(with_line("Target", "Mode=0600\nMode=0644\nInstancesMax=9\nInstancesMax=4"))
    assert (t.mode, t.instances_max) == (0o644, 4)


# --- type inference, compatibility, paths -----------------------------------------------------


def transfer(source_type: str, source_path: str, target: str) -> str:
    return (
        f"[Source]\nType={source_type}\nPath={source_path}\nMatchPattern=os_@v\n\n"
        f"[Target]\n{target}\n"
    )


@pytest.mark.parametrize(
    ("source_type", "source_path", "target_path", "expected"),
    [
        ("url-file", "http://h/x", "/dev/sda", "partition"),
        ("url-file", "http://h/x", "/srv/x", "regular-file"),
        ("regular-file", "/srv/in", "/dev/vda", "partition"),
        ("regular-file", "/srv/in", "auto", None),  # auto does not start with /dev/
        ("url-tar", "https://h/x", "/srv/t", "directory"),
        ("tar", "/srv/in", "/srv/t", "directory"),
        ("directory", "/srv/in", "/srv/t", "directory"),
        ("subvolume", "/srv/in", "/srv/t", "subvolume"),
    ],
)
def test_target_type_inference(
    source_type: str, source_path: str, target_path: str, expected: str | None
) -> None:
    text = transfer(source_type, source_path, f"Path={target_path}")
    if expected is None:
        refused(text, "Path=auto is only valid for partition targets")
    else:
        assert parse(text).target.type == expected


@pytest.mark.parametrize(
    ("source_type", "target_type"),
    [
        ("url-file", "directory"),
        ("regular-file", "subvolume"),
        ("tar", "regular-file"),
        ("directory", "partition"),
        ("url-tar", "partition"),
    ],
)
def test_incompatible_types_are_refused(source_type: str, target_type: str) -> None:
    path = "http://h/x" if source_type.startswith("url") else "/srv/in"
    refused(transfer(source_type, path, f"Type={target_type}\nPath=/srv/t"), "incompatible")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (transfer("partition", "/dev/sda", "Path=/srv"), "source Type= must be one of"),
        (transfer("zip", "/x", "Path=/srv"), "Type=: unknown type 'zip'"),
        (transfer("url-file", "auto", "Path=/srv"), "Path=auto is only valid in a partition"),
        (transfer("url-file", "ftp://h/x", "Path=/srv"), "not a valid http(s) or file URL"),
        (transfer("url-file", "https://", "Path=/srv"), "not a valid http(s) or file URL"),
        (transfer("url-file", "https://h/a b", "Path=/srv"), "not a valid http(s) or file URL"),
        (transfer("regular-file", "srv/in", "Path=/srv"), "not a normalized, absolute path"),
        (transfer("regular-file", "/srv/../in", "Path=/srv"), "not a normalized, absolute path"),
        (transfer("regular-file", "/srv//in", "Path=/srv"), "not a normalized, absolute path"),
        (transfer("regular-file", "/in", "Path=/srv/./t"), "not a normalized, absolute path"),
        (transfer("regular-file", "/in", "Path=t"), "Path=: not a normalized, absolute path"),
    ],
)
def test_bad_types_and_paths_are_refused(text: str, fragment: str) -> None:
    refused(text, fragment)


def test_file_url_and_esp_relative_paths_are_accepted() -> None:
    t = parse(transfer("url-file", "file:///run/updater", "Path=/srv"))
    assert t.source.path == "file:///run/updater"
    t = parse(transfer("regular-file", "/in", "Path=/EFI/Linux\nPathRelativeTo=esp"))
    assert t.target.path_relative_to == d.PathRelativeTo.ESP
    t = parse(
        "[Source]\nType=regular-file\nPath=/in\nPathRelativeTo=explicit\nMatchPattern=a_@v\n"
        "[Target]\nPath=/srv\n"
    )
    assert t.source.path_relative_to == d.PathRelativeTo.EXPLICIT


@pytest.mark.parametrize(
    ("missing", "fragment", "line"),
    [
        ("Type=url-file", "[Source] lacks Type=", 1),
        ("Path=https://updates.example/os", "[Source] lacks Path=", 1),
        ("MatchPattern=os_@v.raw", "[Source] lacks MatchPattern=", 1),
        ("Path=/var/lib/os", "[Target] lacks Path=", 6),
    ],
)
def test_missing_mandatory_keys_name_the_section_line(
    missing: str, fragment: str, line: int
) -> None:
    refused(MINIMAL.replace(missing + "\n", ""), f"10-os.transfer:{line}: {fragment}")


# --- specifiers -----------------------------------------------------------------------------

FULL = d.Specifiers(
    architecture="x86-64",
    image_version="IV",
    boot_id="bid",
    build_id="BID",
    hostname="h.example",
    pretty_hostname="Pretty",
    machine_id="mid",
    image_id="IID",
    os_id="spectrum",
    kernel_release="6.1",
    version_id="VID",
    variant_id="VAR",
)


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        ("%a", "x86-64"),
        ("%A", "IV"),
        ("%b", "bid"),
        ("%B", "BID"),
        ("%H", "h.example"),
        ("%l", "h"),
        ("%q", "Pretty"),
        ("%m", "mid"),
        ("%M", "IID"),
        ("%o", "spectrum"),
        ("%v", "6.1"),
        ("%w", "VID"),
        ("%W", "VAR"),
        ("%T", "/tmp"),
        ("%V", "/var/tmp"),
        ("%%", "%"),
    ],
)
def test_every_specifier(spec: str, value: str) -> None:
    t = parse(MINIMAL.replace("Path=/var/lib/os", f"Path=/srv/x{spec}y"), specifiers=FULL)
    assert t.target.path == f"/srv/x{value}y"


def test_specifiers_in_patterns_and_urls() -> None:
    text = MINIMAL.replace("MatchPattern=os_@v.raw", "MatchPattern=%o_@v_%a.raw")
    text = text.replace("https://updates.example/os", "https://h/%o/%w")
    t = parse(text, specifiers=FULL)
    assert texts(t.source) == ("spectrum_@v_x86-64.raw",)
    assert t.source.path == "https://h/spectrum/VID"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("/srv/%z", "unknown specifier '%z'"),
        ("/srv/%H", "specifier %H has no value"),
        ("/srv/%", "stray '%'"),
        ("/srv/%a", "specifier %a has no value"),
    ],
)
def test_bad_specifiers_are_refused(value: str, fragment: str) -> None:
    refused(MINIMAL.replace("Path=/var/lib/os", f"Path={value}"), "Path=:", fragment)


def test_os_release_parsing() -> None:
    spec = d.Specifiers.from_os_release(
        '# comment\nID=spectrum\nVERSION_ID="1.0"\nIMAGE_ID=\'img\'\nBUILD_ID="a\\"b"\n'
        "garbage line\nIMAGE_VERSION=0.2\n",
        architecture="arm64",
    )
    assert (spec.os_id, spec.version_id, spec.image_id) == ("spectrum", "1.0", "img")
    assert (spec.build_id, spec.image_version, spec.architecture) == ('a"b', "0.2", "arm64")
    assert spec.variant_id == ""
    assert spec.hostname is None


# --- the INI dialect ------------------------------------------------------------------------


def test_comments_continuations_and_x_extensions() -> None:
    text = (
        "\ufeff# comment\n; other comment\n[X-Vendor]\nAnything=goes\n"
        + MINIMAL.replace("MatchPattern=os_@v.raw", "MatchPattern=a_@v \\\n# inside\n  b_@v")
        + "X-Local=ignored\n\n  [Transfer]  \nVerify = no \n"
    )
    t = parse(text)
    assert texts(t.source) == ("a_@v", "b_@v")
    assert t.verify is False


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Verify=no\n" + MINIMAL, ":1: assignment outside of any section"),
        ("[Transfer]\nVerify\n" + MINIMAL, ":2: missing '=' in line"),
        ("[Transfer]\n=no\n" + MINIMAL, ":2: missing key name"),
        ("[Transfer\n" + MINIMAL, ":1: invalid section header '[Transfer'"),
        ("[Feature]\n" + MINIMAL, ":1: unknown section 'Feature'"),
        ("[Transfer]\nVerify=\x1b[31mno\n" + MINIMAL, ":2: control character 0x1b"),
        (MINIMAL + "Mode=0644\r\n", ":8: control character 0x0d"),
        ("[Transfer]\nVe\x1brify=no\n" + MINIMAL, ":2: control character"),
    ],
)
def test_dialect_errors(text: str, fragment: str) -> None:
    refused(text, "10-os.transfer" + fragment)


def test_unknown_key_is_escaped_in_the_message() -> None:
    error = refused(with_line("Source", "K\u202eey=1"), "unknown key in [Source]")
    assert "\u202e" not in error.message
    assert "\\u202e" in error.message


# --- files: search paths, masking, drop-ins, .conf, features ----------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def variant(pattern: str) -> str:
    return MINIMAL.replace("os_@v.raw", pattern)


@pytest.fixture
def dirs(tmp_path: Path) -> list[Path]:
    return [tmp_path / name for name in ("etc", "run", "usr-local-lib", "usr-lib")]


def names(transfers: tuple[d.Transfer, ...]) -> list[str]:
    return [t.name for t in transfers]


def test_search_path_priority_order_and_sorting(dirs: list[Path]) -> None:
    write(dirs[3] / "20-b.transfer", variant("vendor_@v"))
    write(dirs[0] / "20-b.transfer", variant("admin_@v"))
    write(dirs[2] / "10-a.transfer", variant("a_@v"))
    write(dirs[1] / "30-c.transfer", variant("c_@v"))
    write(dirs[1] / ".hidden.transfer", "garbage")
    (dirs[3] / "40-dir.transfer").mkdir()
    transfers = d.load(dirs, specifiers=SPEC)
    assert names(transfers) == ["10-a", "20-b", "30-c"]
    assert texts(transfers[1].source) == ("admin_@v",)
    assert transfers[1].origin == os.fspath(dirs[0] / "20-b.transfer")


def test_masking_by_dev_null_symlink_and_empty_file(dirs: list[Path]) -> None:
    write(dirs[3] / "10-a.transfer", variant("a_@v"))
    write(dirs[3] / "20-b.transfer", variant("b_@v"))
    write(dirs[3] / "30-c.transfer", variant("c_@v"))
    dirs[0].mkdir(parents=True)
    (dirs[0] / "10-a.transfer").symlink_to("/dev/null")
    write(dirs[1] / "20-b.transfer", "")
    assert names(d.load(dirs, specifiers=SPEC)) == ["30-c"]
    # negative control: without the masks all three are there
    (dirs[0] / "10-a.transfer").unlink()
    (dirs[1] / "20-b.transfer").unlink()
    assert names(d.load(dirs, specifiers=SPEC)) == ["10-a", "20-b", "30-c"]


def test_dropins_override_accumulate_and_mask(dirs: list[Path]) -> None:
    write(dirs[3] / "10-a.transfer", variant("a_@v"))
    write(dirs[3] / "10-a.transfer.d" / "50-mode.conf", "[Target]\nMode=0600\n")
    write(dirs[3] / "10-a.transfer.d" / "60-pattern.conf", "[Source]\nMatchPattern=z_@v\n")
    write(dirs[0] / "10-a.transfer.d" / "70-more.conf", "[Target]\nInstancesMax=7\n")
    write(dirs[1] / "10-a.transfer.d" / "99-ignored.txt", "[Target]\nMode=0\n")
    (t,) = d.load(dirs, specifiers=SPEC)
    assert (t.mode, t.instances_max) == (0o600, 7)
    assert texts(t.source) == ("a_@v", "z_@v")
    (dirs[0] / "10-a.transfer.d" / "50-mode.conf").symlink_to("/dev/null")
    (t,) = d.load(dirs, specifiers=SPEC)
    assert t.mode is None  # the /usr/lib drop-in is masked from /etc


def test_dropin_errors_name_the_dropin(dirs: list[Path]) -> None:
    write(dirs[3] / "10-a.transfer", variant("a_@v"))
    bad = write(dirs[3] / "10-a.transfer.d" / "x.conf", "[Target]\n\nMode=banana\n")
    with pytest.raises(FormatError) as info:
        d.load(dirs, specifiers=SPEC)
    assert f"{bad}:3: Mode=" in info.value.message


def test_conf_fallback_only_without_any_transfer(tmp_path: Path) -> None:
    write(tmp_path / "10-a.conf", variant("a_@v"))
    write(tmp_path / "20-b.conf", variant("b_@v"))
    assert names(d.load_dir(tmp_path, specifiers=SPEC)) == ["10-a", "20-b"]
    write(tmp_path / "30-c.transfer", variant("c_@v"))
    assert names(d.load_dir(tmp_path, specifiers=SPEC)) == ["30-c"]


def test_load_dir_reads_only_that_directory(dirs: list[Path]) -> None:
    write(dirs[0] / "10-a.transfer", variant("a_@v"))
    write(dirs[3] / "20-b.transfer", variant("b_@v"))
    write(dirs[3] / "10-a.transfer.d" / "x.conf", "[Target]\nMode=0600\n")
    (t,) = d.load_dir(dirs[0], specifiers=SPEC)
    assert t.name == "10-a"
    assert t.mode is None
    assert d.load_dir(dirs[0] / "missing", specifiers=SPEC) == ()


def test_features_gate_transfers(dirs: list[Path]) -> None:
    write(
        dirs[3] / "opt.feature",
        "[Feature]\nDescription=Optional\n"
        "Documentation=https://h/doc\nAppStream=https://h/%o.xml\n",
    )
    write(dirs[3] / "base.feature", "[Feature]\nEnabled=yes\n")
    write(dirs[3] / "10-a.transfer", with_line("Transfer", "Features=opt", variant("a_@v")))
    write(dirs[3] / "20-b.transfer", with_line("Transfer", "Features=opt base", variant("b_@v")))
    write(
        dirs[3] / "30-c.transfer",
        with_line("Transfer", "RequisiteFeatures=base opt", variant("c_@v")),
    )
    write(dirs[3] / "40-d.transfer", with_line("Transfer", "Features=unknown", variant("d_@v")))
    write(dirs[3] / "50-e.transfer", variant("e_@v"))
    spec = d.Specifiers(os_id="spectrum")
    enabled = {t.name: t.enabled for t in d.load(dirs, specifiers=spec)}
    assert enabled == {"10-a": False, "20-b": True, "30-c": False, "40-d": False, "50-e": True}
    write(dirs[1] / "opt.feature.d" / "enable.conf", "[Feature]\nEnabled=true\n")
    enabled = {t.name: t.enabled for t in d.load(dirs, specifiers=spec)}
    assert enabled == {"10-a": True, "20-b": True, "30-c": True, "40-d": False, "50-e": True}


def test_parse_feature_values_and_errors() -> None:
    f = d.parse_feature(
        [
            (
                "[Feature]\nDescription=Opt\nDocumentation=https://h/%o\n" "AppStream=http://h/a\n",
                "/x/opt.feature",
            )
        ],
        specifiers=d.Specifiers(os_id="o"),
    )
    assert f == d.Feature(
        name="opt",
        origin="/x/opt.feature",
        description="Opt",
        documentation="https://h/o",
        appstream="http://h/a",
        enabled=False,
    )
    for text, fragment in [
        ("[Feature]\nEnabled=perhaps\n", "opt.feature:2: Enabled="),
        ("[Feature]\nDocumentation=ftp://x\n", ":2: Documentation="),
        ("[Feature]\nColour=red\n", ":2: Colour=: unknown key"),
        ("[Transfer]\n", ":1: unknown section"),
    ]:
        with pytest.raises(FormatError) as info:
            d.parse_feature([(text, "/x/opt.feature")], specifiers=SPEC)
        assert fragment in info.value.message


def test_parse_takes_known_features() -> None:
    feature = d.Feature(name="f", origin="f.feature", enabled=True)
    text = with_line("Transfer", "RequisiteFeatures=f")
    assert parse(text, features={"f": feature}).enabled is True
    assert parse(text).enabled is False


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    (tmp_path / "10-a.transfer").write_bytes(b"[Transfer]\n\xff\n")
    with pytest.raises(FormatError) as info:
        d.load_dir(tmp_path, specifiers=SPEC)
    assert "10-a.transfer:2: not valid UTF-8" in info.value.message
    (tmp_path / "10-a.transfer").write_bytes(b"#" * (2 << 20))
    with pytest.raises(FormatError) as info:
        d.load_dir(tmp_path, specifiers=SPEC)
    assert "file larger than" in info.value.message


def test_component_search_paths() -> None:
    assert d.component_search_paths("vm") == (
        Path("/etc/sysupdate.vm.d"),
        Path("/run/sysupdate.vm.d"),
        Path("/usr/local/lib/sysupdate.vm.d"),
        Path("/usr/lib/sysupdate.vm.d"),
    )
    for bad in ("", "a/b", "x\x1b", "\u00e9", "x" * 250):
        with pytest.raises(FormatError, match="invalid component name"):
            d.component_search_paths(bad.encode().decode("unicode_escape"))
