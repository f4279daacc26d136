"""A NodeCluster's life as a user drives it with kubectl: create, scale, stop, start,
terminate, delete. Every step is checked both in the API and at the provider."""

from __future__ import annotations

from typing import Any

from kube import Kube, wait_for
from scenario import Scenario


def test_create_deploys_ready_nodes_spread_over_zones(scenario: Scenario) -> None:
    scenario.make_provider(createLatencySeconds=2)
    scenario.make_cluster(targetNodes=3)

    scenario.wait_state("Deploying")
    nc = scenario.wait_converged(3)

    nodes = scenario.nodes()
    assert {n["status"]["state"] for n in nodes} == {"Running"}
    assert sorted(n["status"]["zone"] for n in nodes) == ["zone-a", "zone-b", "zone-c"]
    assert all(n["status"]["providerId"].startswith("sim://") for n in nodes)
    ready = next(c for c in nc["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert nc["status"]["selector"] == "nodecluster.io/cluster=workers"


def test_kubectl_wait_for_ready_returns_once_converged(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider(createLatencySeconds=1)
    scenario.make_cluster(targetNodes=2)

    proc = kube.kubectl(
        "wait",
        "--for=condition=Ready",
        "nodecluster/workers",
        "-n",
        scenario.ns,
        "--timeout=90s",
        check=False,
        timeout=120,
    )

    assert proc.returncode == 0, proc.stderr
    status = scenario.nc()["status"]
    assert status["state"] == "Deployed"
    assert status["readyNodes"] == 2
    assert len(scenario.inventory.names(scenario.tag())) == 2


def test_scale_out_and_in_removes_the_nodes_the_deletion_policy_picks(
    scenario: Scenario, kube: Kube
) -> None:
    scenario.make_provider(createLatencySeconds=1)
    scenario.make_cluster(targetNodes=3, policies={"deletion": {"criteria": "OldestFirst"}})
    scenario.wait_converged(3)
    originals = {n["metadata"]["name"] for n in scenario.nodes()}

    kube.kubectl("scale", "nodecluster/workers", "--replicas=5", "-n", scenario.ns)
    scenario.wait_state("Scaling")
    scenario.wait_converged(5)
    newcomers = {n["metadata"]["name"] for n in scenario.nodes()} - originals
    assert len(newcomers) == 2

    kube.kubectl("scale", "nodecluster/workers", "--replicas=2", "-n", scenario.ns)
    scenario.wait_converged(2)

    remaining = {n["metadata"]["name"] for n in scenario.nodes()}
    assert remaining == newcomers, "OldestFirst must remove the three original nodes"
    assert scenario.inventory.names(scenario.tag()) == newcomers


def test_stop_keeps_machines_powered_off_then_start_runs_them_again(
    scenario: Scenario, kube: Kube
) -> None:
    scenario.make_provider()
    scenario.make_cluster(targetNodes=3)
    scenario.wait_converged(3)
    before = scenario.inventory.names(scenario.tag())

    scenario.patch_spec(desiredState="Stopped")
    nc = scenario.wait_state("Stopped")

    machines = scenario.inventory.machines(scenario.tag())
    assert {m["node"] for m in machines} == before, "stopping must not delete machines"
    assert {m["power"] for m in machines} == {"Stopped"}
    assert nc["status"]["stoppedNodes"] == 3

    scenario.patch_spec(desiredState="Running")
    scenario.wait_converged(3)
    machines = scenario.inventory.machines(scenario.tag())
    assert {m["node"] for m in machines} == before
    assert {m["power"] for m in machines} == {"Running"}


def test_terminated_deletes_every_machine_and_is_final(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider()
    scenario.make_cluster(targetNodes=3)
    scenario.wait_converged(3)

    scenario.patch_spec(desiredState="Terminated")
    scenario.wait_state("Terminated")

    assert scenario.nodes() == []
    assert scenario.inventory.names(scenario.tag()) == set()
    refused = kube.kubectl(
        "patch",
        "nodecluster/workers",
        "-n",
        scenario.ns,
        "--type=merge",
        "-p",
        '{"spec":{"desiredState":"Running"}}',
        check=False,
    )
    assert refused.returncode != 0
    assert "spec.desiredState" in refused.stderr and "Terminated" in refused.stderr


def test_deleting_the_cluster_removes_every_machine_first(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider(deleteLatencySeconds=1)
    scenario.make_cluster(targetNodes=3)
    scenario.wait_converged(3)

    kube.kubectl("delete", "nodecluster/workers", "-n", scenario.ns, "--wait=false")

    wait_for("the NodeCluster to be gone", lambda: scenario.nc() == {}, timeout=90)
    assert scenario.nodes() == []
    assert scenario.inventory.names(scenario.tag()) == set()


def test_a_provider_in_use_waits_for_its_clusters_then_goes(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider(deleteLatencySeconds=1)
    scenario.make_cluster(targetNodes=2)
    scenario.wait_converged(2)
    installation = kube.installation_id()  # the suite's operator's
    held = f"in-use.nodecluster.io/{installation}"

    def provider() -> dict[str, Any]:
        return kube.get("nodeprovider", scenario.provider) or {}

    def entry() -> dict[str, Any]:
        installations = (provider().get("status") or {}).get("installations", {})
        return dict(installations.get(installation, {}))

    wait_for("the provider held", lambda: held in provider()["metadata"].get("finalizers", []))

    kube.kubectl("delete", "nodeprovider", scenario.provider, "--wait=false")

    wait_for("the deletion to wait", lambda: entry().get("reason") == "ProviderInUse")
    np = provider()
    assert np["metadata"]["deletionTimestamp"]
    assert np["metadata"]["finalizers"] == [held]
    users = entry()["users"]
    assert users["nodeClusters"] == 1
    assert users["first"] == [{"kind": "NodeCluster", "namespace": scenario.ns, "name": "workers"}]
    assert f"1 NodeCluster ({scenario.ns}/workers)" in entry()["message"]
    events = kube.items("events", "default")
    assert any(
        e["reason"] == "ProviderInUse" and e["involvedObject"]["name"] == scenario.provider
        for e in events
    )
    assert scenario.nc()["status"]["state"] == "Deployed"  # used as before

    kube.kubectl("delete", "nodecluster/workers", "-n", scenario.ns, "--wait=false")

    wait_for("the NodeCluster to be gone", lambda: scenario.nc() == {}, timeout=90)
    assert scenario.inventory.names(scenario.tag()) == set()
    wait_for("the NodeProvider to be gone", lambda: provider() == {}, timeout=30)
