"""The kubectl plugin as people run it: `kubectl nodecluster ...` (the package's
`kubectl-nodecluster` on PATH, found by the real kubectl), against a real API server and
the operator. `plan` predicts what the operator then does on the same change; describe
shows the tree; the verbs create operations and wait for their end; a user bound only to
the chart's plugin role can do all of it and nothing more."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube import Kube, service_account_kube
from scenario import Scenario

import chart  # (tools/, on the path by conftest.py)

BIN = Path(sys.executable).parent
"""Where the package's console scripts are: kubectl-nodecluster among them."""


def plugin(
    kube: Kube, *args: str, kubeconfig: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`kubectl nodecluster ARGS`, with the package's bin on PATH as an install puts it."""
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(kubeconfig or kube.kubeconfig),
    }
    env.pop("NO_COLOR", None)
    return subprocess.run(
        [kube.kubectl_bin, "nodecluster", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def zones_of(nodes: list[dict[str, Any]]) -> Counter[str | None]:
    return Counter((n.get("status") or {}).get("zone") for n in nodes)


def changed_manifest(sc: Scenario, tmp_path: Path, **spec: Any) -> Path:
    """The live cluster's manifest as its owner keeps it, with `spec` changed."""
    live = sc.nc()
    doc = {
        "apiVersion": live["apiVersion"],
        "kind": "NodeCluster",
        "metadata": {"name": live["metadata"]["name"], "namespace": sc.ns},
        "spec": {**live["spec"], **spec},
    }
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def planned(kube: Kube, path: Path) -> dict[str, Any]:
    proc = plugin(kube, "plan", "-f", str(path), "-o", "json")
    assert proc.returncode == 2, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def test_plan_predicts_the_scale_in_the_operator_then_makes(
    scenario: Scenario, kube: Kube, tmp_path: Path
) -> None:
    # The sample's OldestFirst deletion: the planner's choice is deterministic (ties by name).
    scenario.make_provider()
    scenario.make_cluster(targetNodes=5)
    scenario.wait_converged(5)
    before = {n["metadata"]["name"] for n in scenario.nodes()}

    same = plugin(kube, "plan", "-f", str(changed_manifest(scenario, tmp_path)))
    assert same.returncode == 0, same.stderr
    assert same.stdout.startswith("Replaces existing machines: no")

    doc = planned(kube, changed_manifest(scenario, tmp_path, targetNodes=2))
    assert doc["replacesMachines"] is False and doc["deletionsCertain"] is True
    predicted = {d["node"] for d in doc["deletes"]}
    assert len(predicted) == 3 and predicted <= before

    scenario.patch_spec(targetNodes=2)
    scenario.wait_converged(2)
    nodes = scenario.nodes()
    assert before - {n["metadata"]["name"] for n in nodes} == predicted
    assert {z["zone"]: z["after"] for z in doc["zones"] if z["after"]} == dict(zones_of(nodes))


def test_plan_predicts_the_rollout_of_a_changed_profile(
    scenario: Scenario, kube: Kube, tmp_path: Path
) -> None:
    scenario.make_provider()
    rollout = {
        "deletion": {"criteria": "OldestFirst"},
        "placement": {"zones": [{"name": "zone-a"}, {"name": "zone-b"}, {"name": "zone-c"}]},
        "rollout": {"maxSurge": 1, "maxUnavailable": 0},
    }
    scenario.make_cluster(targetNodes=3, policies=rollout)
    scenario.wait_converged(3)
    before = {n["metadata"]["name"] for n in scenario.nodes()}
    profile = {**scenario.nc()["spec"]["profile"], "labels": {"team": "web"}}
    path = changed_manifest(scenario, tmp_path, profile=profile)

    text = plugin(kube, "plan", "-f", str(path))
    assert text.returncode == 2, text.stderr
    first = text.stdout.splitlines()[0]
    assert first.startswith("Replaces existing machines: yes, 3 of 3 nodes: the profile changes")
    assert "(maxSurge 1, maxUnavailable 0)" in first
    doc = planned(kube, path)
    assert {d["node"] for d in doc["deletes"]} == before
    assert doc["creates"] == 3 and len(doc["batches"]) == 4

    generation = scenario.nc()["metadata"]["generation"]
    kube.apply(yaml.safe_load(path.read_text()))
    scenario.wait_state("Deployed", timeout=120)
    assert scenario.nc()["metadata"]["generation"] == generation + 1
    scenario.wait_converged(3, timeout=120)
    nodes = scenario.nodes()
    assert not before & {n["metadata"]["name"] for n in nodes}
    assert {z["zone"]: z["after"] for z in doc["zones"] if z["after"]} == dict(zones_of(nodes))


def test_describe_shows_the_cluster_as_a_tree_and_usage_delegates(
    scenario: Scenario, kube: Kube
) -> None:
    scenario.make_provider()
    scenario.make_cluster()
    scenario.wait_converged(3)

    proc = plugin(kube, "describe", "workers", "-n", scenario.ns)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.splitlines()[0] == f"NodeCluster {scenario.ns}/workers  Deployed  3/3 ready " + (
        "(target 3, min 1, max 10)"
    )
    assert "\x1b[" not in out  # not a terminal: no colour
    for n in scenario.nodes():
        zone = n["status"]["zone"]
        name = n["metadata"]["name"]
        # Under its zone's branch, with its state and provider id.
        zone_at = out.index(f"── {zone}  ")
        line = next(ln for ln in out.splitlines() if f"── {name}  " in ln)
        assert out.index(line) > zone_at
        assert f"{name}  Running  ready  " in line and n["status"]["providerId"] in line
    assert "Conditions:\n  Ready " in out
    assert "Scaling: scaling from 0 to 3 nodes" in out
    coloured = plugin(kube, "describe", "workers", "-n", scenario.ns, "--color", "always")
    assert "\x1b[32mDeployed\x1b[0m" in coloured.stdout

    usage = plugin(kube, "usage", "-n", scenario.ns, "-o", "json")
    assert usage.returncode == 0, usage.stderr
    assert {r["cluster"] for r in json.loads(usage.stdout)["rows"]} <= {"workers"}

    missing = plugin(kube, "describe", "nope", "-n", scenario.ns)
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"error: NodeCluster {scenario.ns}/nope not found")


def test_operation_verbs_wait_for_the_end_and_exit_by_it(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider()
    scenario.make_cluster()
    scenario.wait_converged(3)

    out = plugin(kube, "scale-out", "workers", "--by", "2", "-n", scenario.ns)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "created (ScaleOut by 2)" in out.stdout
    assert "\nSucceeded" in out.stdout and "  target: 3 -> 5" in out.stdout
    scenario.wait_converged(5)

    victim = sorted(n["metadata"]["name"] for n in scenario.nodes())[0]
    removed = plugin(kube, "remove", "workers", victim, "-n", scenario.ns)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert f"  {victim}: OK" in removed.stdout
    scenario.wait_converged(4)
    assert victim not in {n["metadata"]["name"] for n in scenario.nodes()}

    checked = plugin(kube, "check", "workers", "-n", scenario.ns)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(": OK") == 4

    # Below minNodes without bestEffort: the operation fails, and so does the command.
    failed = plugin(kube, "scale-in", "workers", "--by", "10", "-n", scenario.ns)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "\nFailed: " in failed.stdout
    ops = kube.items("nodeclusteroperation", scenario.ns)
    assert len(ops) == 4
    assert all(
        o["metadata"]["labels"]["app.kubernetes.io/created-by"] == "kubectl-nodecluster"
        for o in ops
    )


@pytest.fixture
def plugin_user(kube: Kube, scenario: Scenario, tmp_path: Path) -> Any:
    """A ServiceAccount bound in the test's namespace to the chart's plugin role only."""
    helm = (
        str(kube.control_plane.bin_dir / "helm")
        if kube.control_plane is not None
        else chart.find_helm()
    )
    assert helm, "helm not found"
    release = f"p{scenario.ns[-20:]}"
    rendered = chart.render(
        helm, "--set", "rbac.pluginRole.create=true", release=release, include_crds=False
    )
    role = next(
        d
        for d in yaml.safe_load_all(rendered)
        if d and d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("-plugin-user")
    )
    kube.apply(role)
    kube.kubectl("create", "serviceaccount", "someone", "-n", scenario.ns)
    kube.kubectl(
        "create",
        "rolebinding",
        "someone",
        f"--clusterrole={role['metadata']['name']}",
        f"--serviceaccount={scenario.ns}:someone",
        "-n",
        scenario.ns,
    )
    try:
        yield service_account_kube(kube, "someone", scenario.ns, tmp_path / "someone.kubeconfig")
    finally:
        kube.kubectl("delete", "clusterrole", role["metadata"]["name"], check=False)


def test_a_user_with_only_the_plugin_role_can_use_every_verb(
    scenario: Scenario, kube: Kube, plugin_user: Kube, tmp_path: Path
) -> None:
    scenario.make_provider()
    scenario.make_cluster()
    scenario.wait_converged(3)
    config = plugin_user.kubeconfig

    described = plugin(kube, "describe", "workers", "-n", scenario.ns, kubeconfig=config)
    assert described.returncode == 0, described.stderr
    assert "Scaling: scaling from 0 to 3 nodes" in described.stdout

    path = changed_manifest(scenario, tmp_path, targetNodes=4)
    plan = plugin(kube, "plan", "-f", str(path), kubeconfig=config)
    assert plan.returncode == 2, plan.stderr
    # Bound in one namespace, the user cannot read the cluster-scoped provider: said.
    assert f"NodeProvider {scenario.provider}: not readable with your credentials" in plan.stdout

    out = plugin(kube, "scale-out", "workers", "--by", "1", "-n", scenario.ns, kubeconfig=config)
    assert out.returncode == 0, out.stdout + out.stderr
    scenario.wait_converged(4)

    # Read and operations only: the plugin's role changes nothing directly.
    can_i = plugin_user.kubectl(
        "auth", "can-i", "patch", "nodeclusters", "-n", scenario.ns, check=False
    )
    assert can_i.stdout.strip() == "no"
