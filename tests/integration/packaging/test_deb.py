# SPDX-License-Identifier: MIT
"""The .deb in a clean Debian trixie root: installed offline by apt from its declared Depends,
then used as an operator would — ``airlock --version``/``--help``/``status``, ``man``, bash and
zsh completion, ``systemd-analyze verify`` on its units — and removed and purged cleanly.

The root is an overlay on the trixie runtime root (tests/integration/packaging/conftest.py);
nothing of the source tree or of this test run's virtualenv is visible in it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from airlock import __version__
from tests.integration.packaging.conftest import Installed
from tests.support import schemas


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout


def test_apt_resolved_the_declared_dependencies_offline(installed: Installed) -> None:
    fields = _ok(installed.root.run("dpkg-query -W -f '${Status}#${Depends}' airlock"))
    status, depends = fields.split("#")
    assert status == "install ok installed"
    for name in ("btrfs-progs", "bubblewrap", "gpgv | sqv", "util-linux", "python3-httpx",
                 "python3-rich", "systemd-container (>= 257)"):  # fmt: skip
        assert name in depends
    for name in ("btrfs-progs", "bubblewrap"):  # not in the runtime root: apt installed them
        assert f"Setting up {name} " in installed.apt_log


def test_the_installed_commands_run_from_the_package(installed: Installed) -> None:
    out = _ok(installed.root.run(
        "airlock --version; spectrum-update 2>&1 || true; airlock --help | head -1;"
        " python3 -c 'import airlock; print(airlock.__file__)'; airlock --exit-codes | tail -1"
    ))  # fmt: skip
    lines = out.splitlines()
    assert lines[0] == f"airlock {__version__}"
    assert lines[1] == "usage: spectrum-update STAGING_DIR"
    assert lines[2].startswith("usage: airlock")
    assert lines[3] == "/usr/lib/python3/dist-packages/airlock/__init__.py"
    assert lines[4] == "| 130 | interrupted (SIGINT/SIGTERM) |"


def test_status_in_a_root_that_is_not_set_up_says_what_to_fix(installed: Installed) -> None:
    text = _ok(installed.root.run("airlock status"))
    assert "runtime:     systemd-sysupdate 257 (the host's own; rules of 257)" in text
    assert "problem:     [config.definition] No transfer definitions: /etc/sysupdate.d" in text
    assert "next:        fix the problem above" in text
    (body,) = schemas.check_output(("status", "--json"), _ok(installed.root.run(
        "airlock status --json")))  # fmt: skip
    assert body["runtime"] == {
        "root": "/", "version": 257, "source": "host", "name": "host", "rules": 257,
        "rules_verified": True, "signature_names": ["SHA256SUMS.gpg"],
    }  # fmt: skip
    assert body["next"]["action"] == "fix"


def test_man_pages_are_installed_and_render(installed: Installed) -> None:
    out = _ok(installed.root.run(
        "for page in airlock spectrum-update airlock.toml; do MANWIDTH=80 man $page | col -b; done"
    ))  # fmt: skip
    for heading in ("AIRLOCK(8)", "SPECTRUM-UPDATE(8)", "AIRLOCK.TOML(5)", "EXIT STATUS",
                    "ERROR CODES", "JSON OUTPUT", "[fetcher.qemu]"):  # fmt: skip
        assert heading in out
    assert re.search(r"airlock update \[--config CONFIG\]", out)


def test_bash_loads_the_completion_on_demand_and_completes(installed: Installed) -> None:
    out = _ok(installed.root.run(
        "bash -c '. /usr/share/bash-completion/bash_completion; complete -p airlock 2>/dev/null"
        " || __load_completion airlock; complete -p airlock;"
        " COMP_WORDS=(airlock config \"\"); COMP_CWORD=2; _airlock; echo \"${COMPREPLY[*]}\"'"
    ))  # fmt: skip
    assert out.splitlines()[-2:] == ["complete -F _airlock airlock", "show"]


def test_zsh_finds_the_completion_on_its_default_path(installed: Installed) -> None:
    out = _ok(installed.root.run(
        "zsh -fc 'autoload -U compinit && compinit -u -D && print -r -- $_comps[airlock]"
        " $_comps[spectrum-update] && print -rl -- $fpath' "
    ))  # fmt: skip
    lines = out.splitlines()
    assert lines[0] == "_airlock _airlock"
    assert "/usr/share/zsh/vendor-completions" in lines[1:]


def test_systemd_analyze_verifies_the_units(installed: Installed) -> None:
    units = "/lib/systemd/system/airlock-check.timer /lib/systemd/system/airlock-check.service " \
            "/lib/systemd/system/airlock-update.service"  # fmt: skip
    done = installed.root.run(f"systemd-analyze verify {units}")
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if "airlock" in line] == []
    enabled = installed.root.run("systemctl is-enabled airlock-check.timer airlock-update.service")
    # The timer is enabled by the package (inert until /etc/airlock/host.toml exists); the
    # update service has no [Install]: it is started by hand or by a timer of one's own.
    assert enabled.stdout.split() == ["enabled", "static"]


def test_systemd_analyze_would_catch_a_broken_unit(installed: Installed) -> None:
    # Negative control: the same check on a unit with a typo and a missing binary fails.
    done = installed.root.run(
        "mkdir -p /tmp/u && printf '[Service]\\nTyp=notify\\nExecStart=/usr/bin/airlok x\\n'"
        " > /tmp/u/broken.service && systemd-analyze verify /tmp/u/broken.service"
    )
    assert done.returncode != 0
    assert "Unknown key" in done.stderr or "airlok" in done.stderr


def test_purge_leaves_nothing_behind(installed: Installed, tmp_path: Path) -> None:
    root = installed.root.child(tmp_path / "purged")  # the other tests keep the installed root
    done = root.run(
        "dpkg -L airlock > /tmp/files && dpkg --purge airlock >/dev/null &&"
        ' while read -r f; do [ -d "$f" ] || [ ! -e "$f" ] || echo "left: $f"; done'
        " < /tmp/files; [ -e /usr/lib/python3/dist-packages/airlock ] && echo 'left: package dir';"
        " [ -e /etc/systemd/system/timers.target.wants/airlock-check.timer ] && echo 'left: link';"
        " dpkg-query -W -f '${Status}' airlock 2>&1; true"
    )
    assert done.returncode == 0, done.stderr
    assert "left:" not in done.stdout, done.stdout
    assert "no packages found matching airlock" in done.stdout or "not-installed" in done.stdout
