"""Hooks shared by every Python suite (tests/e2e, tests/auth).

Under `CI=true` a skipped test is a failure: a test that skips because its tool (nmap,
testssl, swaks, clamd, promtool…), root or the mailroom binary is missing has not shown
anything, and CI must not go green on it. Locally a skip stays a skip (with its reason
in `pytest -rs`), so a developer without nmap can still run the rest.
"""

from __future__ import annotations

import os

import pytest


def ci_mode() -> bool:
    """True when the CI environment variable says so (CI=true, as CI runners set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or not ci_mode() or hasattr(report, "wasxfail"):
        return
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI=true, which counts as a failure: "
                       f"{_skip_reason(report)}")


_collect_skips: list[str] = []


def pytest_collectreport(report):
    """A module that skips itself at import (pytest.skip(allow_module_level=True),
    importorskip) fails the run under CI=true too. It is not turned into a collection
    error, which would interrupt the whole session; the run's exit status is set instead
    (pytest_sessionfinish) and the reason printed in the summary."""
    if report.skipped and ci_mode():
        _collect_skips.append(f"{report.nodeid}: {_skip_reason(report)}")


def pytest_terminal_summary(terminalreporter):
    if _collect_skips:
        terminalreporter.section("modules skipped under CI=true (each counts as a failure)")
        for line in _collect_skips:
            terminalreporter.line(line)


def pytest_sessionfinish(session, exitstatus):
    if _collect_skips and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
