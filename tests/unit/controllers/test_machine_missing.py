"""A machine deleted behind the operator's back: its node and its cluster say it is missing.

The machine vanishes at the provider (`Inventory.mark_deleting`, as a person deleting it
in the provider's console would), not through its ClusterNode. The node must say so in
the words a person looks for (`MachineMissing`, the provider id), and the cluster must
name it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clusters import NS, cluster_body, condition, nodes, state
from conftest import provider_body

from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.providers.simulator import Inventory
from nodecluster.testing import FakeKube, Harness


def vanish(inventory: Path, name: str) -> None:
    """Delete a machine at the provider, not through its ClusterNode."""
    gone = Inventory(inventory, now=lambda: LoopClock().now().timestamp())
    try:
        gone.mark_deleting(name, latency=0.0)
    finally:
        gone.close()


def node_status(fake: FakeKube, name: str) -> dict[str, Any]:
    return dict((fake.stored(CLUSTERNODES, NS, name) or {}).get("status", {}))


def node_ready(fake: FakeKube, name: str) -> dict[str, Any]:
    conditions = node_status(fake, name).get("conditions", [])
    return next((c for c in conditions if c["type"] == "Ready"), {})


async def deployed(fake: FakeKube, harness: Harness, inventory: Path, **spec: Any) -> str:
    """A one-node cluster `web`, Deployed; the name of its node."""
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=1, **spec))
    await harness.wait_for(lambda: state(fake) == "Deployed")
    return str(nodes(fake)[0]["metadata"]["name"])


async def test_a_vanished_machine_is_reported_missing_and_named_by_its_cluster(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    health = {"pollIntervalSeconds": 10}
    name = await deployed(fake, harness, inventory, policies={"health": health})
    provider_id = node_status(fake, name)["providerId"]
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"paused": True}})  # keep it to look at

    vanish(inventory, name)

    await harness.wait_for(lambda: node_ready(fake, name).get("status") == "False", within=60)
    ready = node_ready(fake, name)
    assert ready["reason"] == "MachineMissing"
    assert "no longer exists at the provider" in ready["message"]
    assert provider_id in ready["message"]
    assert node_status(fake, name)["state"] == "Failed"
    assert node_status(fake, name)["ready"] is False
    await harness.wait_for(lambda: condition(fake, "Degraded").get("status") == "True")
    degraded = condition(fake, "Degraded")
    assert degraded["reason"] == "MachineMissing"
    assert name in degraded["message"]
