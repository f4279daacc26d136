"""Quotas hold across clusters and for hand-made nodes (issue 11, item 4): what a
NodeProvider's quota allows is counted from existing *and* in-flight machines, and taken
before a create is issued."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from clusters import NS, cluster_body, condition, machines, nodes
from conftest import provider_body

from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.providers.base import ProviderConfig, ProviderDriver
from nodecluster.providers.registry import ProviderRegistry
from nodecluster.providers.simulator import SimulatorDriver
from nodecluster.testing import FakeKube, Harness


def unaware_cloud(config: ProviderConfig) -> ProviderDriver:
    """The simulator as a cloud that knows nothing of the NodeProvider's quota (the
    simulator otherwise enforces it too, and would hide the operator's own check)."""
    return SimulatorDriver(replace(config, max_nodes=None, max_cores=None))


@pytest.fixture
def registry() -> ProviderRegistry:
    registry = ProviderRegistry()
    registry.register("faulty", unaware_cloud)
    return registry


@pytest.mark.parametrize(("clusters", "size"), [(10, 1), (2, 5), (4, 3)])
async def test_clusters_racing_for_a_quota_get_exactly_the_quota(
    fake: FakeKube, harness: Harness, inventory: Path, clusters: int, size: int
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, quotas={"maxNodes": 5}))
    names = [f"c{i}" for i in range(clusters)]
    for name in names:
        await fake.create(NODECLUSTERS, NS, cluster_body(name=name, targetNodes=size))

    def settled() -> bool:
        ready = sum(len(nodes(fake, n)) for n in names)
        stalled = [
            n for n in names if condition(fake, "Stalled", n).get("reason") == "QuotaExceeded"
        ]
        return ready == 5 and len(stalled) == len([n for n in names if len(nodes(fake, n)) < size])

    await harness.wait_for(settled, what="the quota shared out")
    await harness.idle()

    assert len(fake.calls_of("create", "clusternodes")) == 5
    assert len(machines(inventory)) == 5


def hand_made(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "nodecluster.io/v1alpha1",
        "kind": "ClusterNode",
        "metadata": {"name": name, "namespace": NS, "finalizers": ["nodecluster.io/machine"]},
        "spec": {
            "clusterName": "by-hand",
            "providerRef": {"name": "sim"},
            "profile": {"machineType": "small"},
        },
    }


async def test_hand_made_nodes_are_held_to_the_quota(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, quotas={"maxNodes": 2}))
    for i in range(4):
        await fake.create(CLUSTERNODES, NS, hand_made(f"by-hand-{i}"))

    def ready_of(name: str) -> dict[str, Any]:
        status = (fake.stored(CLUSTERNODES, NS, name) or {}).get("status", {})
        return next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})

    await harness.wait_for(
        lambda: (
            sum(1 for i in range(4) if ready_of(f"by-hand-{i}").get("reason") == "QuotaExceeded")
            == 2
        ),
        what="two nodes refused by the quota",
    )
    assert len(machines(inventory)) == 2
