# SPDX-License-Identifier: MIT
"""config.py: sections from defaults, a TOML file and flags; origins; the refused flat format."""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from airlock import config, settings
from airlock.backends.fetcher import FetcherName
from airlock.backends.fetcher.qemu import Accel
from airlock.backends.openpgp import VerifierName
from airlock.errors import ConfigError, ExitStatus, UsageError
from airlock.limits import Limits
from airlock.settings import Origin
from airlock.trusted.policy import PolicyConfig

SRC = Path(__file__).resolve().parents[2] / "src" / "airlock"


def _load(tmp_path: Path, text: str, **flags: object) -> config.Effective:
    f = tmp_path / "host.toml"
    f.write_text(text)
    return config.load(f, flags={k.replace("__", "."): v for k, v in flags.items()})


def test_defaults_reproduce_spectrum() -> None:
    c = config.load(None).config
    assert c.lock.path == Path("/run/update-lock")
    assert c.spectrum.vm_name == "sys.appvm-systemd-sysupdate"
    assert c.host.definitions_dir == Path("/etc/sysupdate.d")
    assert c.fetcher.vm_definitions_dir == Path("/etc/vm-sysupdate.d")
    assert c.fetcher.update_url_file == Path("/etc/update-url")
    assert c.host.keyring == Path("/etc/systemd/import-pubring.gpg")
    assert c.apply.mount_point == "/run/updater"
    assert c.fetcher.backend is FetcherName.SPECTRUM
    assert c == config.HostConfig()


def test_sections_override_and_say_where_each_value_came_from(tmp_path: Path) -> None:
    eff = _load(
        tmp_path,
        '[lock]\npath = "/tmp/x/lock"\n'
        '[fetcher]\nbackend = "sandbox"\ntimeout_s = 5\ncommand = ["/bin/true"]\n'
        '[fetcher.sandbox]\nnetns = "airlock-t1"\n'
        '[fetcher.qemu]\naccel = "auto"\nmemory_mib = 768\n'
        '[fetcher.spectrum]\nrun_dir = "/srv/run"\nvm_start = ["/opt/vm-start", "--by-id"]\n'
        "[staging]\nqgroup_limit_bytes = 1073741824\n"
        '[apply]\nesp_path = "/tmp/esp"\nbinds = ["/tmp/disk.img"]\n'
        "[limits]\nmax_entries = 10\n",
    )
    c = eff.config
    assert c.lock.path == Path("/tmp/x/lock")
    assert c.fetcher.backend is FetcherName.SANDBOX
    assert c.fetcher.timeout_s == 5.0
    assert c.fetcher.command == ("/bin/true",)
    assert c.sandbox.netns == "airlock-t1"
    assert c.qemu.accel is Accel.AUTO
    assert c.qemu.memory_mib == 768
    assert c.qemu.server is None
    assert c.spectrum.run_dir == Path("/srv/run")
    assert c.spectrum.vm_start == ("/opt/vm-start", "--by-id")
    assert c.spectrum.vm_stop == ("/usr/bin/vm-stop",)
    assert c.staging.qgroup_limit_bytes == 1 << 30
    assert c.apply.esp_path == Path("/tmp/esp")
    assert c.apply.binds == (Path("/tmp/disk.img"),)
    assert c.limits == Limits(max_entries=10)
    assert eff.origin("fetcher.qemu.accel") is Origin.FILE
    assert eff.origin("fetcher.qemu.cpus") is Origin.DEFAULT


