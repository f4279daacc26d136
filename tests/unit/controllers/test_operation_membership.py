"""RemoveNodes and ReplaceNodes: chosen nodes go, for good or for fresh ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_operations import (
    NS,
    cluster,
    converged,
    deploy,
    events,
    finished,
    machines,
    node,
    node_names,
    nodes,
    operate,
    results,
    target,
)

from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import CLUSTERNODES
from nodecluster.testing import FakeKube, Harness


async def removed(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock, nodes: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Run a RemoveNodes choosing `nodes`; its status and the nodes left once settled."""
    await operate(fake, "remove", "RemoveNodes", nodes=nodes)
    status = await finished(fake, harness, "remove")
    await converged(fake, harness)
    left = node_names(fake)
    await harness.wait_for(lambda: sorted(machines(inventory, clock)) == left, what="machines")
    return status, left


async def test_remove_nodes_by_name_deletes_them_and_lowers_the_target(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory)

    status, left = await removed(fake, harness, inventory, clock, {"names": [names[1]]})

    assert status["phase"] == "Succeeded"
    assert status["message"] == "removed 1 nodes; target 3 -> 2"
    assert results(status) == {names[1]: ("OK", "removed")}
    assert target(fake) == 2
    assert left == [names[0], names[2]], "the others stay, and none replaces it"
    assert events(fake, "web", "OperationSucceeded") == [
        "remove (RemoveNodes): removed 1 nodes; target 3 -> 2"
    ]


async def test_remove_nodes_by_selector_deletes_the_labelled_nodes(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory, targetNodes=4)
    batch = names[:2]
    for name in batch:
        await fake.patch(CLUSTERNODES, NS, name, {"metadata": {"labels": {"team": "batch"}}})

    status, left = await removed(
        fake, harness, inventory, clock, {"selector": {"matchLabels": {"team": "batch"}}}
    )

    assert status["phase"] == "Succeeded"
    assert sorted(results(status)) == batch
    assert target(fake) == 2
    assert left == names[2:]


async def test_remove_nodes_by_provider_id(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory)
    provider_id = node(fake, names[2])["status"]["providerId"]

    status, left = await removed(fake, harness, inventory, clock, {"providerIds": [provider_id]})

    assert results(status) == {names[2]: ("OK", "removed")}
    assert left == names[:2]
    assert target(fake) == 2


async def test_remove_nodes_by_address(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory)
    address = node(fake, names[0])["status"]["addresses"][0]["address"]

    status, left = await removed(fake, harness, inventory, clock, {"addresses": [address]})

    assert results(status) == {names[0]: ("OK", "removed")}
    assert left == names[1:]


async def test_remove_nodes_needs_every_criterion_to_match(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory)
    await fake.patch(CLUSTERNODES, NS, names[0], {"metadata": {"labels": {"team": "batch"}}})

    chosen = {"names": names[:2], "selector": {"matchLabels": {"team": "batch"}}}
    status, left = await removed(fake, harness, inventory, clock, chosen)

    assert results(status) == {names[0]: ("OK", "removed")}
    assert left == names[1:]


async def test_remove_nodes_below_min_nodes_is_refused_and_changes_nothing(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory, minNodes=2)
    before = fake.snapshot()

    await operate(fake, "remove", "RemoveNodes", nodes={"names": names[:2]})
    status = await finished(fake, harness, "remove")

    assert status["phase"] == "Failed"
    assert status["message"] == "removing 2 nodes would leave 1, below minNodes (2)"
    assert status.get("nodes", []) == []
    assert target(fake) == 3
    assert node_names(fake) == names
    assert {k: v for k, v in fake.snapshot().items() if k[0] != "nodeclusteroperations"} == {
        k: v for k, v in before.items() if k[0] != "nodeclusteroperations"
    }
    assert sorted(machines(inventory, clock)) == names


async def test_remove_nodes_naming_an_unknown_node_is_refused_and_changes_nothing(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory)
    generation = cluster(fake)["metadata"]["generation"]

    await operate(fake, "remove", "RemoveNodes", nodes={"names": [names[0], "web-nope"]})
    status = await finished(fake, harness, "remove")

    assert status["phase"] == "Failed"
    assert status["message"] == "no such nodes in the cluster: web-nope"
    assert target(fake) == 3
    assert cluster(fake)["metadata"]["generation"] == generation
    assert node_names(fake) == names, "not even the node that does exist is removed"
    assert not fake.calls_of("delete", "clusternodes")
    assert sorted(machines(inventory, clock)) == names
    assert events(fake, "remove", "OperationFailed") == [
        "RemoveNodes: no such nodes in the cluster: web-nope"
    ]


async def test_remove_nodes_with_an_unknown_provider_id_or_address_is_refused(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory)

    await operate(fake, "remove", "RemoveNodes", nodes={"providerIds": ["sim://zone-a/i-nope"]})
    by_id = await finished(fake, harness, "remove")
    await operate(fake, "remove-2", "RemoveNodes", nodes={"addresses": ["192.0.2.1"]})
    by_address = await finished(fake, harness, "remove-2")

    assert by_id["message"] == "no such provider IDs in the cluster: sim://zone-a/i-nope"
    assert by_address["message"] == "no such addresses in the cluster: 192.0.2.1"
    assert by_id["phase"] == by_address["phase"] == "Failed"
    assert target(fake) == 3


async def test_remove_nodes_whose_selector_matches_nothing_is_refused(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory)

    await operate(fake, "remove", "RemoveNodes", nodes={"selector": {"matchLabels": {"x": "y"}}})
    status = await finished(fake, harness, "remove")

    assert status["phase"] == "Failed"
    assert status["message"] == "no node of the cluster matches spec.nodes"
    assert node_names(fake) == names


async def test_replace_nodes_deletes_them_and_fresh_ones_take_their_place(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory)
    old = names[0]
    provider_id = node(fake, old)["status"]["providerId"]

    await operate(fake, "replace", "ReplaceNodes", nodes={"providerIds": [provider_id]})
    status = await finished(fake, harness, "replace")

    assert status["phase"] == "Succeeded"
    assert status["message"] == "replacing 1 nodes"
    assert results(status) == {old: ("OK", "deleted; a new node replaces it")}
    await converged(fake, harness)
    now = node_names(fake)
    assert target(fake) == 3
    assert old not in now
    assert set(names[1:]) < set(now)
    assert len(now) == 3
    await harness.wait_for(lambda: sorted(machines(inventory, clock)) == now, what="machines")
    assert provider_id not in {n["status"]["providerId"] for n in nodes(fake).values()}


async def test_replace_nodes_naming_an_unknown_node_is_refused(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory)

    await operate(fake, "replace", "ReplaceNodes", nodes={"names": ["web-nope"]})
    status = await finished(fake, harness, "replace")

    assert status["phase"] == "Failed"
    assert status["message"] == "no such nodes in the cluster: web-nope"
    assert node_names(fake) == names
    assert not fake.calls_of("delete", "clusternodes")
