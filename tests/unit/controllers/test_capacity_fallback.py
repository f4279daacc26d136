"""policies.capacityFallback on the fake API and the simulator: a node refused for capacity
is replaced by one of the next choice, the exhaustion is said once (condition, one Event),
remembered in status with a back-off, and new nodes return to the preferred choice when
capacity comes back, while nodes made from an alternative stay.

The simulator's `capacityLimits` is the cloud running dry: `small` machines are refused
while the limit is there, and editing the NodeProvider (the limit removed) is capacity
coming back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from clusters import NS, cluster_body, condition, live_nodes, machines, status
from conftest import provider_body

from nodecluster.controllers.kubeapi import NODECLUSTERS, NODEPROVIDERS
from nodecluster.testing import FakeKube, Harness

NO_SMALL = {"capacityLimits": [{"machineType": "small", "max": 0}]}
FALLBACK = {"capacityFallback": {"alternatives": [{"machineType": "big"}]}}


def types_of(fake: FakeKube) -> list[tuple[str, int | None]]:
    """(machine type, alternative) of each live node, sorted."""
    return sorted(
        (n["spec"]["profile"]["machineType"], n["spec"].get("alternative"))
        for n in live_nodes(fake)
    )


def provider_nodes(fake: FakeKube) -> int | None:
    """The provider's count of nodes (refreshed a few seconds after the last create)."""
    nodes: int | None = (
        (fake.stored(NODEPROVIDERS, None, "sim") or {}).get("status", {}).get("nodes")
    )
    return nodes


def running(fake: FakeKube, count: int) -> bool:
    """Whether the cluster has `count` nodes, all ready."""
    return status(fake).get("readyNodes") == count and len(live_nodes(fake)) == count


async def test_a_refused_choice_falls_back_and_says_so_once(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, config=NO_SMALL))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=3, policies=FALLBACK))

    await harness.wait_for(lambda: running(fake, 3), what="three nodes of the alternative")

    # Each node says what it is made of, and so does its machine (usage and quota count it).
    assert types_of(fake) == [("big", 1)] * 3
    assert sorted(m["machineType"] for m in machines(inventory)) == ["big"] * 3
    # Not outdated: every node counts as built from the current profile.
    assert status(fake)["updatedNodes"] == 3
    [entry] = status(fake)["exhaustedCapacity"]
    assert (entry["machineType"], entry["refusals"]) == ("small", 1)
    fallback = condition(fake, "CapacityFallback")
    assert (fallback["status"], fallback["reason"]) == ("True", "CapacityExhausted")
    assert "small default capacity" in fallback["message"]
    assert condition(fake, "Ready")["status"] == "True"
    # One Warning Event for the exhaustion, however many nodes it refused.
    [event] = fake.events_about("web", reason="CapacityExhausted")
    assert event["type"] == "Warning" and "small default capacity" in event["message"]


async def test_a_restart_keeps_what_each_node_is_and_what_is_exhausted(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, config=NO_SMALL))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=2, policies=FALLBACK))
    await harness.wait_for(lambda: running(fake, 2), what="two nodes of the alternative")
    await harness.wait_for(lambda: provider_nodes(fake) == 2, what="the provider's figures")
    await harness.idle()
    before = status(fake)["exhaustedCapacity"]
    fake.reset_journal()

    await harness.restart()
    await harness.idle()

    # Nothing is made, deleted or said again: the nodes' spec and the cluster's status
    # hold it all (within the back-off, a forgetful restart would try `small` again).
    assert [(c.verb, c.resource) for c in fake.calls if c.verb not in ("get", "list")] == []
    assert status(fake)["exhaustedCapacity"] == before
    assert types_of(fake) == [("big", 1)] * 2


async def test_new_nodes_return_to_the_preferred_choice_and_old_ones_stay(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, config=NO_SMALL))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=2, policies=FALLBACK))
    await harness.wait_for(lambda: running(fake, 2), what="two nodes of the alternative")
    fallen_back = {n["metadata"]["name"] for n in live_nodes(fake)}
    fake.reset_journal()  # (the refused nodes' deletes)

    # Capacity comes back, and the back-off runs out (looptime: no real wait).
    await fake.patch(NODEPROVIDERS, None, "sim", {"spec": {"config": {"capacityLimits": []}}})
    await asyncio.sleep(120)
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 3}})

    await harness.wait_for(lambda: running(fake, 3), what="a third node")
    assert types_of(fake) == [("big", 1), ("big", 1), ("small", None)]
    assert fallen_back <= {n["metadata"]["name"] for n in live_nodes(fake)}
    assert not fake.calls_of("delete", "clusternodes")
    # The preferred choice worked: nothing is exhausted any more.
    await harness.wait_for(
        lambda: condition(fake, "CapacityFallback").get("status") == "False",
        what="the fallback condition clearing",
    )
    assert "exhaustedCapacity" not in status(fake)


async def test_every_choice_exhausted_stalls_and_probes_once_per_back_off(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    none_left = {"capacityLimits": [{"max": 0}]}
    fake.add(NODEPROVIDERS, provider_body(inventory, config=none_left))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=3, policies=FALLBACK))

    await harness.wait_for(
        lambda: condition(fake, "Stalled").get("reason") == "CapacityExceeded",
        what="the cluster stalled for capacity",
    )
    stalled = condition(fake, "Stalled")
    assert "every choice of policies.capacityFallback is exhausted" in stalled["message"]
    assert "small default capacity" in stalled["message"]
    assert "big default capacity" in stalled["message"]
    said = [e for e in fake.events_about("web") if "capacityFallback is exhausted" in e["message"]]
    assert [(e["type"], e["reason"]) for e in said] == [("Warning", "Error")], said

    # Six minutes of operator time: each choice is probed by one node after 1 minute, then
    # after 2 more (the back-off doubled), however many nodes are wanted: 2 x 2 creates.
    fake.reset_journal()
    await asyncio.sleep(6 * 60)
    creates = fake.calls_of("create", "clusternodes")
    assert len(creates) == 4, creates
    refusals = {e["machineType"]: e["refusals"] for e in status(fake)["exhaustedCapacity"]}
    assert refusals == {"small": 3, "big": 3}
    assert len(fake.events_about("web", reason="CapacityExhausted")) == len(creates)


async def test_a_cluster_without_the_policy_is_unchanged(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, config=NO_SMALL))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=1))

    await harness.wait_for(
        lambda: condition(fake, "Stalled").get("reason") == "CapacityExceeded",
        what="the node's refusal reported",
    )
    await harness.idle()
    # The refused node stays, retrying its own choice; no fallback condition, no memory.
    [node] = live_nodes(fake)
    assert node["spec"]["profile"]["machineType"] == "small"
    assert "capacityType" not in node["spec"]["profile"]
    assert "alternative" not in node["spec"]
    assert not fake.calls_of("delete", "clusternodes")
    assert "exhaustedCapacity" not in status(fake)
    assert not condition(fake, "CapacityFallback")


async def test_an_idle_cluster_with_the_policy_writes_nothing(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=2, policies=FALLBACK))
    await harness.wait_for(lambda: running(fake, 2), what="two nodes")
    await harness.wait_for(lambda: provider_nodes(fake) == 2, what="the provider's figures")
    await harness.idle()
    fake.reset_journal()

    await asyncio.sleep(600)
    assert [(c.verb, c.resource, c.name) for c in fake.calls if c.verb not in ("get", "list")] == []
    assert fake.writes == 0
    assert types_of(fake) == [("small", None)] * 2