def test_a_flag_overrides_the_file_and_is_reported_as_a_flag(tmp_path: Path) -> None:
    eff = _load(
        tmp_path,
        '[fetcher]\nbackend = "sandbox"\ntimeout_s = 5\n',
        fetcher__backend="qemu",
        lock__wait=True,
    )
    assert eff.config.fetcher.backend is FetcherName.QEMU
    assert eff.config.fetcher.timeout_s == 5.0
    assert eff.config.lock.wait is True
    assert eff.origin("fetcher.backend") is Origin.FLAG
    assert eff.origin("fetcher.timeout_s") is Origin.FILE
    assert eff.origin("lock.wait") is Origin.FLAG


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("nonsense = 1\n", "nonsense"),
        ("[nonsense]\n", "[nonsense]"),
        ('[lock]\npath = "relative"\n', "[lock] path"),
        ("[fetcher]\ntimeout_s = -1\n", "[fetcher] timeout_s"),
        ("[fetcher]\ntimeout_s = true\n", "[fetcher] timeout_s"),
        ("[fetcher]\ncommand = []\n", "[fetcher] command"),
        ('[fetcher]\nbackend = "vmware"\n', "[fetcher] backend"),
        ("[fetcher.qemu]\nbogus = 1\n", "[fetcher.qemu] bogus"),
        ('[fetcher.qemu]\naccel = "hvf"\n', "[fetcher.qemu] accel"),
        ("[fetcher.qemu]\ncpus = 0\n", "[fetcher.qemu] cpus"),
        ('[fetcher.sandbox]\nnetns = "a b"\n', "[fetcher.sandbox] netns"),
        ('[fetcher.sandbox]\nroot = "/"\n', "[fetcher.sandbox] root"),
        ('[fetcher.spectrum]\nvm_name = "../x"\n', "[fetcher.spectrum] vm_name"),
        ("[staging]\nqgroup_limit_bytes = 12\n", "[staging] qgroup_limit_bytes"),
        ('[policy]\ntrusted_fingerprints = ["abc"]\n', "[policy] trusted_fingerprints"),
        ("[policy]\nthreshold = 0\n", "[policy] threshold"),
        ('[policy]\nthreshold = 2\ntrusted_fingerprints = ["' + "A" * 40 + '"]\n', "threshold"),
        ('[policy]\nverifier = "pgp"\n', "[policy] verifier"),
        ("[limits]\nmax_entries = 0\n", "[limits] max_entries"),
        ("[limits]\nbogus = 1\n", "[limits] bogus"),
        ('[apply]\nmount_point = "/"\n', "[apply] mount_point"),
        ("limits = 3\n", "[limits]"),
        ("lock_path = \n", "TOML"),
    ],
)
def test_bad_config_is_a_config_error_naming_the_setting(
    tmp_path: Path, text: str, where: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    assert info.value.code == "config.host"
    assert info.value.exit_status == ExitStatus.CONFIG
    assert where in info.value.message


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('lock_path = "/run/x"', "[lock] path"),
        ('fetcher = "sandbox"', "[fetcher] backend"),
        ("vm_timeout_s = 5", "[fetcher] timeout_s"),
        ('sandbox_netns = "n"', "[fetcher.sandbox] netns"),
        ('qemu_accel = "tcg"', "[fetcher.qemu] accel"),
        ('spectrum_run_dir = "/run"', "[fetcher.spectrum] run_dir"),
        ('state_file = "/s"', "[state] path"),
        ("threshold = 1", "[policy] threshold"),
    ],
)
def test_a_flat_key_of_the_first_format_names_its_new_place(
    tmp_path: Path, old: str, new: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, old + "\n")
    assert f"moved to {new}" in info.value.message


def test_sysupdate_path_is_no_longer_a_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no longer a setting"):
        _load(tmp_path, 'sysupdate_path = "/usr/lib/systemd/systemd-sysupdate"\n')


def test_the_qemu_forwarder_is_no_longer_a_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"fetcher\.qemu\.forwarder: no longer a setting"):
        _load(tmp_path, '[fetcher.qemu]\nforwarder = ["/bin/busybox", "nc"]\n')
    assert _load(tmp_path, "[fetcher.qemu]\nmax_connections = 4\n").config.qemu.max_connections == 4


