"""The provider contract (`nodecluster.testing.contract`), run against the simulator driver.

Another driver runs the same suite by subclassing ProviderContract with its own
`make_driver` fixture (README, "Writing a provider driver").
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from nodecluster.providers.base import (
    CapacityExceeded,
    InvalidConfig,
    MachineSpec,
    NotFound,
    ProviderConfig,
    ProviderDriver,
    ProviderError,
    QuotaExceeded,
    Retryable,
    is_not_found,
)
from nodecluster.providers.simulator import Inventory, SimulatorDriver
from nodecluster.testing.contract import (
    AdoptionContract,
    MakeDriver,
    MakeUnowned,
    ProviderContract,
    Scenario,
)


def simulator_config(scenario: Scenario, path: Path) -> dict[str, Any]:
    """The simulator's `spec.config` that plays a contract scenario."""
    config: dict[str, Any] = {"path": str(path), "zones": list(scenario.zones), "seed": 11}
    if scenario.latency:
        for key in ("createLatencySeconds", "deleteLatencySeconds", "powerLatencySeconds"):
            config[key] = scenario.latency
    if scenario.capacity is not None:
        config["capacity"] = scenario.capacity
    quota = {"maxNodes": scenario.max_nodes, "maxCores": scenario.max_cores}
    if any(v is not None for v in quota.values()):
        config["quota"] = {k: v for k, v in quota.items() if v is not None}
    if scenario.failing:
        config["failureRate"] = 1.0
    return config


DEFAULT = Scenario()


class TestSimulatorContract(ProviderContract, AdoptionContract):
    @pytest.fixture
    async def make_driver(self, tmp_path: Path) -> AsyncIterator[MakeDriver]:
        built: list[ProviderDriver] = []

        def make(scenario: Scenario = DEFAULT) -> ProviderDriver:
            driver = SimulatorDriver(
                ProviderConfig(
                    name="contract",
                    config=simulator_config(scenario, tmp_path / "sim.db"),
                    cores_by_type={"small": scenario.cores_per_machine},
                )
            )
            built.append(driver)
            return driver

        yield make
        for driver in built:
            await driver.close()

    @pytest.fixture
    def make_unowned(self, tmp_path: Path) -> MakeUnowned:
        """A machine written into the file directly, as a person or another tool would:
        no cluster, no identity tags; its tags are the simulator's labels."""

        async def make(name: str, zone: str, tags: Mapping[str, str]) -> str:
            spec = MachineSpec(name=name, cluster="", machine_type="small", labels=tags)
            inventory = Inventory(tmp_path / "sim.db")
            try:
                row, _ = inventory.create(spec, 2, zone, 0.0, (None, None, None))
            finally:
                inventory.close()
            return str(row["provider_id"])

        return make


@pytest.mark.parametrize(
    ("error", "retryable", "reason"),
    [
        (NotFound, False, "NotFound"),
        (Retryable, True, "ProviderUnavailable"),
        (CapacityExceeded, True, "CapacityExceeded"),
        (QuotaExceeded, True, "QuotaExceeded"),
        (InvalidConfig, False, "InvalidProviderConfig"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_error_vocabulary(error: type[ProviderError], retryable: bool, reason: str) -> None:
    err = error("boom")
    assert isinstance(err, ProviderError)
    assert err.retryable is retryable
    assert err.reason == reason
    assert is_not_found(err) is (error is NotFound)
