"""Configuration shared by every test suite.

Under CI (``CI=true``) a skipped test is a failure: a green CI run must mean that every test
really ran, the integration tests against the real Colonies stack in particular. Locally,
skips stay skips (for example when the stack cannot be started here).

- A skip in setup, call or teardown (``pytest.skip``, ``skipif``, a fixture that skips) is
  reported as a failure whose text starts with "skipped under CI=true".
- A skip while collecting a module (``pytest.skip(allow_module_level=True)``,
  ``importorskip``) cannot be turned into a failure without aborting the session, so it is
  listed in the summary and the exit status is set to 1.
- Expected failures (``xfail``) are not skips and are left alone.

The CLI reads the checkout's ``.dev/stack.env`` when no ``COLONIES_*`` variable is set
(faas_sandbox/devenv.py). Tests set their settings explicitly, so the session turns that
lookup off (``FAAS_SANDBOX_STACK_ENV=none``, inherited by every subprocess a test starts).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

CI_SKIP_PREFIX = "skipped under CI=true (a skip is a failure in CI)"
_collect_skips: list[str] = []


def ci_mode() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    os.environ["FAAS_SANDBOX_STACK_ENV"] = "none"


def _reason(longrepr: Any) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if ci_mode() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"{CI_SKIP_PREFIX}: {_reason(report.longrepr)}"
    return report


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if ci_mode() and report.skipped:
        _collect_skips.append(f"{report.nodeid}: {_reason(report.longrepr)}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _collect_skips:
        terminalreporter.section(CI_SKIP_PREFIX, red=True)
        for line in _collect_skips:
            terminalreporter.line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _collect_skips and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