def test_a_bad_flag_value_is_a_usage_error_naming_the_flag(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        _load(tmp_path, "", fetcher__timeout_s=-3)
    assert info.value.message.startswith("--timeout: ")
    assert info.value.exit_status == ExitStatus.USAGE


def test_render_writes_what_load_reads(tmp_path: Path) -> None:
    values: dict[str, object] = {
        "host.keyring": tmp_path / "k.gpg",
        "fetcher.backend": FetcherName.SANDBOX,
        "fetcher.command": ("/bin/sh", "-c", 'echo "quoted" \\ back'),
        "fetcher.sandbox.ro_binds": [tmp_path / "a", tmp_path / "b"],
        "fetcher.timeout_s": 60,
        "apply.esp_path": tmp_path / "esp",
        "policy.require_fresh": True,
    }
    text = config.render(values)
    tomllib.loads(text)
    c = _load(tmp_path, text).config
    assert c.host.keyring == tmp_path / "k.gpg"
    assert c.fetcher.command == ("/bin/sh", "-c", 'echo "quoted" \\ back')
    assert c.sandbox.ro_binds == (tmp_path / "a", tmp_path / "b")
    assert c.policy.require_fresh is True
    with pytest.raises(KeyError):
        config.render({"fetcher.sandbox.netns_name": "x"})


def test_show_is_valid_toml_that_loads_back_to_the_same_config(tmp_path: Path) -> None:
    eff = _load(tmp_path, '[fetcher]\nbackend = "sandbox"\n', fetcher__timeout_s=7)
    text = config.show(eff)
    assert 'backend = "sandbox"  # file' in text
    assert "timeout_s = 7.0  # flag --timeout" in text
    assert "# netns is not set  # default" in text
    again = tmp_path / "again.toml"
    again.write_text(text)
    assert config.load(again).config == eff.config
    body = config.show_json(eff)
    sections = body["sections"]
    assert isinstance(sections, dict)
    assert sections["fetcher"]["timeout_s"] == {"value": 7.0, "origin": "flag"}
    assert sections["policy"]["verifier"] == {"value": VerifierName.AUTO.value, "origin": "default"}


def _attribute_reads() -> set[str]:
    reads: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                reads.add(node.attr)
    return reads


def test_every_setting_is_read_somewhere_grep_can_find() -> None:
    # Each setting must be read as an attribute of its section somewhere in the source (no
    # getattr with a built name): a reader finds its users with `grep -rn '\.KEY\b' src`.
    reads = _attribute_reads()
    unread = [
        f"{table}.{key}"
        for table, (_, cls) in config.sections().items()
        for key, _ in settings.declarations(cls)
        if key not in reads
    ]
    assert unread == []


def test_negative_control_an_unread_setting_is_found() -> None:
    assert "no_such_setting_anywhere" not in _attribute_reads()


def test_tables_name_each_section_by_its_own_table_in_host_config_order() -> None:
    # TABLES (which lets a verb import only its sections' classes) must agree with HostConfig's
    # fields and with each class's SECTION.
    defaults = config.HostConfig()
    assert list(config.TABLES.values()) == list(config.HostConfig.__dataclass_fields__)
    for table, (attr, cls) in config.sections().items():
        assert cls.SECTION == table
        assert type(getattr(defaults, attr)) is cls


def test_load_section_is_what_load_builds_from_the_same_flags() -> None:
    flags = config.given_flags(
        _parsed(["--keyring", "/k.gpg", "--threshold", "2", "--max-entries", "9"])
    )
    full = config.load(None, flags=flags).config
    assert config.load_section(config.HostFiles, flags=flags) == full.host
    assert config.load_section(PolicyConfig, flags=flags) == full.policy
    assert config.load_section(Limits, flags=flags) == full.limits
    assert full.host.keyring == Path("/k.gpg") and full.policy.threshold == 2


def test_load_section_refuses_a_bad_flag_value_as_load_does() -> None:
    flags = config.given_flags(_parsed(["--threshold", "0"]))
    with pytest.raises(UsageError) as exc:
        config.load_section(PolicyConfig, flags=flags)
    with pytest.raises(UsageError) as exc_load:
        config.load(None, flags=flags)
    assert exc.value.message == exc_load.value.message


def test_inspect_imports_no_backend_section(tmp_path: Path) -> None:
    # `airlock inspect` reads three sections; the backends declaring the others stay unloaded.
    code = (
        "import sys\n"
        # What was loaded before this code ran is not airlock's doing: under `make test`'s
        # coverage, the subprocess measurement reads its config with tomllib at start-up.
        "preloaded = set(sys.modules)\n"
        "from airlock.cli import build_parser, inspection\n"
        "from airlock.errors import ConfigError\n"
        "argv = ['inspect', 'D', '--definitions', sys.argv[1], '--keyring', sys.argv[1]]\n"
        "try:\n"
        "    inspection._judge(build_parser(argv).parse_args(argv))\n"
        "except ConfigError as exc:\n"
        "    assert exc.code == 'config.definition', exc.code\n"
        "bad = [m for m in set(sys.modules) - preloaded if m.startswith(('airlock.backends.apply',"
        " 'airlock.backends.fetcher', 'airlock.backends.staging', 'airlock.state',"
        " 'airlock.cli.report', 'airlock.events', 'tomllib'))]\n"
        "assert not bad, bad\n"
        "print('checked')"
    )
    env = {**os.environ, "PYTHONPATH": os.fspath(SRC.parent)}
    argv = [sys.executable, "-c", code, os.fspath(tmp_path)]
    res = subprocess.run(argv, capture_output=True, env=env, check=False)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    assert res.stdout == b"checked\n"


def _parsed(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_flags(parser, ("host.keyring", "policy.threshold", "limits.max_entries"))
    return parser.parse_args(argv)
