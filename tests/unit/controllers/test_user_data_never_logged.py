"""A node's user data (a boot token, as a rule) goes to its provider's create and
nowhere else: not into the operator's logs, not into any object it writes, even when the
create fails and is retried.

The driver here logs every spec it is asked to create, as drivers commonly do; the spec's
repr is what keeps the token out of that line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from clusters import NS, cluster_body, state
from conftest import provider_body

from nodecluster.controllers.kubeapi import NODECLUSTERS, NODEPROVIDERS
from nodecluster.providers.base import (
    Machine,
    MachineSpec,
    ProviderConfig,
    ProviderDriver,
    Retryable,
)
from nodecluster.providers.registry import ProviderRegistry
from nodecluster.testing import FakeKube, Harness
from nodecluster.testing.drivers import DriverFaults, FaultyPowerDriver, faulty_simulator

TOKEN = "abcdef.0123456789abcdef"

log = logging.getLogger("example.driver")


class LoggingDriver(FaultyPowerDriver):
    """The faulty simulator, logging each spec it is asked to create."""

    async def create(self, spec: MachineSpec) -> Machine:
        log.info("creating %s", spec)
        log.debug("creating %r", spec)
        return await super().create(spec)


@pytest.fixture
def registry(faults: DriverFaults) -> ProviderRegistry:
    simulator = faulty_simulator(faults)

    def build(config: ProviderConfig) -> ProviderDriver:
        wrapped = simulator(config)
        assert isinstance(wrapped, FaultyPowerDriver)
        return LoggingDriver(wrapped.inner, faults)

    registry = ProviderRegistry()
    registry.register("faulty", build)
    return registry


async def test_a_nodes_user_data_is_never_logged_nor_written(
    fake: FakeKube,
    harness: Harness,
    inventory: Path,
    faults: DriverFaults,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.put_secret(NS, "web-boot", {"userData": f"runcmd: [kubeadm join --token {TOKEN}]"})
    faults.fail("create", Retryable("the answer was lost"), after_effect=True)
    fake.add(NODEPROVIDERS, provider_body(inventory))
    profile = {"machineType": "small", "userDataSecretRef": "web-boot"}
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=2, profile=profile))

    await harness.wait_for(lambda: state(fake) == "Deployed")

    assert faults.count("create") >= 3  # the failed one included
    assert "creating MachineSpec(name='web-" in caplog.text  # the driver did log its specs
    assert TOKEN not in caplog.text
    assert all(TOKEN not in json.dumps(event.body) for event in fake.history)
