"""A machine deleted behind the operator's back: said to be missing, and replaced.

The machine vanishes at the provider (`Inventory.mark_deleting`, as a person deleting it
in the provider's console would), not through its ClusterNode. The node must say so in
the words a person looks for (`MachineMissing`, the provider id), the cluster must name
it, and the cluster's recovery must replace it: a reboot cannot bring back a machine
that does not exist.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from clusters import NS, cluster_body, condition, live_nodes, machines, nodes, state
from conftest import provider_body

from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.providers.base import Retryable
from nodecluster.providers.identity import node_of
from nodecluster.providers.simulator import Inventory
from nodecluster.testing import FakeKube, Harness
from nodecluster.testing.drivers import DriverFaults


def machine_of(inventory: Inventory, node: str) -> str:
    """The provider-side name of node `node`'s machine (derived from the node's identity)."""
    return next(
        r["name"] for r in inventory.list() if node_of(r["name"], json.loads(r["tags"])) == node
    )


def vanish(inventory: Path, name: str) -> None:
    """Delete a machine at the provider, not through its ClusterNode."""
    gone = Inventory(inventory, now=lambda: LoopClock().now().timestamp())
    try:
        gone.mark_deleting(machine_of(gone, name), latency=0.0)
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


@pytest.mark.parametrize("recovery", ["Reboot", "None"])
async def test_a_vanished_machine_is_replaced_and_never_asked_to_reboot(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults, recovery: str
) -> None:
    health = {"recovery": recovery, "pollIntervalSeconds": 10}
    name = await deployed(fake, harness, inventory, policies={"health": health})

    vanish(inventory, name)

    await harness.wait_for(
        lambda: (
            name not in {n["metadata"]["name"] for n in nodes(fake)}
            and len(live_nodes(fake)) == 1
            and state(fake) == "Deployed"
        ),
        what="the vanished node replaced",
    )
    patches = len(fake.calls_of("patch", "clusternodes"))
    await asyncio.sleep(3600)  # an hour of operator time (looptime: no real wait)

    assert len(fake.calls_of("patch", "clusternodes")) == patches  # nothing rewritten
    assert state(fake) == "Deployed"
    assert len(machines(inventory)) == 1
    assert faults.count("reboot") == 0
    assert reboot_requests(fake) == []


async def test_a_vanished_machine_is_not_drained_for_the_grace_period(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    """The deletion policy's grace period drains a node's machine; a missing one has
    nothing to drain, so its replacement does not wait for it."""
    policies = {"health": {"pollIntervalSeconds": 10}, "deletion": {"gracePeriodSeconds": 3600}}
    name = await deployed(fake, harness, inventory, policies=policies)

    vanish(inventory, name)

    await harness.wait_for(
        lambda: name not in {n["metadata"]["name"] for n in nodes(fake)},
        within=120,
        what="the vanished node gone without its grace period",
    )
    await harness.wait_for(lambda: state(fake) == "Deployed")


def reboot_requests(fake: FakeKube) -> list[tuple[str, str]]:
    """Every new spec.rebootRequestedAt written to a ClusterNode: (node, value)."""
    seen: dict[str, str | None] = {}
    asked: list[tuple[str, str]] = []
    for event in fake.history:
        if event.kind != "clusternodes":
            continue
        node = event.body["metadata"]["name"]
        value = event.body["spec"].get("rebootRequestedAt")
        if value is not None and value != seen.get(node):
            asked.append((node, value))
        seen[node] = value
    return asked


async def test_a_reboot_not_yet_carried_out_is_not_asked_for_again(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    """A broken machine whose reboot the provider keeps refusing (throttled) is asked to
    reboot once: the request stands until carried out, and is not written again on every
    reconcile of its cluster."""
    health = {"recovery": "Reboot", "pollIntervalSeconds": 10}
    name = await deployed(fake, harness, inventory, policies={"health": health})
    faults.fail("reboot", Retryable("throttled"), name=name, times=None)

    broken = Inventory(inventory, now=lambda: LoopClock().now().timestamp())
    try:
        assert broken.set_failed(machine_of(broken, name))
    finally:
        broken.close()

    await harness.wait_for(lambda: faults.count("reboot", name) >= 2, what="the reboot retried")
    await asyncio.sleep(3600)  # an hour of operator time (looptime: no real wait)

    assert len(reboot_requests(fake)) == 1

    faults.clear()  # the provider takes the reboot now: the one request is carried out
    await harness.wait_for(lambda: state(fake) == "Deployed", what="rebooted and Deployed")
    assert node_status(fake, name)["state"] == "Running"
    assert node_status(fake, name).get("lastRebootTime")
    assert len(reboot_requests(fake)) == 1
