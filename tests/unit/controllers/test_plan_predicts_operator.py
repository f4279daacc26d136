"""`plan` predicts what the operator then does: the preview of a change, made read-only
from the API (cli_plan.read_and_preview), against what the controllers running in-process
do once the change is applied. The same comparison runs against a real API server in
tests/e2e/test_plugin.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from clusters import NS, cluster_body, nodes, state, status
from conftest import provider_body

from nodecluster.api.nodecluster import NodeCluster
from nodecluster.cli_plan import document, read_and_preview
from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import NODECLUSTERS, NODEPROVIDERS
from nodecluster.testing import FakeKube, Harness

ZONES = {"placement": {"zones": [{"name": "zone-a"}, {"name": "zone-b"}]}}


async def converged(fake: FakeKube, harness: Harness, inventory: Path, **spec: Any) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(**spec))
    await harness.wait_for(lambda: state(fake) == "Deployed", what="Deployed")


def changed(**spec: Any) -> NodeCluster:
    return NodeCluster.model_validate(cluster_body(**spec))


def zones_of(fake: FakeKube) -> Counter[str | None]:
    return Counter((n.get("status") or {}).get("zone") for n in nodes(fake))


async def predicted(fake: FakeKube, clock: LoopClock, nc: NodeCluster) -> dict[str, Any]:
    p, unknown = await read_and_preview(fake, nc, NS, clock.now())
    return document(p, NS, unknown)


async def test_a_scale_in_deletes_the_nodes_plan_named_and_no_call_is_a_write(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    policies = {**ZONES, "deletion": {"criteria": "OldestFirst"}}
    await converged(fake, harness, inventory, targetNodes=5, policies=policies)
    before = {n["metadata"]["name"] for n in nodes(fake)}
    calls = len(fake.calls)

    doc = await predicted(fake, clock, changed(targetNodes=2, policies=policies))

    assert all(c.verb in ("get", "list") for c in fake.calls[calls:]), fake.calls[calls:]
    assert doc["changed"] is True
    assert doc["replacesMachines"] is False
    assert doc["summary"].startswith("Replaces existing machines: no")
    assert doc["specChanges"] == [{"path": "targetNodes", "before": 5, "after": 2}]
    assert doc["creates"] == 0
    named = {d["node"] for d in doc["deletes"]}
    assert len(named) == 3 and named <= before
    assert {d["reason"] for d in doc["deletes"]} == {"ScaleIn"}

    patched = await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 2}})
    generation = patched["metadata"]["generation"]
    await harness.wait_for(
        lambda: (
            status(fake).get("observedGeneration") == generation
            and state(fake) == "Deployed"
            and len(nodes(fake)) == 2
        )
    )
    after = {n["metadata"]["name"] for n in nodes(fake)}
    assert before - after == named
    assert {z["zone"]: z["after"] for z in doc["zones"]} == dict(zones_of(fake))


async def test_a_profile_change_is_rolled_in_the_batches_and_zones_plan_showed(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    rollout = {
        **ZONES,
        "rollout": {"maxSurge": 1, "maxUnavailable": 0},
        "deletion": {"criteria": "OldestFirst"},
    }
    await converged(fake, harness, inventory, targetNodes=4, policies=rollout)
    before = {n["metadata"]["name"] for n in nodes(fake)}

    calls = len(fake.calls)
    target = changed(targetNodes=4, policies=rollout, profile={"machineType": "large"})
    doc = await predicted(fake, clock, target)

    assert doc["replacesMachines"] is True
    assert doc["summary"].startswith("Replaces existing machines: yes, 4 of 4 nodes")
    assert {d["node"] for d in doc["deletes"]} == before
    assert {d["reason"] for d in doc["deletes"]} == {"Rollout"}
    assert doc["creates"] == 4
    # maxSurge 1, maxUnavailable 0: in every batch, never more than one node beyond the
    # target, and never fewer ready nodes than it (the new ones are not ready yet).
    ready = 4
    for batch in doc["batches"]:
        ready -= len(batch["deletes"])
        assert ready >= 4 - 0, doc["batches"]
        assert ready + len(batch["creates"]) <= 4 + 1, doc["batches"]
        ready += len(batch["creates"])
    assert len(doc["batches"]) == 5  # one surge, then one out and one in each, one out

    patched = await fake.patch(NODECLUSTERS, NS, "web", {"spec": target.spec.wire()})
    generation = patched["metadata"]["generation"]
    await harness.wait_for(
        lambda: (
            status(fake).get("observedGeneration") == generation
            and state(fake) == "Deployed"
            and len(nodes(fake)) == 4
        ),
        what="rolled out",
    )
    assert not before & {n["metadata"]["name"] for n in nodes(fake)}
    # The deletion order is the planner's (OldestFirst, ties by name): batch by batch.
    deleted = [
        c.name for c in fake.calls[calls:] if c.resource == "clusternodes" and c.verb == "delete"
    ]
    assert deleted == [d["node"] for d in doc["deletes"]]
    assert {z["zone"]: z["after"] for z in doc["zones"]} == dict(zones_of(fake))


async def test_no_change_is_no_change(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    await converged(fake, harness, inventory)
    doc = await predicted(fake, clock, changed())
    assert (doc["changed"], doc["specChanges"], doc["batches"]) == (False, [], [])
    assert doc["nodes"] == {"before": 3, "after": 3, "desired": 3, "warmBefore": 0, "warmAfter": 0}


async def test_a_scale_out_promotes_the_warm_nodes_plan_named(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    pool = {"size": 2, "state": "Stopped"}
    await converged(fake, harness, inventory, targetNodes=2, warmPool=pool)
    await harness.wait_for(lambda: status(fake).get("warmNodes") == 2, what="pool filled")
    warm = {n["metadata"]["name"] for n in nodes(fake) if is_warm(n)}

    doc = await predicted(fake, clock, changed(targetNodes=4, warmPool=pool))

    assert {m["node"] for m in doc["moves"] if not m["warm"]} == warm
    assert (doc["creates"], doc["warmCreates"]) == (0, 2)
    assert doc["nodes"]["warmAfter"] == 2 and doc["nodes"]["after"] == 4

    patched = await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 4}})
    generation = patched["metadata"]["generation"]
    await harness.wait_for(
        lambda: (
            status(fake).get("observedGeneration") == generation
            and state(fake) == "Deployed"
            and status(fake).get("warmNodes") == 2
            and len(nodes(fake)) == 6
        ),
        what="scaled out, pool refilled",
    )
    serving = {n["metadata"]["name"] for n in nodes(fake) if not is_warm(n)}
    assert warm <= serving  # promoted, as plan said


def is_warm(node: dict[str, Any]) -> bool:
    return node["metadata"].get("labels", {}).get("nodecluster.io/pool") == "warm"
