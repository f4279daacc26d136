"""Fixtures of the in-process controller tests: a FakeKube, the simulator, the Harness.

Every test here runs under looptime: the event loop's clock jumps whenever everything
waits, so backoffs, startup timeouts and resyncs pass in no real time, and `LoopClock`
moves the timestamps the controllers write along with it. Nothing sleeps to synchronise:
tests wait on conditions (`harness.wait_for`) whose deadlines are in loop time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from nodecluster.clock import LoopClock
from nodecluster.controllers.world import Settings
from nodecluster.providers.registry import ProviderRegistry
from nodecluster.testing import FakeKube, Harness
from nodecluster.testing.drivers import DriverFaults, faulty_simulator

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.looptime)


@pytest.fixture
def clock() -> LoopClock:
    """The one clock: the fake API's timestamps and the controllers' time."""
    return LoopClock()


@pytest.fixture
def fake(clock: LoopClock) -> FakeKube:
    """An empty in-memory API server."""
    return FakeKube(clock=clock, seed=7)


@pytest.fixture
def faults() -> DriverFaults:
    """Provider faults to inject into the `faulty` driver (the simulator, wrapped)."""
    return DriverFaults()


@pytest.fixture
def registry(faults: DriverFaults) -> ProviderRegistry:
    """The installed drivers (the simulator) plus `faulty`, the simulator with `faults`."""
    registry = ProviderRegistry()
    registry.register("faulty", faulty_simulator(faults))
    return registry


@pytest.fixture
def settings() -> Settings:
    """The operator's defaults."""
    return Settings()


@pytest.fixture
async def harness(
    fake: FakeKube, registry: ProviderRegistry, clock: LoopClock, settings: Settings
) -> AsyncIterator[Harness]:
    """The controllers, running on `fake`."""
    async with Harness(fake, registry=registry, clock=clock, settings=settings) as running:
        yield running


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    """The simulator's file of this test."""
    return tmp_path / "machines.db"


def provider_body(
    inventory: Path, name: str = "sim", driver: str = "faulty", **spec: Any
) -> dict[str, Any]:
    """A NodeProvider on the simulator's file (through the fault-injecting wrapper)."""
    config = {"path": str(inventory), "zones": ["zone-a", "zone-b"], "seed": 3}
    config.update(spec.pop("config", {}))
    return {
        "apiVersion": "nodecluster.io/v1alpha1",
        "kind": "NodeProvider",
        "metadata": {"name": name},
        "spec": {"driver": driver, "config": config, **spec},
    }
