"""GitOps: what Argo CD shows for a NodeCluster, and server-side apply from a directory of
manifests as a GitOps controller does it.

The Argo CD health check (charts/nodecluster-operator/argocd/health-nodecluster.lua) is
run on real NodeClusters fetched from the API in each state, in Lua 5.1 as Argo CD runs
it. The apply tests use the field manager `gitops` and check that the operator's writes
(status, finalizer) never touch what Git owns, so a sync after convergence is a no-op.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube import Kube, sample, wait_for
from scenario import Scenario

from argocd import Health, nodecluster_health

GITOPS = "gitops"


def health_of(scenario: Scenario, name: str = "workers") -> Health:
    return nodecluster_health(scenario.nc(name))


def patch_spec(kube: Kube, ns: str, spec: dict[str, Any], name: str = "workers") -> None:
    kube.kubectl(
        "patch", f"nodecluster/{name}", "-n", ns, "--type=merge", "-p", json.dumps({"spec": spec})
    )


def test_argocd_health_follows_a_cluster_through_its_states(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider(createLatencySeconds=2)
    scenario.make_cluster(targetNodes=3)

    deploying = scenario.wait_state("Deploying")
    health = nodecluster_health(deploying)
    assert health.status == "Progressing"
    assert health.message.startswith("Deploying")

    deployed = scenario.wait_converged(3)
    assert nodecluster_health(deployed) == Health("Healthy", "Deployed: 3 nodes ready")

    # A spec change the operator has not seen yet is Progressing, whatever status says.
    unseen = copy.deepcopy(deployed)
    unseen["metadata"]["generation"] += 1
    health = nodecluster_health(unseen)
    assert health.status == "Progressing"
    assert "observe generation" in health.message

    patch_spec(kube, scenario.ns, {"paused": True})
    paused = wait_for(
        "the pause observed",
        lambda: (
            (nc := scenario.nc())["status"].get("observedGeneration")
            == nc["metadata"]["generation"]
            and nc
        ),
    )
    reconciling = next(c for c in paused["status"]["conditions"] if c["type"] == "Reconciling")
    assert reconciling["reason"] == "Paused"
    health = nodecluster_health(paused)
    assert health.status == "Suspended"
    assert "spec.paused" in health.message

    patch_spec(kube, scenario.ns, {"paused": False, "desiredState": "Terminated"})
    terminated = scenario.wait_state("Terminated")
    assert nodecluster_health(terminated) == Health("Healthy", "Terminated: every machine is gone")


def test_argocd_health_is_degraded_when_the_provider_is_missing(
    scenario: Scenario, kube: Kube
) -> None:
    scenario.make_cluster(targetNodes=2)  # its NodeProvider is never created

    stalled = wait_for(
        "Stalled=True",
        lambda: (
            kube.condition("nodecluster", "workers", "Stalled", scenario.ns).get("status") == "True"
        ),
    )
    assert stalled
    health = health_of(scenario)

    assert health.status == "Degraded"
    assert health.message.startswith("Stalled: ProviderNotFound")


def test_argocd_health_is_degraded_while_the_provider_fails(scenario: Scenario, kube: Kube) -> None:
    np = scenario.make_provider(failureRate=1.0)
    scenario.make_cluster(targetNodes=2)

    wait_for(
        "Degraded=True",
        lambda: (
            kube.condition("nodecluster", "workers", "Degraded", scenario.ns).get("status")
            == "True"
        ),
    )
    health = health_of(scenario)

    assert health.status == "Degraded"
    assert "ProviderUnavailable" in health.message

    np["spec"]["config"]["failureRate"] = 0.0  # and it recovers (so it can be deleted too)
    kube.apply(np)
    assert nodecluster_health(scenario.wait_converged(2, timeout=120)).status == "Healthy"


# -- server-side apply from Git --------------------------------------------------------------


def write_repo(scenario: Scenario, directory: Path, **spec: Any) -> Path:
    """A Git checkout's worth of manifests: the sample provider and cluster, made unique to
    this test. `spec` overrides NodeCluster spec fields; a None value leaves one out."""
    np = sample("nodeprovider-simulator.yaml")
    np["metadata"]["name"] = scenario.provider
    np["spec"]["config"] = {"path": str(scenario.inventory.path), "createLatencySeconds": 1}
    nc = sample("nodecluster-basic.yaml")
    nc["metadata"]["namespace"] = scenario.ns
    nc["spec"]["providerRef"]["name"] = scenario.provider
    for key, value in spec.items():
        if value is None:
            nc["spec"].pop(key, None)
        else:
            nc["spec"][key] = value
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "nodeprovider.yaml").write_text(yaml.safe_dump(np, sort_keys=False))
    (directory / "nodecluster.yaml").write_text(yaml.safe_dump(nc, sort_keys=False))
    return directory


def sync(kube: Kube, repo: Path, check: bool = True) -> Any:
    return kube.kubectl(
        "apply", "--server-side", f"--field-manager={GITOPS}", "-f", str(repo), check=check
    )


def diff(kube: Kube, repo: Path) -> Any:
    """`kubectl diff` of Git against the cluster: exit code 0 means nothing would change."""
    return kube.kubectl(
        "diff", "--server-side", f"--field-manager={GITOPS}", "-f", str(repo), check=False
    )


def with_managed_fields(kube: Kube, kind: str, name: str, ns: str | None = None) -> Any:
    """The object including metadata.managedFields, which kubectl hides by default."""
    args = ["get", kind, name, "-o", "json", "--show-managed-fields"]
    return json.loads(kube.kubectl(*args, *(["-n", ns] if ns else [])).stdout)


def managed(obj: dict[str, Any], manager: str) -> list[dict[str, Any]]:
    return [m for m in obj["metadata"].get("managedFields", []) if m["manager"] == manager]


def test_gitops_apply_is_idempotent_and_never_fights_the_operator(
    scenario: Scenario, kube: Kube, tmp_path: Path
) -> None:
    repo = write_repo(scenario, tmp_path / "repo")
    sync(kube, repo)
    applied = with_managed_fields(kube, "nodecluster", "workers", scenario.ns)
    owned_by_git = managed(applied, GITOPS)
    assert [m["operation"] for m in owned_by_git] == ["Apply"]

    scenario.wait_converged(3)
    converged = with_managed_fields(kube, "nodecluster", "workers", scenario.ns)

    # The operator wrote status and its finalizer, through its own field manager, and
    # never a field of the spec: Git still owns exactly what it applied.
    assert managed(converged, GITOPS)[0]["fieldsV1"] == owned_by_git[0]["fieldsV1"]
    operator_writes = managed(converged, "nodecluster-operator")
    assert {m.get("subresource", "") for m in operator_writes} == {"", "status"}
    for entry in operator_writes:
        if entry.get("subresource") != "status":
            assert set(entry["fieldsV1"]) == {"f:metadata"}, entry["fieldsV1"]
    assert converged["metadata"]["finalizers"] == ["nodecluster.io/nodes"]

    # A second sync changes nothing at all, and a diff against Git is empty.
    provider_before = kube.get("nodeprovider", scenario.provider) or {}
    out = sync(kube, repo).stdout
    assert "serverside-applied" in out
    after = scenario.nc()
    assert after["metadata"]["resourceVersion"] == converged["metadata"]["resourceVersion"]
    assert after["metadata"]["generation"] == converged["metadata"]["generation"]
    provider_after = kube.get("nodeprovider", scenario.provider) or {}
    assert (
        provider_after["metadata"]["resourceVersion"]
        == provider_before["metadata"]["resourceVersion"]
    )
    proc = diff(kube, repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_gitops_and_an_autoscaler_share_a_cluster_when_git_omits_target_nodes(
    scenario: Scenario, kube: Kube, tmp_path: Path
) -> None:
    repo = write_repo(scenario, tmp_path / "with-target", targetNodes=2)
    sync(kube, repo)
    scenario.wait_converged(2)

    # An autoscaler (HPA, KEDA, `kubectl scale`) writes targetNodes through the scale
    # subresource and so takes the field over from Git...
    kube.kubectl("scale", "nodecluster/workers", "--replicas=3", "-n", scenario.ns)
    scenario.wait_converged(3)
    # ...after which a sync that still sets it is refused instead of silently undoing the
    # autoscaler's decision.
    refused = sync(kube, repo, check=False)
    assert refused.returncode != 0
    assert "conflict" in refused.stderr.lower()
    assert ".spec.targetNodes" in refused.stderr

    # The guidance: leave targetNodes out of Git. Syncs then succeed, keep the
    # autoscaler's value, and show no diff.
    without = write_repo(scenario, tmp_path / "without-target", targetNodes=None)
    sync(kube, without)
    nc = with_managed_fields(kube, "nodecluster", "workers", scenario.ns)
    assert nc["spec"]["targetNodes"] == 3
    assert "f:targetNodes" not in json.dumps(managed(nc, GITOPS)[0]["fieldsV1"])
    proc = diff(kube, without)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "name",
    [
        "nodecluster-basic.yaml",
        "nodecluster-policies.yaml",
        "nodecluster-suspend.yaml",
        "nodecluster-hooks.yaml",
        "nodecluster-capacity-fallback.yaml",
        "nodecluster-warmpool.yaml",
    ],
)
def test_samples_are_gitops_clean(
    name: str, scenario: Scenario, kube: Kube, tmp_path: Path
) -> None:
    """Every field a sample sets is kept as written (no defaulting or normalisation makes
    Git and the cluster disagree): after a sync, a diff shows nothing."""
    nc = sample(name)
    nc["metadata"]["namespace"] = scenario.ns
    nc["spec"]["providerRef"]["name"] = scenario.provider
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / name).write_text(yaml.safe_dump(nc, sort_keys=False))

    sync(kube, repo)
    # The operator has had its say (no provider: Stalled) and writes nothing more.
    wait_for(
        "Stalled=True",
        lambda: (
            kube.condition("nodecluster", nc["metadata"]["name"], "Stalled", scenario.ns).get(
                "status"
            )
            == "True"
        ),
    )
    proc = diff(kube, repo)

    assert proc.returncode == 0, proc.stdout + proc.stderr
