"""The policies of spec.policies, each proven on a real API server against the simulator."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from typing import Any

from kube import Kube, wait_for
from scenario import Scenario


def _condition(kube: Kube, sc: Scenario, ctype: str, status: str = "True") -> dict[str, Any] | None:
    cond = kube.condition("nodecluster", "workers", ctype, sc.ns)
    return cond if cond.get("status") == status else None


def _fail_machines(sc: Scenario, *names: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "nodecluster", "simulator", "fail", str(sc.inventory.path), *names],
        check=True,
    )


def _names(sc: Scenario) -> set[str]:
    return {n["metadata"]["name"] for n in sc.nodes()}


def test_annotated_nodes_go_first_and_protected_nodes_never(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider()
    scenario.make_cluster(
        targetNodes=3, minNodes=0, policies={"deletion": {"criteria": "YoungestFirst"}}
    )
    scenario.wait_converged(3)
    doomed, protected, plain = sorted(_names(scenario))
    kube.kubectl(
        "annotate", "clusternode", doomed, "-n", scenario.ns, "nodecluster.io/delete-node=true"
    )
    kube.kubectl(
        "annotate",
        "clusternode",
        protected,
        "-n",
        scenario.ns,
        "nodecluster.io/protect-from-scale-in=true",
    )

    kube.kubectl("scale", "nodecluster/workers", "--replicas=1", "-n", scenario.ns)
    scenario.wait_converged(1)
    assert _names(scenario) == {protected}, f"expected only {protected} to stay"
    assert plain not in scenario.inventory.names()

    kube.kubectl("scale", "nodecluster/workers", "--replicas=0", "-n", scenario.ns)
    stalled = wait_for(
        "Stalled=ProtectedFromScaleIn", lambda: _condition(kube, scenario, "Stalled")
    )
    assert stalled["reason"] == "ProtectedFromScaleIn"
    assert _names(scenario) == {protected}
    assert scenario.inventory.names(scenario.tag()) == {protected}


def test_grace_period_drains_before_the_machine_goes(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider()
    scenario.make_cluster(
        targetNodes=2, minNodes=0, policies={"deletion": {"gracePeriodSeconds": 4}}
    )
    scenario.wait_converged(2)

    kube.kubectl("scale", "nodecluster/workers", "--replicas=1", "-n", scenario.ns)

    def draining() -> dict[str, Any] | None:
        for n in scenario.nodes():
            st = n.get("status") or {}
            if n["metadata"].get("deletionTimestamp") and "draining" in (st.get("message") or ""):
                return n
        return None

    node = wait_for("a node draining", draining, timeout=30)
    assert node["metadata"]["name"] in scenario.inventory.names(), (
        "machine deleted before its grace"
    )
    scenario.wait_converged(1)
    assert node["metadata"]["name"] not in scenario.inventory.names()


def test_failed_machine_is_recreated_with_an_event(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider()
    scenario.make_cluster(targetNodes=3, policies={"health": {"pollIntervalSeconds": 5}})
    scenario.wait_converged(3)
    victim = sorted(_names(scenario))[0]

    _fail_machines(scenario, victim)

    wait_for(
        "the failed node replaced",
        lambda: victim not in _names(scenario) and len(_names(scenario)) == 3,
        timeout=60,
    )
    scenario.wait_converged(3)
    assert victim not in scenario.inventory.names()
    events = kube.items("events", scenario.ns)
    assert any(e["reason"] == "NodeRemediated" and victim in e["message"] for e in events)
    assert any(e["reason"] == "Recovering" for e in events), "the cluster passed through Recovering"


def test_reboot_recovery_keeps_the_node(scenario: Scenario) -> None:
    scenario.make_provider()
    scenario.make_cluster(
        targetNodes=2, policies={"health": {"pollIntervalSeconds": 5, "recovery": "Reboot"}}
    )
    scenario.wait_converged(2)
    before = _names(scenario)
    victim = sorted(before)[0]

    _fail_machines(scenario, victim)

    def rebooted() -> dict[str, Any] | None:
        node = next((n for n in scenario.nodes() if n["metadata"]["name"] == victim), None)
        st = (node or {}).get("status") or {}
        return node if st.get("lastRebootTime") and st.get("state") == "Running" else None

    wait_for("the failed node rebooted", rebooted, timeout=60)
    scenario.wait_converged(2)
    assert _names(scenario) == before


def test_max_unhealthy_stops_remediation_and_says_why(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider()
    scenario.make_cluster(
        targetNodes=4, policies={"health": {"pollIntervalSeconds": 5, "maxUnhealthy": 1}}
    )
    scenario.wait_converged(4)
    before = _names(scenario)

    _fail_machines(scenario, *sorted(before)[:2])

    degraded = wait_for(
        "Degraded=TooManyUnhealthy",
        lambda: (
            (c := _condition(kube, scenario, "Degraded"))
            and c["reason"] == "TooManyUnhealthy"
            and c
        ),
        timeout=60,
    )
    assert "maxUnhealthy" in degraded["message"]
    assert _names(scenario) == before, "no node may be remediated past maxUnhealthy"


def test_zone_weights_place_and_scale_in_keeps_the_spread(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider()
    zones = [{"name": "zone-a", "weight": 2}, {"name": "zone-b", "weight": 1}]
    scenario.make_cluster(targetNodes=6, minNodes=0, policies={"placement": {"zones": zones}})
    scenario.wait_converged(6)
    assert Counter(m["zone"] for m in scenario.inventory.machines(scenario.tag())) == {
        "zone-a": 4,
        "zone-b": 2,
    }

    kube.kubectl("scale", "nodecluster/workers", "--replicas=3", "-n", scenario.ns)
    scenario.wait_converged(3)
    assert Counter(m["zone"] for m in scenario.inventory.machines(scenario.tag())) == {
        "zone-a": 2,
        "zone-b": 1,
    }
    assert scenario.nc()["status"]["zones"] == {"zone-a": 2, "zone-b": 1}


def test_profile_change_rolls_out_within_the_surge_budget(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider(createLatencySeconds=1)
    scenario.make_cluster(targetNodes=3, policies={"rollout": {"maxSurge": 1, "maxUnavailable": 0}})
    scenario.wait_converged(3)
    before = _names(scenario)

    scenario.patch_spec(profile={"image": "ubuntu-26.04"})
    seen: list[dict[str, Any]] = []

    def rolled() -> bool:
        st = scenario.nc().get("status") or {}
        seen.append(st)
        return (
            st.get("state") == "Deployed"
            and st.get("updatedNodes") == 3
            and not (_names(scenario) & before)
        )

    wait_for("the rollout to finish", rolled, timeout=120)
    assert any(s.get("state") == "Updating" for s in seen)
    assert all(s.get("readyNodes", 3) >= 3 for s in seen if s.get("state") == "Updating"), (
        "maxUnavailable 0: never fewer than 3 ready nodes during the rollout"
    )
    assert all(s.get("currentNodes", 0) <= 4 for s in seen), "maxSurge 1: never more than 4 nodes"
    images = {n["spec"]["profile"].get("image") for n in scenario.nodes()}
    assert images == {"ubuntu-26.04"}


def test_paused_freezes_a_rollout(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider()
    scenario.make_cluster(targetNodes=2)
    scenario.wait_converged(2)
    before = _names(scenario)

    scenario.patch_spec(paused=True, profile={"image": "v2"})

    def paused_seen() -> dict[str, Any] | None:
        nc = scenario.nc()
        rec = kube.condition("nodecluster", "workers", "Reconciling", scenario.ns)
        gen_seen = (nc.get("status") or {}).get("observedGeneration") == nc["metadata"][
            "generation"
        ]
        return rec if gen_seen and rec.get("reason") == "Paused" else None

    wait_for("the paused generation observed", paused_seen)
    assert _names(scenario) == before
    assert scenario.nc()["status"]["updatedNodes"] == 0

    scenario.patch_spec(paused=False)
    wait_for(
        "rollout after unpausing",
        lambda: (
            scenario.nc()["status"].get("updatedNodes") == 2
            and scenario.nc()["status"]["state"] == "Deployed"
            and not (_names(scenario) & before)
        ),
        timeout=90,
    )


def test_quota_stops_scale_out_and_keeps_the_nodes(scenario: Scenario, kube: Kube) -> None:
    np = scenario.make_provider()
    np["spec"]["quotas"]["maxNodes"] = 2
    kube.apply(np)
    scenario.make_cluster(targetNodes=4)

    stalled = wait_for(
        "Stalled=QuotaExceeded", lambda: _condition(kube, scenario, "Stalled"), timeout=60
    )
    assert stalled["reason"] == "QuotaExceeded"
    wait_for("two nodes kept", lambda: scenario.nc()["status"].get("readyNodes") == 2)
    assert len(scenario.inventory.names(scenario.tag())) == 2


def test_capacity_stops_scale_out_and_keeps_the_nodes(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider(capacity=2)
    scenario.make_cluster(targetNodes=3)

    def capacity_reported() -> dict[str, Any] | None:
        for ctype in ("Stalled", "Degraded"):
            cond = _condition(kube, scenario, ctype)
            if cond and cond["reason"] == "CapacityExceeded":
                return cond
        return None

    cond = wait_for("CapacityExceeded reported", capacity_reported, timeout=60)
    assert "full" in cond["message"]
    wait_for("two nodes kept", lambda: scenario.nc()["status"].get("readyNodes") == 2)
    assert len(scenario.inventory.names(scenario.tag())) == 2


def test_scale_subresource_serves_the_selector(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider()
    scenario.make_cluster(targetNodes=2)
    scenario.wait_converged(2)

    import json

    raw = kube.kubectl(
        "get",
        "--raw",
        f"/apis/nodecluster.io/v1alpha1/namespaces/{scenario.ns}/nodeclusters/workers/scale",
    ).stdout
    scale = json.loads(raw)
    assert scale["spec"]["replicas"] == 2
    assert scale["status"]["replicas"] == 2
    assert scale["status"]["selector"] == "nodecluster.io/cluster=workers"


def test_a_horizontal_pod_autoscaler_drives_the_scale_subresource(
    scenario: Scenario, kube: Kube
) -> None:
    """The built-in HPA controller scales a NodeCluster like a Deployment. Without a
    metrics server it still enforces min/maxReplicas through the scale subresource,
    which is exactly the path KEDA and metric-driven scaling use too."""
    scenario.make_provider()
    scenario.make_cluster(targetNodes=1, minNodes=0)
    scenario.wait_converged(1)

    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "workers", "namespace": scenario.ns},
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "nodecluster.io/v1alpha1",
                "kind": "NodeCluster",
                "name": "workers",
            },
            "minReplicas": 3,
            "maxReplicas": 5,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80},
                    },
                }
            ],
        },
    }
    kube.apply(hpa)

    wait_for(
        "the HPA to raise the target", lambda: scenario.nc()["spec"]["targetNodes"] == 3, timeout=90
    )
    scenario.wait_converged(3)
    wait_for(
        "the HPA to see 3 replicas through status.currentNodes",
        lambda: (
            ((kube.get("hpa", "workers", scenario.ns) or {}).get("status") or {}).get(
                "currentReplicas"
            )
            == 3
        ),
        timeout=90,
    )


def test_a_machine_that_never_starts_is_replaced_after_the_startup_timeout(
    scenario: Scenario, kube: Kube
) -> None:
    scenario.make_provider(createLatencySeconds=600)
    scenario.make_cluster(
        targetNodes=1,
        policies={"health": {"nodeStartupTimeoutSeconds": 10, "pollIntervalSeconds": 5}},
    )
    first = wait_for("a node", lambda: _names(scenario), timeout=30)

    def remediated() -> bool:
        events = kube.items("events", scenario.ns)
        return any(
            e["reason"] == "NodeRemediated" and next(iter(first)) in e["message"] for e in events
        )

    wait_for("the stuck node remediated", remediated, timeout=90)
    wait_for(
        "a replacement", lambda: _names(scenario) and not (_names(scenario) & first), timeout=60
    )
