"""A machine belongs to exactly one ClusterNode of one installation (DESIGN principle 7).

A node's machine is named by the node's whole identity (installation, namespace, node
name and uid), so nodes of one name in two namespaces get two machines; a node attaches
only to a machine whose tags name it, and refuses any other (`MachineOwnedElsewhere`)
without ever deleting it. Nodes of earlier versions, whose machine carries their bare
name and only a cluster tag, keep working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import provider_body

from nodecluster import API_VERSION
from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.controllers.world import NODE_FINALIZER
from nodecluster.providers.base import MachineSpec, ProviderConfig
from nodecluster.providers.simulator import SimulatorDriver, inventory_rows
from nodecluster.testing import FakeKube, Harness

NODE = "web-x1"


def node_body(namespace: str, name: str = NODE, cluster: str = "web") -> dict[str, Any]:
    """A ClusterNode as the NodeCluster controller makes one (finalizer included)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterNode",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"nodecluster.io/cluster": cluster},
            "finalizers": [NODE_FINALIZER],
        },
        "spec": {
            "clusterName": cluster,
            "providerRef": {"name": "sim"},
            "profile": {"machineType": "small"},
        },
    }


def node_status(fake: FakeKube, namespace: str, name: str = NODE) -> dict[str, Any]:
    return (fake.stored(CLUSTERNODES, namespace, name) or {}).get("status", {})


def ready(fake: FakeKube, namespace: str, name: str = NODE) -> dict[str, Any]:
    conditions = node_status(fake, namespace, name).get("conditions", [])
    return next((c for c in conditions if c["type"] == "Ready"), {})


def rows(inventory: Path) -> dict[str, dict[str, Any]]:
    """Every machine by provider id (deleting or not), on the loop's clock."""
    return {
        r["providerId"]: r for r in inventory_rows(inventory, now=LoopClock().now().timestamp())
    }


async def legacy_machine(inventory: Path, clock: LoopClock, name: str, cluster: str) -> str:
    """A machine as an earlier version made it: the bare node name, a cluster tag only.
    Returns its provider id."""
    config = provider_body(inventory)["spec"]["config"]
    driver = SimulatorDriver(ProviderConfig(name="sim", config=config, clock=clock))
    try:
        machine = await driver.create(MachineSpec(name=name, cluster=cluster, machine_type="small"))
    finally:
        await driver.close()
    return machine.provider_id


async def test_a_same_name_node_in_another_namespace_gets_a_machine_of_its_own(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(CLUSTERNODES, "team-a", node_body("team-a"))
    await harness.wait_for(lambda: node_status(fake, "team-a").get("state") == "Running")
    theirs = node_status(fake, "team-a")["providerId"]

    # A person in team-b makes a node of the same name (and of a cluster of the same name).
    await fake.create(CLUSTERNODES, "team-b", node_body("team-b"))
    await harness.wait_for(lambda: node_status(fake, "team-b").get("state") == "Running")
    mine = node_status(fake, "team-b")["providerId"]
    assert mine != theirs, "a node in team-b must never show team-a's machine"

    await fake.delete(CLUSTERNODES, "team-b", NODE)
    await harness.wait_for(lambda: fake.stored(CLUSTERNODES, "team-b", NODE) is None)
    machines = rows(inventory)
    assert machines[theirs]["state"] == "Running", "deleting team-b's node deleted team-a's"
    assert mine not in machines or machines[mine]["state"] == "Deleting"


async def test_two_clusters_of_one_name_in_two_namespaces_get_distinct_machines(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    for ns in ("team-a", "team-b"):
        await fake.create(CLUSTERNODES, ns, node_body(ns))
    await harness.wait_for(
        lambda: all(node_status(fake, ns).get("state") == "Running" for ns in ("team-a", "team-b"))
    )
    machines = rows(inventory)
    assert len(machines) == 2
    by_namespace = {m["tags"].get("nodecluster.io/namespace"): m for m in machines.values()}
    assert set(by_namespace) == {"team-a", "team-b"}
    for ns in ("team-a", "team-b"):
        machine = by_namespace[ns]
        assert node_status(fake, ns)["providerId"] == machine["providerId"]
        assert node_status(fake, ns)["machineName"] == machine["name"]
        assert machine["tags"]["nodecluster.io/node"] == NODE
        assert machine["tags"]["nodecluster.io/cluster"] == "web"
        uid = fake.stored(CLUSTERNODES, ns, NODE)["metadata"]["uid"]  # type: ignore[index]
        assert machine["tags"]["nodecluster.io/node-uid"] == uid
        assert len(machine["name"]) <= 63


async def test_a_node_refuses_a_machine_tagged_for_another_and_never_deletes_it(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    # team-a's machine, made by an earlier version under the bare node name.
    theirs = await legacy_machine(inventory, clock, NODE, "team-a/web")
    # team-b's hand-made node of that name, its status claiming that machine (as a node
    # copied from team-a with its status would).
    body = node_body("team-b")
    body["status"] = {"providerId": theirs, "state": "Running"}
    fake.add(NODEPROVIDERS, provider_body(inventory))
    fake.add(CLUSTERNODES, body)

    await harness.wait_for(lambda: ready(fake, "team-b").get("reason") == "MachineOwnedElsewhere")
    status = node_status(fake, "team-b")
    assert status.get("providerId") != theirs, "a refused machine is not shown as the node's"
    assert "team-a/web" in ready(fake, "team-b")["message"]

    await fake.delete(CLUSTERNODES, "team-b", NODE)
    await harness.wait_for(lambda: fake.stored(CLUSTERNODES, "team-b", NODE) is None)
    await harness.idle()
    assert rows(inventory)[theirs]["state"] == "Running", "a refused machine was deleted"


async def test_a_node_of_an_earlier_version_keeps_its_machine(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    ours = await legacy_machine(inventory, clock, NODE, "team-a/web")
    body = node_body("team-a")
    body["status"] = {"providerId": ours, "state": "Provisioning"}
    fake.add(NODEPROVIDERS, provider_body(inventory))
    fake.add(CLUSTERNODES, body)

    await harness.wait_for(lambda: node_status(fake, "team-a").get("state") == "Running")
    assert node_status(fake, "team-a")["providerId"] == ours
    assert node_status(fake, "team-a").get("machineName") == NODE
    assert list(rows(inventory)) == [ours], "no second machine for a legacy node"

    await fake.delete(CLUSTERNODES, "team-a", NODE)
    await harness.wait_for(lambda: fake.stored(CLUSTERNODES, "team-a", NODE) is None)
    assert ours not in rows(inventory) or rows(inventory)[ours]["state"] == "Deleting"


async def test_a_cluster_whose_machines_predate_installation_tags_is_not_swept(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    """A cluster's orphan sweep tells its legacy nodes' machines from orphans."""
    fake.add(NODEPROVIDERS, provider_body(inventory))
    cluster = {
        "apiVersion": API_VERSION,
        "kind": "NodeCluster",
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {"providerRef": {"name": "sim"}, "profile": {"machineType": "small"}},
    }
    cluster["spec"]["targetNodes"] = 2  # type: ignore[index]
    await fake.create(NODECLUSTERS, "team-a", cluster)
    await harness.wait_for(
        lambda: (
            (fake.stored(NODECLUSTERS, "team-a", "web") or {}).get("status", {}).get("state")
            == "Deployed"
        )
    )
    before = set(rows(inventory))
    harness.world.book.orphans_suspected.add(("team-a", "web"))
    harness.world.queues.cluster.add(("team-a", "web"))
    await harness.idle()
    assert all(rows(inventory)[p]["state"] == "Running" for p in before)
