# SPDX-License-Identifier: MIT
"""Markers, capability probes, strict mode, a leak check and hypothesis profiles.

Under ``AIRLOCK_REQUIRE_ROOT=1`` (CI) a missing capability fails the test instead of skipping it,
and the run fails if any test at all was skipped (``tests/support/strict_skips.py``).

The leak check runs around every test and around the session: a process, mount, loop device,
network namespace, temporary file or btrfs subvolume that a test made and did not remove fails
that test, and whatever survives the last test fails the run.  ``tests/support/leaks.py`` tells
this session's from those of other suites running on the same machine at the same time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.support import leaks, probes

pytest_plugins = ["tests.support.strict_skips"]
REQUIRE = os.environ.get("AIRLOCK_REQUIRE_ROOT") == "1"
PRIVILEGED = ("root", "btrfs", "sandbox", "sysupdate", "vm", "boot", "s6", "e2e", "spectrum_host")
# A loop device set up by mount(8) detaches itself once its file system is gone, which the kernel
# may finish a moment after the last umount (seen under load after the last test of a run).
LEAK_SETTLE_S = 15.0

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
_session_leaks: dict[str, list[str]] = {}


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
    if _session_leaks:
        terminalreporter.write_line(f"airlock: LEAKED by the session: {_session_leaks}", red=True)


@pytest.hookimpl(trylast=True)  # after the session fixtures' teardown (the leak check)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _session_leaks:
        session.exitstatus = 1


@pytest.fixture(scope="session", autouse=True)
def leak_scope(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Fail the run if a process, mount, loop device, network namespace, temp file or btrfs
    subvolume of this session survives the last test (``tests/support/leaks.py`` says how they
    are told apart from other sessions' on the same machine)."""
    leaks.become_subreaper()
    base = str(tmp_path_factory.getbasetemp())
    tmpdir = Path(base) / "tmp"
    tmpdir.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(tmpdir)
    tempfile.tempdir = None  # recomputed from TMPDIR
    before = leaks.snapshot(base, tmpdir)
    yield base, tmpdir
    _session_leaks.update(leaks.new_since(before, base, tmpdir, wait_s=LEAK_SETTLE_S))


@pytest.fixture
def new_processes() -> Callable[[], set[int]]:
    """Live processes below this session that were not running when the test began."""
    before = leaks.descendants(os.getpid())
    return lambda: leaks.descendants(os.getpid()) - before


@pytest.fixture(autouse=True)
def _leak_check(leak_scope: tuple[str, Path], request: pytest.FixtureRequest) -> Iterator[None]:
    """The same check around every test: what a test starts or makes, it stops or removes.

    A test marked ``restarts_world`` restarts processes of its module's world (a reboot, a
    server): those belong to the world, so only the session's check (and the world's own
    teardown) covers processes for it; every other kind is still checked per test."""
    base, tmpdir = leak_scope
    before = leaks.snapshot(base, tmpdir)
    yield
    restarts = request.node.get_closest_marker("restarts_world") is not None
    leaked = leaks.new_since(
        before, base, tmpdir, ignore=frozenset({"processes"}) if restarts else frozenset()
    )
    if leaked:
        pytest.fail(f"leaked by this test: {leaked}", pytrace=False)
