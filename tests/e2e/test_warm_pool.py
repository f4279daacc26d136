"""Warm pools on a real API server and the simulator, from the sample.

What only a real server shows: the pool's fields and status survive the schema (nothing
pruned, the sample's defaults kept), the CEL rule refuses a pool that cannot take nodes
back, the scale subresource's selector and replicas leave warm nodes out (what an HPA
reads), label selectors and printer columns tell warm nodes apart, and a scale-out takes
the pool's machines through real watches.
"""

from __future__ import annotations

import json
from typing import Any

from kube import Kube, sample, wait_for
from scenario import Scenario

POOL_LABEL = "nodecluster.io/pool"


def warm_nodes(sc: Scenario) -> list[dict[str, Any]]:
    return sc.kube.items("clusternode", sc.ns, f"nodecluster.io/cluster=workers,{POOL_LABEL}=warm")


def serving_nodes(sc: Scenario) -> list[dict[str, Any]]:
    return sc.kube.items(
        "clusternode", sc.ns, f"nodecluster.io/cluster=workers,{POOL_LABEL} notin (warm)"
    )


def pool_settled(sc: Scenario, serving: int, warm: int) -> dict[str, Any] | None:
    """The cluster Deployed on `serving` ready nodes, `warm` warm nodes with stopped machines,
    the pool full, and the provider holding exactly their machines."""
    nc = sc.nc()
    st = nc.get("status") or {}
    if st.get("observedGeneration") != nc.get("metadata", {}).get("generation"):
        return None
    if (st.get("state"), st.get("readyNodes"), st.get("currentNodes")) != (
        "Deployed" if serving else "Empty",
        serving,
        serving,
    ):
        return None
    if st.get("warmNodes") != warm:
        return None
    pool = next((c for c in st.get("conditions", []) if c["type"] == "WarmPool"), {})
    if pool.get("status") != "True":
        return None
    cold = [n for n in warm_nodes(sc) if (n.get("status") or {}).get("state") != "Stopped"]
    every = {n["metadata"]["name"] for n in sc.nodes()}
    if cold or len(every) != serving + warm or sc.inventory.names(sc.tag()) != every:
        return None
    return nc


def test_a_scale_out_takes_the_pool_first_and_an_hpa_sees_only_serving_nodes(
    scenario: Scenario, kube: Kube
) -> None:
    pool = sample("nodecluster-warmpool.yaml")["spec"]["warmPool"]
    scenario.make_provider(createLatencySeconds=2, powerLatencySeconds=0.2)
    scenario.make_cluster(targetNodes=2, warmPool=pool)
    size = pool["size"]
    wait_for("2 serving, the pool full", lambda: pool_settled(scenario, 2, size), timeout=90)
    assert scenario.nc()["spec"]["warmPool"] == pool  # kept as written (nothing pruned)
    warm_before = {n["metadata"]["name"] for n in warm_nodes(scenario)}

    # What an HPA reads: the scale subresource, replicas and selector without warm nodes.
    raw = kube.kubectl(
        "get", "--raw",
        f"/apis/nodecluster.io/v1alpha1/namespaces/{scenario.ns}/nodeclusters/workers/scale",
    ).stdout  # fmt: skip
    scale = json.loads(raw)
    assert scale["status"]["replicas"] == 2
    selector = scale["status"]["selector"]
    assert selector == f"nodecluster.io/cluster=workers,{POOL_LABEL} notin (warm)"
    assert len(kube.items("clusternode", scenario.ns, selector)) == 2
    columns = kube.kubectl("get", "nodecluster", "workers", "-n", scenario.ns).stdout
    assert "WARM" in columns.splitlines()[0]

    kube.kubectl("scale", "nodecluster/workers", "-n", scenario.ns, "--replicas=4")
    # Two machines started (0.2 s each) rather than created (2 s): Deployed before any
    # create could have finished, and the pool refilled behind.
    wait_for("4 serving, the pool full again", lambda: pool_settled(scenario, 4, size), 90)
    serving = {n["metadata"]["name"] for n in serving_nodes(scenario)}
    assert len(warm_before & serving) == 2  # two warm nodes promoted, none created for it
    promoted = [
        e for e in kube.items("events", scenario.ns) if e.get("reason") == "WarmNodesPromoted"
    ]
    assert promoted and "promoted 2 warm node(s)" in promoted[0]["message"]

    # The sample returns nodes to the pool on scale-in, up to its size: with a pool two
    # larger in the same write, both nodes a scale-in takes go back to it, stopped.
    every = {n["metadata"]["name"] for n in scenario.nodes()}
    scenario.patch_spec(targetNodes=2, warmPool={**pool, "size": size + 2})
    wait_for("2 serving, 2 more warm", lambda: pool_settled(scenario, 2, size + 2), 90)
    assert {n["metadata"]["name"] for n in scenario.nodes()} == every  # none made, none gone

    kube.kubectl("delete", "nodecluster/workers", "-n", scenario.ns, "--wait=false")
    wait_for("the NodeCluster gone", lambda: scenario.nc() == {}, timeout=60)
    assert scenario.inventory.names(scenario.tag()) == set()  # warm machines too


def test_a_pool_that_cannot_take_nodes_back_is_refused(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider()
    nc = scenario.cluster(warmPool={"size": 0, "reuseOnScaleIn": True})
    proc = kube.kubectl("apply", "-f", "-", input=json.dumps(nc), check=False)
    assert proc.returncode != 0
    assert "spec.warmPool.reuseOnScaleIn" in proc.stderr
    assert "needs a pool to return nodes to" in proc.stderr
