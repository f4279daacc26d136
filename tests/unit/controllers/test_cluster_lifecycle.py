"""A NodeCluster's life in-process: created, converged, scaled, stopped, terminated, deleted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import provider_body

from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.controllers.world import CLUSTER_FINALIZER, NODE_FINALIZER
from nodecluster.providers.simulator import inventory_rows
from nodecluster.testing import FakeKube, Harness

NS = "team-a"


def cluster_body(name: str = "web", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "nodecluster.io/v1alpha1",
        "kind": "NodeCluster",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "providerRef": {"name": "sim"},
            "profile": {"machineType": "small"},
            "targetNodes": 3,
        },
    }
    body["spec"].update(spec)
    return body


def status(fake: FakeKube, name: str = "web") -> dict[str, Any]:
    body = fake.stored(NODECLUSTERS, NS, name)
    return (body or {}).get("status", {})


def condition(fake: FakeKube, ctype: str, name: str = "web") -> dict[str, Any]:
    return next((c for c in status(fake, name).get("conditions", []) if c["type"] == ctype), {})


def machines(inventory: Path) -> list[dict[str, Any]]:
    return [m for m in inventory_rows(inventory) if m.get("state") != "Deleting"]


async def test_a_new_cluster_converges_to_its_target(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body())

    await harness.wait_for(lambda: status(fake).get("state") == "Deployed")

    nodes = fake.objects(CLUSTERNODES, NS)
    assert len(nodes) == 3
    assert all(n["metadata"]["finalizers"] == [NODE_FINALIZER] for n in nodes)
    assert CLUSTER_FINALIZER in fake.stored(NODECLUSTERS, NS, "web")["metadata"]["finalizers"]
    assert sorted(m["name"] for m in machines(inventory)) == sorted(
        n["metadata"]["name"] for n in nodes
    )
    assert condition(fake, "Ready")["status"] == "True"
    assert status(fake)["readyNodes"] == 3
    assert fake.events_about("web", reason="Deployed")
