# SPDX-License-Identifier: MIT
"""A pytest plugin: under ``AIRLOCK_REQUIRE_ROOT=1`` any skip fails the run.

Counted: ``skip``/``skipif`` marks, ``pytest.skip()`` at run time or at collection (a skipped
module), ``pytest.importorskip``.  The summary prints how many tests ran and how many were
skipped, with each skip's reason, so CI shows "skipped: 0" on every pass.  Registered by
``tests/conftest.py``; ``tests/unit/test_strict_skips.py`` runs it on a scratch suite as its own
negative control.
"""

from __future__ import annotations

import os

import pytest

REQUIRE = os.environ.get("AIRLOCK_REQUIRE_ROOT") == "1"

_ran: list[str] = []
_skipped: list[tuple[str, str]] = []


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and not report.skipped:
        _ran.append(report.nodeid)
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append((report.nodeid, _reason(report)))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:
        _skipped.append((report.nodeid, _reason(report)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(f"airlock: tests ran: {len(_ran)}, skipped: {len(_skipped)}")
    for nodeid, reason in _skipped:
        terminalreporter.write_line(f"airlock: skipped {nodeid}: {reason}")
    if REQUIRE and _skipped:
        terminalreporter.write_line(
            "airlock: AIRLOCK_REQUIRE_ROOT=1 and tests were skipped: the run fails"
        )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REQUIRE and _skipped and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
