"""Ready is never True while a cluster's nodes are still being deleted.

`kubectl wait --for=condition=Ready` returns at the first status that says Ready=True
for the current generation. A scale-in of a Stopped cluster used to write `Stopped` and
Ready=True in the very status write of the reconcile that issued the deletes (the status
describes the world after the plan, where the deleted nodes are `deleting` and were not
counted), so the wait returned while machines were still going. The same holds for every
converged state: `Deployed` and `Empty` too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from clusters import NS, cluster_body, condition, nodes, state
from conftest import provider_body

from nodecluster.controllers.kubeapi import NODECLUSTERS, NODEPROVIDERS
from nodecluster.testing import FakeKube, Harness


def statuses_while_deleting(fake: FakeKube, cluster: str = "web") -> list[dict[str, Any]]:
    """Every status of the NodeCluster written while any of its ClusterNodes was being
    deleted (had a deletionTimestamp and was not gone yet), from the fake's history."""
    going: set[str] = set()
    last: dict[str, Any] | None = None
    written: list[dict[str, Any]] = []
    for change in fake.history:
        meta = change.body["metadata"]
        if change.kind == "clusternodes" and change.body["spec"]["clusterName"] == cluster:
            if change.type == "DELETED":
                going.discard(meta["name"])
            elif meta.get("deletionTimestamp"):
                going.add(meta["name"])
        elif change.kind == "nodeclusters" and meta["name"] == cluster:
            status = change.body.get("status", {})
            if status != last and going:
                written.append(status)
            last = status
    return written


def ready_of(status: dict[str, Any]) -> str | None:
    return next((c["status"] for c in status.get("conditions", []) if c["type"] == "Ready"), None)


@pytest.mark.parametrize(
    ("desired_state", "converged", "target"),
    [
        ("Stopped", "Stopped", 1),
        ("Stopped", "Stopped", 0),
        ("Running", "Deployed", 1),
        ("Running", "Empty", 0),
    ],
    ids=["stopped-scale-in", "stopped-to-zero", "deployed-scale-in", "running-to-empty"],
)
async def test_a_scale_in_is_not_ready_while_its_nodes_are_being_deleted(
    fake: FakeKube,
    harness: Harness,
    inventory: Path,
    desired_state: str,
    converged: str,
    target: int,
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=3, desiredState=desired_state))
    before = "Stopped" if desired_state == "Stopped" else "Deployed"
    await harness.wait_for(
        lambda: state(fake) == before and condition(fake, "Ready")["status"] == "True"
    )

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": target}})
    await harness.wait_for(
        lambda: (
            len(nodes(fake)) == target
            and state(fake) == converged
            and condition(fake, "Ready")["status"] == "True"
        ),
        what=f"{target} nodes left and {converged}, Ready",
    )

    written = statuses_while_deleting(fake)
    assert written, "no status was written while the scale-in was under way"
    ready = [(s["state"], s["message"]) for s in written if ready_of(s) == "True"]
    assert ready == []
