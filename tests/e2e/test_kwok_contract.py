"""The provider contract (`nodecluster.testing.contract`), run against the kwok driver on a
real kube-apiserver with a real kwok (the suite's `kwok` fixture) making its Nodes Ready.

Every scenario is played, none skipped: latency is the driver's `readyDelaySeconds` (kwok's
boot), capacity and quotas its `capacity` and `quota`, and the failing provider is the
same API server behind `FaultyKube`, which answers 503 to everything, half of it after
forwarding (reached through a kubeconfig in the credentials Secret, so that path runs too).
Each test starts and ends with no Node of the contract's NodeProvider: Nodes are
cluster-scoped, and the suite's machine names repeat from test to test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from kube import Kube

from kwok import KwokProcess
from nodecluster.providers.base import ProviderConfig, ProviderDriver
from nodecluster.providers.kwok import KwokDriver
from nodecluster.testing.contract import (
    MakeDriver,
    ProviderContract,
    Scenario,
    delete_until_not_found,
)
from nodecluster.testing.faultykube import FaultyKube

PROVIDER = "contract"
DEFAULT = Scenario()


def kwok_config(scenario: Scenario, kubeconfig: str) -> dict[str, Any]:
    """The kwok driver's `spec.config` that plays a contract scenario."""
    config: dict[str, Any] = {
        "machineTypes": {"small": {"cores": scenario.cores_per_machine, "memoryMib": 2048}},
        "zones": list(scenario.zones),
        "kubeconfig": kubeconfig,
        "readyDelaySeconds": scenario.latency,
    }
    if scenario.capacity is not None:
        config["capacity"] = scenario.capacity
    quota = {"maxNodes": scenario.max_nodes, "maxCores": scenario.max_cores}
    if any(value is not None for value in quota.values()):
        config["quota"] = {key: value for key, value in quota.items() if value is not None}
    return config


async def remove_every_node(kube: Kube) -> None:
    """Delete the contract provider's Nodes, until none is left."""
    driver = KwokDriver(
        ProviderConfig(name=PROVIDER, config=kwok_config(DEFAULT, str(kube.kubeconfig)))
    )
    try:
        for machine in await driver.list():
            await delete_until_not_found(driver, machine.name)
        assert await driver.list() == []
    finally:
        await driver.close()


class TestKwokContract(ProviderContract):
    @pytest.fixture
    async def make_driver(self, kube: Kube, kwok: KwokProcess) -> AsyncIterator[MakeDriver]:
        await remove_every_node(kube)
        proxy = await FaultyKube(kube.kubeconfig).start()
        built: list[ProviderDriver] = []

        def make(scenario: Scenario = DEFAULT) -> ProviderDriver:
            config = kwok_config(scenario, str(kube.kubeconfig))
            credentials: dict[str, str] = {}
            if scenario.failing:
                del config["kubeconfig"]
                credentials["kubeconfig"] = yaml.safe_dump(proxy.kubeconfig())
            driver = KwokDriver(
                ProviderConfig(name=PROVIDER, config=config, credentials=credentials)
            )
            built.append(driver)
            return driver

        yield make
        for driver in built:
            await driver.close()
        await proxy.close()
        if proxy.requests:
            # The failing provider was played: some calls took effect, others did not.
            assert 0 < proxy.forwarded < proxy.requests
        kwok.check_alive()
        await remove_every_node(kube)
