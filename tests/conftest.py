# SPDX-License-Identifier: MIT
"""Markers, capability probes, strict mode, a leak check and hypothesis profiles.

Under ``AIRLOCK_REQUIRE_ROOT=1`` (CI) a missing capability fails the test instead of skipping it,
and the run fails if any test at all was skipped (``tests/support/strict_skips.py``).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.support import probes

pytest_plugins = ["tests.support.strict_skips"]
REQUIRE = os.environ.get("AIRLOCK_REQUIRE_ROOT") == "1"
LEAK_SETTLE_S = 15.0
PRIVILEGED = ("root", "btrfs", "sandbox", "sysupdate", "vm", "boot", "s6", "e2e")

settings.register_profile("dev", max_examples=200)
settings.register_profile(
    "ci",
    max_examples=600,
    print_blob=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("fuzz", max_examples=20000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if REQUIRE else "dev"))

_stats = {"privileged_ran": 0}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        parts = path.parts
        if "integration" in parts or "e2e" in parts:
            item.add_marker(pytest.mark.root)
        if "e2e" in parts:
            item.add_marker(pytest.mark.e2e)


def pytest_runtest_setup(item: pytest.Item) -> None:
    names = [m.name for m in item.iter_markers() if m.name in PRIVILEGED]
    if not names:
        return
    for name in names:
        why = probes.PROBES[name]()
        if why is not None:
            if REQUIRE:
                pytest.fail(f"required capability {name!r} missing: {why}", pytrace=False)
            pytest.skip(f"needs {name}: {why}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and any(k in report.keywords for k in PRIVILEGED):
        _stats["privileged_ran"] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(f"airlock: privileged tests ran: {_stats['privileged_ran']}")


def _snapshot_host(base: str) -> dict[str, frozenset[str]]:
    """Mounts and loop devices below this run's base temp dir, and network namespaces.

    Scoping to ``base`` keeps concurrent test runs on the same machine from tripping each other.
    """
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False).stdout
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return {
        "mounts": frozenset(m.split()[4] for m in mounts if base in m.split()[4]),
        "loops": frozenset(line for line in loops.splitlines() if base in line),
        "netns": frozenset(line.split()[0] for line in netns.stdout.splitlines() if line.strip()),
    }


@pytest.fixture(scope="session", autouse=True)
def _leak_check(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the run if a mount, loop device or network namespace survives the last test."""
    base = str(tmp_path_factory.getbasetemp())
    before = _snapshot_host(base)
    yield
    # A loop device set up by mount(8) detaches itself once its file system is gone, which the
    # kernel may finish a moment after the last umount (seen under load after the last test):
    # give what is still there a few seconds before calling it a leak.
    deadline = time.monotonic() + LEAK_SETTLE_S
    while True:
        after = _snapshot_host(base)
        leaked = {k: sorted(after[k] - before[k]) for k in after if after[k] - before[k]}
        if os.environ.get("AIRLOCK_LEAK_NETNS") == "0":
            leaked.pop("netns", None)
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if leaked:
        pytest.fail(f"leaked host resources: {leaked}", pytrace=False)
