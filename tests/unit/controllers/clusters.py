"""Builders and probes shared by the NodeCluster tests: bodies in, stored state out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS
from nodecluster.providers.simulator import inventory_rows
from nodecluster.testing import FakeKube

NS = "team-a"


def cluster_body(name: str = "web", **spec: Any) -> dict[str, Any]:
    """A NodeCluster of 3 small nodes on provider `sim`, with `spec` merged in."""
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
    """The stored NodeCluster's status ({} when none or gone)."""
    body = fake.stored(NODECLUSTERS, NS, name)
    return (body or {}).get("status", {})


def state(fake: FakeKube, name: str = "web") -> str | None:
    """The stored NodeCluster's status.state."""
    return status(fake, name).get("state")


def condition(fake: FakeKube, ctype: str, name: str = "web") -> dict[str, Any]:
    """One condition of the stored NodeCluster ({} when absent)."""
    return next((c for c in status(fake, name).get("conditions", []) if c["type"] == ctype), {})


def nodes(fake: FakeKube, cluster: str = "web") -> list[dict[str, Any]]:
    """The stored ClusterNodes of a cluster (being deleted or not)."""
    return [n for n in fake.objects(CLUSTERNODES, NS) if n["spec"]["clusterName"] == cluster]


def live_nodes(fake: FakeKube, cluster: str = "web") -> list[dict[str, Any]]:
    """The stored ClusterNodes of a cluster that are not being deleted."""
    return [n for n in nodes(fake, cluster) if not n["metadata"].get("deletionTimestamp")]


def every_machine(inventory: Path) -> list[dict[str, Any]]:
    """Every machine in the simulator's file, deleting or not, as of the loop's time."""
    return inventory_rows(inventory, now=LoopClock().now().timestamp())


def machines(inventory: Path) -> list[dict[str, Any]]:
    """The simulator's machines that are not being deleted."""
    return [m for m in every_machine(inventory) if m["state"] != "Deleting"]
