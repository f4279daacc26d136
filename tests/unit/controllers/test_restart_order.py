"""After a restart, the NodeProviders are known before any cluster or node is reconciled.

kopf delivers each kind's initial listing from its own watcher, in no fixed order. The
provider cache used to be filled only by NodeProvider events, so a cluster or node whose
listing came first was reconciled against no provider: it reported `ProviderNotFound`
for a moment, and an operation waiting on its cluster failed because the cluster said
Stalled. The harness here delivers the providers' listing last, the queues running
between kinds, which is the order that showed it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from clusters import NS, cluster_body, condition, nodes, state
from conftest import provider_body

from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import NODECLUSTERS, NODEPROVIDERS, OPERATIONS
from nodecluster.controllers.world import Settings
from nodecluster.providers.base import CapacityExceeded
from nodecluster.providers.registry import ProviderRegistry
from nodecluster.testing import FakeKube, Harness
from nodecluster.testing.drivers import DriverFaults

PROVIDERS_LAST = ("clusternodes", "nodeclusters", "nodeclusteroperations", "nodeproviders")


@pytest.fixture
async def harness(
    fake: FakeKube, registry: ProviderRegistry, clock: LoopClock, settings: Settings
) -> AsyncIterator[Harness]:
    """The controllers, fed each kind's initial listing in turn, the providers' last."""
    async with Harness(
        fake, registry=registry, clock=clock, settings=settings, initial_order=PROVIDERS_LAST
    ) as running:
        yield running


def provider_not_found(fake: FakeKube) -> list[tuple[str, str, str | None]]:
    """Every NodeCluster or ClusterNode status ever stored that mentions ProviderNotFound:
    (kind, name, state)."""
    return [
        (change.kind, change.body["metadata"]["name"], change.body["status"].get("state"))
        for change in fake.history
        if change.kind in ("nodeclusters", "clusternodes")
        and "ProviderNotFound" in json.dumps(change.body.get("status", {}))
    ]


def operation(fake: FakeKube, name: str) -> dict[str, Any]:
    return (fake.stored(OPERATIONS, NS, name) or {}).get("status", {})


async def deploy(fake: FakeKube, harness: Harness, inventory: Path, **config: Any) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, config=config))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=3))
    await harness.wait_for(lambda: state(fake) == "Deployed", what="Deployed")


async def test_a_restart_over_a_converged_cluster_never_reports_provider_not_found(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory)
    await asyncio.sleep(600)  # every timer of the converge passed
    fake.reset_journal()

    await harness.restart()
    await harness.idle()
    await asyncio.sleep(600)

    assert provider_not_found(fake) == []
    assert fake.writes == 0
    assert state(fake) == "Deployed"


async def test_after_a_restart_a_failing_node_reports_its_own_error_not_provider_not_found(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    await deploy(fake, harness, inventory)
    faults.fail("create", CapacityExceeded("zone-a is full"), times=None)
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 4}})
    await harness.wait_for(lambda: state(fake) == "PartlyDeployed", what="PartlyDeployed")

    await harness.restart()  # the failing node is retried at once (no timer survived)
    await harness.idle()
    await asyncio.sleep(600)

    assert provider_not_found(fake) == []
    assert state(fake) == "PartlyDeployed"
    assert condition(fake, "Stalled")["reason"] == "CapacityExceeded"


async def test_a_scale_out_in_flight_is_not_failed_by_a_restart(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory, createLatencySeconds=30)
    await fake.create(
        OPERATIONS,
        NS,
        {
            "apiVersion": "nodecluster.io/v1alpha1",
            "kind": "NodeClusterOperation",
            "metadata": {"name": "scale-out", "namespace": NS},
            "spec": {"clusterName": "web", "action": "ScaleOut", "count": 2},
        },
    )
    # Running, waiting for two machines that take half a minute to come up.
    await harness.wait_for(
        lambda: operation(fake, "scale-out").get("phase") == "Running" and len(nodes(fake)) == 5,
        what="the scale-out waiting for its nodes",
    )

    await harness.restart()
    await harness.wait_for(
        lambda: operation(fake, "scale-out").get("phase") in ("Succeeded", "Failed"),
        what="the scale-out ending",
    )

    outcome = operation(fake, "scale-out")
    assert (outcome["phase"], outcome["message"], provider_not_found(fake)) == (
        "Succeeded",
        "target 3 -> 5; 5 nodes ready",
        [],
    )
    await harness.wait_for(lambda: state(fake) == "Deployed", what="Deployed")
    assert condition(fake, "Ready")["status"] == "True"
