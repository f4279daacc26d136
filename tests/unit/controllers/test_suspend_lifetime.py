"""spec.suspend and policies.rollout.maxNodeLifetimeSeconds, carried by the controller.

The planner decides (tests/unit/test_planner_suspend.py, test_planner_lifetime.py); these
prove the controller carries it: what it writes while a process is held, that deleting a
cluster is never held, that expired nodes are replaced with a NodeExpired Event at the
time they expire (no event needed to wake the cluster), and that an idle cluster with a
lifetime writes nothing before then.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from clusters import NS, cluster_body, condition, live_nodes, machines, nodes, state
from conftest import provider_body

from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.testing import FakeKube, Harness


def names(fake: FakeKube) -> set[str]:
    return {n["metadata"]["name"] for n in live_nodes(fake)}


async def converged(fake: FakeKube, harness: Harness, inventory: Path, **spec: Any) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(**spec))
    await harness.wait_for(lambda: state(fake) == "Deployed", what="Deployed")


def lifetime(seconds: int, **rollout: Any) -> dict[str, Any]:
    return {"rollout": {"maxNodeLifetimeSeconds": seconds, **rollout}}


async def test_a_suspended_launch_holds_a_scale_out_until_resumed(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await converged(fake, harness, inventory)

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"suspend": ["Launch"], "targetNodes": 5}})
    await harness.wait_for(
        lambda: condition(fake, "Suspended").get("reason") == "ChangesHeldBack", what="held"
    )
    await harness.idle()
    fake.reset_journal()
    await asyncio.sleep(3600)

    assert len(nodes(fake)) == 3
    assert len(machines(inventory)) == 3
    assert condition(fake, "Ready")["status"] == "False"
    assert condition(fake, "Reconciling")["reason"] == "ChangesHeldBack"
    assert condition(fake, "Stalled")["status"] == "False"
    assert "Launch: 2 nodes not created" in condition(fake, "Suspended")["message"]
    assert fake.calls_of("create", CLUSTERNODES.plural) == []
    assert fake.calls_of("event") == []  # held is not a failure: no Warning, no Stalled

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"suspend": []}})
    await harness.wait_for(
        lambda: state(fake) == "Deployed" and len(live_nodes(fake)) == 5, what="scaled out"
    )
    assert condition(fake, "Ready")["status"] == "True"
    assert condition(fake, "Suspended") == {}


async def test_a_suspended_terminate_keeps_nodes_above_the_target(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await converged(fake, harness, inventory, suspend=["Terminate"])
    assert condition(fake, "Suspended")["reason"] == "ProcessesSuspended"
    assert condition(fake, "Ready")["status"] == "True"

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 1}})
    await harness.wait_for(
        lambda: condition(fake, "Ready").get("reason") == "ChangesHeldBack", what="held"
    )
    await harness.idle()

    assert len(live_nodes(fake)) == 3
    assert state(fake) == "Scaling"
    assert "2 nodes above the target of 1 not removed" in condition(fake, "Ready")["message"]


async def test_a_cluster_deleted_with_every_process_suspended_still_goes(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    every = ["Launch", "Terminate", "Remediate", "Rollout", "PowerChange"]
    await converged(fake, harness, inventory)
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"suspend": every}})
    await harness.wait_for(lambda: bool(condition(fake, "Suspended")), what="suspended")

    await fake.delete(NODECLUSTERS, NS, "web")
    await harness.wait_for(lambda: fake.stored(NODECLUSTERS, NS, "web") is None, what="gone")

    assert fake.objects(CLUSTERNODES, NS) == []
    assert machines(inventory) == []


async def test_expired_nodes_are_replaced_when_they_expire_with_an_event(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    # 1000 s: well before the hourly resync or usage fold, so only the plan's recheck_at
    # can have the cluster look in time.
    start = asyncio.get_running_loop().time()
    await converged(fake, harness, inventory, targetNodes=2, policies=lifetime(1000))
    first = names(fake)
    await harness.idle()
    fake.reset_journal()

    await asyncio.sleep(900)  # idle until then: not a node touched, not an Event
    assert fake.calls_of("create", CLUSTERNODES.plural) == []
    assert fake.calls_of("delete", CLUSTERNODES.plural) == []
    assert fake.calls_of("event") == []

    await harness.wait_for(
        lambda: bool(fake.events_about("web", reason="NodeExpired")),
        within=1000 + 5 - (asyncio.get_running_loop().time() - start),
        what="a NodeExpired Event by the first node's expiry",
    )
    await harness.wait_for(
        lambda: not first & names(fake) and state(fake) == "Deployed", what="all replaced"
    )
    assert len(live_nodes(fake)) == 2
    messages = " ".join(e["message"] for e in fake.events_about("web", reason="NodeExpired"))
    assert all(name in messages for name in first)
    assert "maxNodeLifetimeSeconds (1000s)" in messages
    assert fake.events_about("web", reason="Updating")


async def test_a_suspended_rollout_holds_expired_nodes_until_resumed(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await converged(
        fake, harness, inventory, targetNodes=2, suspend=["Rollout"], policies=lifetime(1000)
    )
    first = names(fake)

    await asyncio.sleep(1100)
    await harness.wait_for(
        lambda: condition(fake, "Suspended").get("reason") == "ChangesHeldBack", what="held"
    )

    assert names(fake) == first
    assert state(fake) == "Deployed"
    assert condition(fake, "Ready")["status"] == "False"
    assert "2 past maxNodeLifetimeSeconds" in condition(fake, "Suspended")["message"]
    assert fake.events_about("web", reason="NodeExpired") == []

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"suspend": None}})
    await harness.wait_for(
        lambda: not first & names(fake) and condition(fake, "Ready").get("status") == "True",
        what="replaced once resumed",
    )
