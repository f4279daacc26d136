"""A NodeCluster's life in-process: created, converged, scaled, stopped, terminated, deleted."""

from __future__ import annotations

from pathlib import Path

from clusters import NS, cluster_body, condition, live_nodes, machines, nodes, state, status
from conftest import provider_body

from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.controllers.world import CLUSTER_FINALIZER, NODE_FINALIZER
from nodecluster.testing import FakeKube, Harness


async def converged(fake: FakeKube, harness: Harness, inventory: Path, **spec: object) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(**spec))
    await harness.wait_for(lambda: state(fake) == "Deployed", what="Deployed")


async def test_a_new_cluster_converges_to_its_target(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await converged(fake, harness, inventory)

    children = nodes(fake)
    assert len(children) == 3
    assert all(n["metadata"]["finalizers"] == [NODE_FINALIZER] for n in children)
    assert all(n["metadata"]["ownerReferences"][0]["name"] == "web" for n in children)
    assert CLUSTER_FINALIZER in fake.stored(NODECLUSTERS, NS, "web")["metadata"]["finalizers"]
    assert sorted(m["node"] for m in machines(inventory)) == sorted(
        n["metadata"]["name"] for n in children
    )
    assert condition(fake, "Ready")["status"] == "True"
    assert status(fake)["readyNodes"] == 3
    assert status(fake)["observedGeneration"] == 1
    assert status(fake)["selector"] == "nodecluster.io/cluster=web"
    assert len(fake.events_about("web", reason="Deployed")) == 1


async def test_scaling_out_and_in_changes_the_machines_and_says_so(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await converged(fake, harness, inventory)

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 5}})
    await harness.wait_for(lambda: state(fake) == "Deployed" and status(fake)["readyNodes"] == 5)
    assert len(machines(inventory)) == 5
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 2}})
    await harness.wait_for(lambda: len(nodes(fake)) == 2 and state(fake) == "Deployed")

    await harness.wait_for(lambda: len(machines(inventory)) == 2, what="machines deleted")
    messages = [e["message"] for e in fake.events_about("web", reason="Scaling")]
    assert messages == [
        "scaling from 0 to 3 nodes",
        "scaling from 3 to 5 nodes",
        "scaling from 5 to 2 nodes",
    ]
    assert status(fake)["lastScaleTime"]


async def test_a_stopped_cluster_keeps_its_machines_powered_off(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await converged(fake, harness, inventory)

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"desiredState": "Stopped"}})
    await harness.wait_for(lambda: state(fake) == "Stopped", what="Stopped")
    assert [m["state"] for m in machines(inventory)] == ["Stopped"] * 3
    assert condition(fake, "Ready")["status"] == "True"

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"desiredState": "Running"}})
    await harness.wait_for(lambda: state(fake) == "Deployed", what="Deployed again")
    assert [m["state"] for m in machines(inventory)] == ["Running"] * 3


async def test_a_terminated_cluster_deletes_every_machine_and_stays(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await converged(fake, harness, inventory)

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"desiredState": "Terminated"}})
    await harness.wait_for(lambda: state(fake) == "Terminated", what="Terminated")

    assert nodes(fake) == []
    assert machines(inventory) == []
    assert fake.stored(NODECLUSTERS, NS, "web") is not None
    assert fake.events_about("web", reason="Terminating")
    assert fake.events_about("web", reason="Terminated")


async def test_deleting_a_cluster_deletes_its_machines_before_it_goes(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await converged(fake, harness, inventory)

    await fake.delete(NODECLUSTERS, NS, "web")
    await harness.wait_for(lambda: fake.stored(NODECLUSTERS, NS, "web") is None, what="gone")

    assert fake.objects(CLUSTERNODES, NS) == []
    assert machines(inventory) == []
    assert harness.world.expectations.in_flight((NS, "web")) == 0
    assert (NS, "web") not in harness.world.book.locks


async def test_a_cluster_of_zero_nodes_is_empty(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=0))

    await harness.wait_for(lambda: state(fake) == "Empty", what="Empty")
    assert condition(fake, "Ready")["status"] == "True"
    assert live_nodes(fake) == []


async def test_a_paused_cluster_changes_nothing(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(paused=True))

    await harness.wait_for(lambda: condition(fake, "Reconciling").get("reason") == "Paused")
    await harness.idle()
    assert nodes(fake) == []
    assert condition(fake, "Ready")["status"] == "False"

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"paused": False}})
    await harness.wait_for(lambda: state(fake) == "Deployed", what="Deployed once unpaused")


async def test_a_changed_profile_replaces_every_node(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await converged(fake, harness, inventory)
    before = {n["metadata"]["name"] for n in nodes(fake)}

    await fake.patch(
        NODECLUSTERS, NS, "web", {"spec": {"profile": {"machineType": "small", "image": "v2"}}}
    )
    await harness.wait_for(
        lambda: state(fake) == "Deployed" and status(fake)["observedGeneration"] == 2
    )

    after = {n["metadata"]["name"] for n in live_nodes(fake)}
    assert len(after) == 3
    assert not before & after
    assert status(fake)["updatedNodes"] == 3
    assert fake.events_about("web", reason="Updating")
