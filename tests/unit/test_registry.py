"""The provider registry: drivers found through entry points, built once per
NodeProvider, rebuilt (and the old one closed) when the NodeProvider changes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from nodecluster.providers.base import (
    InvalidConfig,
    Machine,
    MachineSpec,
    PowerControl,
    ProviderConfig,
    ProviderDriver,
)
from nodecluster.providers.deadline import DeadlineDriver
from nodecluster.providers.registry import GROUP, ProviderRegistry, discover
from nodecluster.providers.simulator import SimulatorDriver


def test_simulator_is_an_installed_entry_point() -> None:
    found = {ep.name: ep for ep in entry_points(group="nodecluster.providers")}
    assert GROUP == "nodecluster.providers"
    assert found["simulator"].value == "nodecluster.providers.simulator:SimulatorDriver"
    assert discover()["simulator"] is SimulatorDriver


async def test_default_registry_builds_the_simulator(tmp_path: Path) -> None:
    registry = ProviderRegistry()
    config = ProviderConfig(name="sim", config={"path": str(tmp_path / "sim.db")})
    try:
        driver = await registry.driver_for("simulator", config)
        assert isinstance(driver, DeadlineDriver)  # every driver is handed out bounded
        assert isinstance(driver.inner, SimulatorDriver)
        assert isinstance(driver, ProviderDriver)
        assert isinstance(driver, PowerControl)  # as the simulator is
        assert driver.seconds == config.call_timeout_seconds
        assert "simulator" in registry.names
    finally:
        await registry.close()


@dataclass
class FakeDriver:
    """Counts its own closing; does nothing else."""

    config: ProviderConfig
    closed: int = 0

    async def create(self, spec: MachineSpec) -> Machine:
        raise NotImplementedError

    async def delete(self, name: str) -> None:
        raise NotImplementedError

    async def get(self, name: str) -> Machine:
        raise NotImplementedError

    async def list(self, cluster: str | None = None) -> list[Machine]:
        return []

    async def close(self) -> None:
        self.closed += 1


@dataclass
class FakeFactory:
    built: list[FakeDriver] = field(default_factory=list)

    def __call__(self, config: ProviderConfig) -> ProviderDriver:
        driver = FakeDriver(config)
        self.built.append(driver)
        return driver


@pytest.fixture
def factory() -> FakeFactory:
    return FakeFactory()


@pytest.fixture
def registry(factory: FakeFactory) -> ProviderRegistry:
    return ProviderRegistry({"fake": factory, "other": FakeFactory()})


async def test_unknown_driver_is_invalid_config_listing_installed_drivers(
    registry: ProviderRegistry,
) -> None:
    with pytest.raises(InvalidConfig, match=r"'nope'.*installed: fake, other") as err:
        await registry.driver_for("nope", ProviderConfig(name="p", config={}))
    assert not err.value.retryable


BASE = ProviderConfig(name="p", config={"a": 1}, credentials={"token": "x"}, max_nodes=3)


def changed(**fields: Any) -> ProviderConfig:
    values = {
        "name": BASE.name,
        "config": BASE.config,
        "credentials": BASE.credentials,
        "max_nodes": BASE.max_nodes,
        "max_cores": BASE.max_cores,
        "cores_by_type": BASE.cores_by_type,
        "call_timeout_seconds": BASE.call_timeout_seconds,
    }
    return ProviderConfig(**{**values, **fields})


@pytest.mark.parametrize(
    ("again", "rebuilt"),
    [
        (changed(), False),
        (changed(config={"a": 1}), False),
        (changed(config={"a": 2}), True),
        (changed(credentials={"token": "y"}), True),
        (changed(max_nodes=4), True),
        (changed(max_cores=8), True),
        (changed(cores_by_type={"small": 2}), True),
        (changed(call_timeout_seconds=5.0), True),
    ],
    ids=[
        "same",
        "equal-config",
        "config",
        "credentials",
        "max-nodes",
        "max-cores",
        "cores",
        "call-timeout",
    ],
)
async def test_driver_is_reused_until_its_provider_changes(
    registry: ProviderRegistry, factory: FakeFactory, again: ProviderConfig, rebuilt: bool
) -> None:
    first = await registry.driver_for("fake", BASE)
    second = await registry.driver_for("fake", again)

    assert (second is not first) is rebuilt
    assert len(factory.built) == (2 if rebuilt else 1)
    assert factory.built[0].closed == (1 if rebuilt else 0)
    assert registry.cached("p") is second
    assert isinstance(second, DeadlineDriver)
    assert second.seconds == again.call_timeout_seconds


async def test_switching_driver_rebuilds(registry: ProviderRegistry, factory: FakeFactory) -> None:
    first = await registry.driver_for("fake", BASE)
    second = await registry.driver_for("other", BASE)
    assert second is not first
    assert factory.built[0].closed == 1


async def test_each_provider_has_its_own_driver_and_close_closes_all(
    registry: ProviderRegistry, factory: FakeFactory
) -> None:
    a = await registry.driver_for("fake", changed(name="a"))
    b = await registry.driver_for("fake", changed(name="b"))
    assert a is not b
    assert registry.cached("missing") is None

    await registry.close()

    assert [d.closed for d in factory.built] == [1, 1]
    assert registry.cached("a") is None


@dataclass
class StuckCloseDriver(FakeDriver):
    """A driver whose close never returns."""

    async def close(self) -> None:
        self.closed += 1
        await asyncio.Event().wait()


async def test_an_old_driver_that_will_not_close_does_not_block_its_replacement() -> None:
    built: list[FakeDriver] = []

    def stuck(config: ProviderConfig) -> ProviderDriver:
        built.append(StuckCloseDriver(config))
        return built[-1]

    registry = ProviderRegistry({"stuck": stuck})
    quick = changed(call_timeout_seconds=0.05)
    first = await registry.driver_for("stuck", quick)
    second = await registry.driver_for("stuck", changed(call_timeout_seconds=0.05, max_nodes=9))

    assert second is not first and registry.cached("p") is second
    assert built[0].closed == 1  # asked to close, cut off by the deadline, logged

    await registry.close()  # a stuck close is cut off here too; nothing is left cached
    assert built[1].closed == 1
    assert registry.cached("p") is None


async def test_register_adds_a_driver_without_an_entry_point() -> None:
    registry = ProviderRegistry({})
    extra = FakeFactory()
    registry.register("extra", extra)
    assert registry.names == ["extra"]
    await registry.driver_for("extra", BASE)
    assert len(extra.built) == 1


def test_credentials_stay_out_of_repr() -> None:
    config = ProviderConfig(name="p", config={}, credentials={"apiKey": "s3cr3t-value"})
    assert "s3cr3t-value" not in repr(config)
    assert "apiKey" not in repr(config)
