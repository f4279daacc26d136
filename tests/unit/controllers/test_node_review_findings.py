"""Regressions a review of the controllers' restructuring found (each failed before its fix)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from clusters import NS, cluster_body, nodes, state
from conftest import provider_body

from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.providers.base import Retryable
from nodecluster.providers.identity import node_of
from nodecluster.providers.simulator import Inventory
from nodecluster.testing import FakeKube, Harness
from nodecluster.testing.drivers import DriverFaults


async def deployed(fake: FakeKube, harness: Harness, inventory: Path, **spec: object) -> str:
    fake.add(NODEPROVIDERS, provider_body(inventory, **spec))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=1))
    await harness.wait_for(lambda: state(fake) == "Deployed")
    return str(nodes(fake)[0]["metadata"]["name"])


def machine_of(inventory: Inventory, node: str) -> str:
    """The provider-side name of node `node`'s machine (derived from the node's identity)."""
    return next(
        r["name"] for r in inventory.list() if node_of(r["name"], json.loads(r["tags"])) == node
    )


def node_status(fake: FakeKube, name: str) -> dict[str, object]:
    return dict((fake.stored(CLUSTERNODES, NS, name) or {}).get("status", {}))


async def test_a_vanished_machine_with_a_reboot_asked_is_replaced_not_rebooted(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    name = await deployed(fake, harness, inventory)
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"paused": True}})
    gone = Inventory(inventory)
    try:
        gone.mark_deleting(machine_of(gone, name), latency=0.0)
    finally:
        gone.close()
    await fake.patch(
        CLUSTERNODES, NS, name, {"spec": {"rebootRequestedAt": "2030-01-01T01:00:00Z"}}
    )

    await harness.wait_for(lambda: node_status(fake, name).get("state") == "Failed")
    assert faults.count("reboot") == 0
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"paused": False}})
    await harness.wait_for(lambda: name not in {n["metadata"]["name"] for n in nodes(fake)})


async def test_a_reboot_is_recorded_even_when_the_next_call_fails(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    name = await deployed(fake, harness, inventory)
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"paused": True}})
    faults.fail("stop", Retryable("throttled"), name=name)

    await fake.patch(
        CLUSTERNODES,
        NS,
        name,
        {"spec": {"rebootRequestedAt": "2029-12-31T23:00:00Z", "powerState": "Stopped"}},
    )

    await harness.wait_for(lambda: faults.count("stop", name) >= 2, what="the stop retried")
    assert node_status(fake, name).get("lastRebootTime")
    assert faults.count("reboot", name) == 1


async def test_a_machine_deleting_under_a_live_node_is_not_asked_about_every_second(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    name = await deployed(fake, harness, inventory)
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"paused": True}})
    going = Inventory(inventory, now=lambda: LoopClock().now().timestamp())
    try:
        going.mark_deleting(machine_of(going, name), latency=3600.0)
    finally:
        going.close()
    await fake.patch(
        CLUSTERNODES, NS, name, {"spec": {"rebootRequestedAt": "2030-01-01T01:00:00Z"}}
    )
    await harness.wait_for(lambda: node_status(fake, name).get("state") == "Deleting")
    before = faults.count("get", name)

    await asyncio.sleep(60)  # a minute of operator time (looptime: no real wait)

    assert faults.count("get", name) - before <= 5
