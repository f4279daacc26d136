"""policies.capacityFallback on a real API server and the simulator, from its sample: the
schema takes it (and refuses what cannot work, naming the field), Spot running out makes
on-demand nodes, and new nodes return to Spot once it has room again, while the nodes
already made stay."""

from __future__ import annotations

from typing import Any

import pytest
from kube import Kube, sample, wait_for
from scenario import Scenario

NO_SPOT = [{"capacityType": "Spot", "max": 0}]


def fallback_cluster(scenario: Scenario, **spec: Any) -> dict[str, Any]:
    """The sample, in the scenario's namespace and on its provider, named `workers`."""
    nc = sample("nodecluster-capacity-fallback.yaml")
    nc["metadata"].update(name="workers", namespace=scenario.ns)
    nc["spec"]["providerRef"]["name"] = scenario.provider
    nc["spec"].update(spec)
    return nc


def made_of(scenario: Scenario) -> dict[str, tuple[str, str, int | None]]:
    """Each live node: (machine type, capacity type, alternative)."""
    return {
        n["metadata"]["name"]: (
            n["spec"]["profile"]["machineType"],
            n["spec"]["profile"].get("capacityType", ""),
            n["spec"].get("alternative"),
        )
        for n in scenario.nodes()
        if not n["metadata"].get("deletionTimestamp")
    }


def test_spot_runs_out_and_comes_back(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider(capacityLimits=NO_SPOT)
    kube.apply(fallback_cluster(scenario))

    scenario.wait_converged(4)
    assert set(made_of(scenario).values()) == {("small", "OnDemand", 2)}
    assert {m["capacity_type"] for m in scenario.inventory.machines(scenario.tag())} == {"OnDemand"}
    status = scenario.nc()["status"]
    exhausted = {(e["machineType"], e["zone"]) for e in status["exhaustedCapacity"]}
    assert exhausted == {(t, z) for t in ("small", "medium") for z in ("zone-a", "zone-b")}
    assert status["zones"] == {"zone-a": 2, "zone-b": 2}  # spread held
    fallback = kube.condition("nodecluster", "workers", "CapacityFallback", scenario.ns)
    assert (fallback["status"], fallback["reason"]) == ("True", "CapacityExhausted")
    # One Warning Event per exhaustion, not per refused node.
    events = [
        e
        for e in kube.items("events", scenario.ns)
        if e["reason"] == "CapacityExhausted" and e["involvedObject"]["name"] == "workers"
    ]
    assert len(events) == sum(e["refusals"] for e in status["exhaustedCapacity"])
    first = set(made_of(scenario))

    # Spot has room again; once the back-off ran out, new nodes are Spot (the first choice).
    scenario.make_provider()
    wait_for(
        "CapacityFallback=False",
        lambda: (
            kube.condition("nodecluster", "workers", "CapacityFallback", scenario.ns).get("status")
            == "False"
        ),
        timeout=150,
    )
    kube.kubectl("scale", "nodecluster/workers", "--replicas=6", "-n", scenario.ns)
    scenario.wait_converged(6)

    now = made_of(scenario)
    assert first <= set(now), "a node made from an alternative was replaced"
    assert sorted(now[n] for n in set(now) - first) == [("small", "Spot", None)] * 2

    # Spot small got machines: its exhaustion ends. Medium Spot, which no node tried again,
    # is remembered (its back-off over) until forgotten 10 minutes on.
    def exhausted_types() -> set[str] | None:
        left = {e["machineType"] for e in scenario.nc()["status"].get("exhaustedCapacity", [])}
        return left if "small" not in left else None

    assert wait_for("small Spot no longer exhausted", exhausted_types) == {"medium"}
    assert scenario.nc()["status"]["updatedNodes"] == 6  # none is outdated


@pytest.mark.parametrize(
    ("policies", "words"),
    [
        (
            {"capacityFallback": {"alternatives": [{}]}},
            "an alternative must set machineType, capacityType or zone",
        ),
        (
            {"capacityFallback": {"alternatives": [{"zone": "zone-z"}]}},
            "spec.policies.capacityFallback.alternatives: Invalid value",
        ),
        ({"capacityFallback": {"alternatives": []}}, "spec.policies.capacityFallback.alternatives"),
        (
            {"capacityFallback": {"alternatives": [{"capacityType": "Reserved"}]}},
            "capacityType",
        ),
    ],
    ids=["empty-alternative", "zone-outside-placement", "no-alternatives", "capacity-type"],
)
def test_a_fallback_that_cannot_work_is_refused_naming_the_field(
    scenario: Scenario, kube: Kube, policies: dict[str, Any], words: str
) -> None:
    nc = fallback_cluster(scenario)
    nc["spec"]["policies"] = {**nc["spec"]["policies"], **policies}

    proc = kube.apply(nc, check=False)

    assert proc.returncode != 0, "the API server accepted an unusable capacityFallback"
    assert words in proc.stderr, proc.stderr
