"""Lifecycle hooks on a real API server: completed with `kubectl annotate`, as a Job would.

What only a real server shows: the hook list and the node's wait survive the schema
(nothing pruned), the CEL rule refuses duplicate names, the annotation reaches the
operator through a real watch, and a Terminate hook's timeout runs in real time before a
deleted cluster's machine goes.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kube import Kube, sample, wait_for
from scenario import Scenario


def _waiting(sc: Scenario) -> list[dict[str, Any]]:
    return [n for n in sc.nodes() if (n.get("status") or {}).get("lifecycleHook")]


def _hook_condition(node: dict[str, Any]) -> dict[str, Any]:
    conditions = (node.get("status") or {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == "LifecycleHook"), {})


def test_a_launch_hook_is_completed_by_an_annotation(scenario: Scenario, kube: Kube) -> None:
    hooks = sample("nodecluster-hooks.yaml")["spec"]["policies"]["lifecycleHooks"]
    scenario.make_provider()
    scenario.make_cluster(targetNodes=1, policies={"lifecycleHooks": hooks})

    waiting = wait_for("the node waiting on configure", lambda: _waiting(scenario), timeout=60)
    node = waiting[0]
    name = node["metadata"]["name"]
    assert node["status"]["lifecycleHook"]["name"] == "configure"
    assert node["status"]["ready"] is False
    hook = _hook_condition(node)
    assert (hook["status"], hook["reason"]) == ("True", "LaunchHookWait")
    status = wait_for(
        "hookWaits in the cluster's status",
        lambda: (st := scenario.nc().get("status") or {}).get("hookWaits") and st,
    )
    assert status["hookWaits"] == {"configure": 1}
    assert status.get("readyNodes", 0) == 0
    columns = kube.kubectl("get", "clusternode", name, "-n", scenario.ns).stdout
    assert "HOOK" in columns and "configure" in columns

    kube.kubectl(
        "annotate",
        f"clusternode/{name}",
        "-n",
        scenario.ns,
        "hooks.nodecluster.io/configure=Continue",
    )

    scenario.wait_converged(1, timeout=60)
    done = _hook_condition(scenario.nodes()[0])
    assert (done["status"], done["reason"]) == ("False", "LaunchHooksCompleted")
    assert "hookWaits" not in (scenario.nc().get("status") or {})

    # The sample's Terminate hook (600 s) holds the deleted cluster's machine until its
    # annotation, not for its whole timeout.
    kube.kubectl("delete", "nodecluster/workers", "-n", scenario.ns, "--wait=false")
    wait_for("the node waiting on backup", lambda: _waiting(scenario), timeout=30)
    assert scenario.nc() != {}
    kube.kubectl(
        "annotate", f"clusternode/{name}", "-n", scenario.ns, "hooks.nodecluster.io/backup=Continue"
    )
    wait_for("the NodeCluster gone", lambda: scenario.nc() == {}, timeout=30)
    assert scenario.inventory.names(scenario.tag()) == set()


def test_duplicate_hook_names_are_refused_by_the_server(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider()
    twice = [{"name": "a", "transition": "Launch"}, {"name": "a", "transition": "Terminate"}]
    nc = scenario.cluster(policies={"lifecycleHooks": twice})
    proc = kube.kubectl("apply", "-f", "-", input=json.dumps(nc), check=False)
    assert proc.returncode != 0
    assert "hook names must be unique" in proc.stderr


def test_a_terminate_hook_times_out_and_the_deleted_cluster_goes(
    scenario: Scenario, kube: Kube
) -> None:
    hooks = [{"name": "backup", "transition": "Terminate", "timeoutSeconds": 30}]
    scenario.make_provider()
    scenario.make_cluster(targetNodes=1, policies={"lifecycleHooks": hooks})
    scenario.wait_converged(1)
    machine = scenario.inventory.names(scenario.tag())

    deleted = time.monotonic()
    kube.kubectl("delete", "nodecluster/workers", "-n", scenario.ns, "--wait=false")

    node = wait_for("the node waiting on backup", lambda: _waiting(scenario), timeout=30)[0]
    assert node["status"]["lifecycleHook"]["transition"] == "Terminate"
    assert _hook_condition(node)["reason"] == "TerminateHookWait"
    assert scenario.inventory.names(scenario.tag()) == machine  # the machine waits
    wait_for("the NodeCluster gone", lambda: scenario.nc() == {}, timeout=90)
    assert time.monotonic() - deleted >= 29  # the hook's 30 s ran out first (whole seconds)
    assert scenario.inventory.names(scenario.tag()) == set()
    events = [
        e for e in kube.items("events", scenario.ns) if e["reason"] == "LifecycleHookTimedOut"
    ]
    assert events and "backup: Abandon (timed out)" in events[0]["message"]
