"""Provider faults and operator crashes: reported in status, recovered from, and never a
lost or doubled machine."""

from __future__ import annotations

from collections import Counter
from typing import Any

from kube import Kube, Operator, wait_for
from scenario import Scenario


def test_failing_provider_is_reported_and_recovers(scenario: Scenario, kube: Kube) -> None:
    np = scenario.make_provider(failureRate=1.0)
    scenario.make_cluster(targetNodes=3)

    def degraded() -> dict[str, Any] | None:
        c = kube.condition("nodecluster", "workers", "Degraded", scenario.ns)
        return c if c.get("status") == "True" else None

    cond = wait_for("Degraded=True", degraded)
    assert cond["reason"] == "ProviderUnavailable"
    assert "simulated failure" in cond["message"]
    assert scenario.nc()["status"]["state"] in ("Error", "PartlyDeployed")

    np["spec"]["config"]["failureRate"] = 0.0
    kube.apply(np)

    scenario.wait_converged(3, timeout=120)
    # Some failures struck after the machine was made: idempotent create must have
    # adopted those machines rather than making new ones.
    created = Counter(
        c["name"] for c in scenario.inventory.calls("create") if c["outcome"] == "created"
    )
    assert all(n == 1 for n in created.values()), created
    assert set(created) == scenario.inventory.machine_names(scenario.tag())


def test_kill_9_while_creating_twenty_machines_loses_and_doubles_nothing(
    scenario: Scenario, operator: Operator
) -> None:
    scenario.make_provider(createLatencySeconds=3, latencyJitter=0.5)
    scenario.make_cluster(targetNodes=20, maxNodes=20, policies={})

    wait_for(
        "machines being created",
        lambda: len(scenario.inventory.names(scenario.tag())) >= 5,
        timeout=60,
    )
    operator.kill9()
    try:
        running = sum(
            1 for n in scenario.nodes() if (n.get("status") or {}).get("state") == "Running"
        )
        assert running < 20, "the operator was killed too late to test anything"
    finally:
        operator.start()

    scenario.wait_converged(20, timeout=180)
    names = scenario.inventory.names(scenario.tag())
    assert len(names) == 20
    assert names == {n["metadata"]["name"] for n in scenario.nodes()}
    created = Counter(
        c["name"] for c in scenario.inventory.calls("create") if c["outcome"] == "created"
    )
    assert all(n == 1 for n in created.values()), "a machine name was created twice"
    assert sum(created.values()) == 20, f"{sum(created.values())} machines made for 20 nodes"
