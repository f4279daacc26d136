"""Rules shared by the unit tests: tests that need a tool, and no silent skips.

A few tests run binaries of the local control plane (helm, kubectl) and are marked
`@pytest.mark.needs_tool("helm", ...)`. On a machine without them they skip, with the
reason. tools/test builds those binaries first and sets NODECLUSTER_REQUIRE_TOOLS=1: then
a missing tool fails the tests that need it, and a skip of any kind under tests/unit fails
the run. Why: in a summary line, a check that quietly did not run ("15 skipped") is easy to
read past, and then drift in the chart or in manifests/base gets through CI unchecked.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import chart

# EC2 on moto's standalone server, for the aws driver's tests (nodecluster.testing.ec2, so
# that the end-to-end suite can share them): `moto_server` per session, `ec2` per test.
from nodecluster.testing.ec2 import ec2, moto_server
from nodecluster.testing.nodesapi import NodesApi

REQUIRE_TOOLS = "NODECLUSTER_REQUIRE_TOOLS"


def tools_required() -> bool:
    """Whether this run promised every tool (tools/test does)."""
    return os.environ.get(REQUIRE_TOOLS) == "1"


@functools.cache
def find_tool(name: str) -> str | None:
    """chart.find_tool, once per name: it runs tools/build-control-plane to ask."""
    return chart.find_tool(name)


__all__ = ["ec2", "moto_server"]

_skipped: list[str] = []
"""Node ids of tests under tests/unit that skipped in this session."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs_tool(*names): runs binaries of the local control plane (helm, kubectl); "
        f"skips without them, fails without them when {REQUIRE_TOOLS}=1",
    )


def missing_tools(item: pytest.Item) -> str | None:
    """Why the item cannot run here, or None when every tool it needs is found."""
    missing = [
        name
        for mark in item.iter_markers("needs_tool")
        for name in mark.args
        if find_tool(name) is None
    ]
    if not missing:
        return None
    return (
        f"{', '.join(missing)} not found (tools/build-control-plane builds it; "
        f"or set ${missing[0].upper()} or put it on PATH)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A skip mark, not pytest.skip() at setup, so that -rs names the test, not this file.
    if tools_required():
        return
    for item in items:
        reason = missing_tools(item)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_setup(item: pytest.Item) -> None:
    if tools_required() and (reason := missing_tools(item)):
        pytest.fail(f"{reason}, and {REQUIRE_TOOLS}=1 says it must be there", pytrace=False)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # An expected failure is reported as skipped too; it ran, so it is no silent skip.
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped and tools_required() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped and tools_required():
        terminalreporter.write_line(
            f"{len(_skipped)} unit test(s) skipped while {REQUIRE_TOOLS}=1 "
            "(tools/test): every unit test must run there. Skipped:",
            red=True,
            bold=True,
        )
        for nodeid in _skipped:
            terminalreporter.write_line(f"  {nodeid}", red=True)


@pytest.fixture
async def nodes_api() -> AsyncIterator[NodesApi]:
    """The Nodes API stand-in (nodecluster.testing.nodesapi), for the kwok driver."""
    api = await NodesApi().start()
    yield api
    await api.close()
