"""spec.suspend and policies.rollout.maxNodeLifetimeSeconds on a real API server.

What only a real server shows: the fields and the Suspended condition survive the
schema (nothing pruned), the sample is accepted, a cluster deleted with Terminate
suspended still goes (finalizers and garbage collection as a real server runs them),
and nodes expire by the server's own creationTimestamps, in real time.
"""

from __future__ import annotations

from typing import Any

from kube import Kube, sample, wait_for
from scenario import Scenario


def _condition(kube: Kube, sc: Scenario, ctype: str) -> dict[str, Any]:
    return kube.condition("nodecluster", "workers", ctype, sc.ns)


def _names(sc: Scenario) -> set[str]:
    return {n["metadata"]["name"] for n in sc.nodes()}


def test_suspended_terminate_holds_a_scale_in_and_deleting_the_cluster_still_works(
    scenario: Scenario, kube: Kube
) -> None:
    suspend = sample("nodecluster-suspend.yaml")["spec"]["suspend"]
    assert "Terminate" in suspend
    scenario.make_provider()
    scenario.make_cluster(targetNodes=3, minNodes=0, suspend=suspend)
    scenario.wait_converged(3)
    suspended = _condition(kube, scenario, "Suspended")
    assert (suspended["status"], suspended["reason"]) == ("True", "ProcessesSuspended")
    assert _condition(kube, scenario, "Ready")["status"] == "True"

    kube.kubectl("scale", "nodecluster/workers", "--replicas=1", "-n", scenario.ns)
    held = wait_for(
        "Suspended=ChangesHeldBack",
        lambda: (
            (c := _condition(kube, scenario, "Suspended")).get("reason") == "ChangesHeldBack" and c
        ),
    )
    assert "Terminate: 2 nodes above the target of 1 not removed" in held["message"]
    assert _condition(kube, scenario, "Ready")["status"] == "False"
    assert _condition(kube, scenario, "Stalled")["status"] == "False"
    assert len(_names(scenario)) == 3
    assert len(scenario.inventory.names(scenario.tag())) == 3

    kube.kubectl("delete", "nodecluster/workers", "-n", scenario.ns, "--wait=false")
    wait_for("the NodeCluster gone", lambda: scenario.nc() == {}, timeout=90)
    assert scenario.nodes() == []
    assert scenario.inventory.names(scenario.tag()) == set()


def test_nodes_past_their_lifetime_are_replaced_with_an_event(
    scenario: Scenario, kube: Kube
) -> None:
    # The shortest lifetime the API takes over a 10 s startup timeout: one minute.
    scenario.make_provider()
    scenario.make_cluster(
        targetNodes=2,
        policies={
            "health": {"nodeStartupTimeoutSeconds": 10},
            "rollout": {"maxNodeLifetimeSeconds": 60, "maxSurge": 1, "maxUnavailable": 0},
        },
    )
    scenario.wait_converged(2)
    first = _names(scenario)

    wait_for("every first node replaced", lambda: not first & _names(scenario), timeout=150)
    scenario.wait_converged(2, timeout=60)

    events = [e for e in kube.items("events", scenario.ns) if e["reason"] == "NodeExpired"]
    said = " ".join(e["message"] for e in events)
    assert all(name in said for name in first), said
    assert "maxNodeLifetimeSeconds (60s)" in said
    assert not first & scenario.inventory.names(scenario.tag())
