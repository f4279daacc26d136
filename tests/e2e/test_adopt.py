"""Adopt on a real API server with the simulator: machines made directly in the
simulator's file, without the operator, become nodes of a cluster (the samples' dry run
first, then the adoption), and the audit finds each exactly once and nothing made for
them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kube import Kube, wait_audited
from scenario import Operations, Scenario, operation_sample

from nodecluster.providers.base import MachineSpec
from nodecluster.providers.identity import INSTALLATION_TAG, NODE_TAG, MachineIdentity
from nodecluster.providers.simulator import Inventory

MIGRATE = {"migrate-to": "workers"}
"""The tags the samples select by."""


@pytest.fixture
def ops(scenario: Scenario) -> Operations:
    return Operations(scenario)


def by_hand(
    scenario: Scenario,
    name: str,
    zone: str,
    machine_type: str = "small",
    tags: dict[str, str] | None = None,
    cluster: str = "",
) -> str:
    """A machine written into the provider's file as its owner would make it; its id."""
    inventory = Inventory(scenario.inventory.path)
    try:
        spec = MachineSpec(
            name=name, cluster=cluster, machine_type=machine_type, labels=MIGRATE, tags=tags or {}
        )
        row, _ = inventory.create(spec, 2, zone, 0.0, (None, None, None))
        return str(row["provider_id"])
    finally:
        inventory.close()


def machines_by_id(scenario: Scenario) -> dict[str, dict[str, Any]]:
    return {m["provider_id"]: m for m in scenario.inventory.machines()}


def test_machines_made_by_hand_are_previewed_then_adopted_once(
    scenario: Scenario, ops: Operations
) -> None:
    scenario.make_provider()
    scenario.make_cluster(targetNodes=2)
    scenario.wait_converged(2)
    free = [by_hand(scenario, f"hand-{zone}", zone) for zone in ("zone-a", "zone-b")]
    large = by_hand(scenario, "hand-large", "zone-a", machine_type="large")
    theirs = MachineIdentity("prod", "team-b", "db", "db-x", "uid-x").tags()
    owned = by_hand(scenario, "hand-owned", "zone-c", tags=theirs, cluster="team-b/db")

    preview = ops.wait(ops.run("adopt-dry-run"))["status"]

    assert preview["message"].startswith("dry run: would adopt 2 of 4 machines matched")
    verdicts = {m["providerId"]: m for m in preview["adoption"]["machines"]}
    assert {p: verdicts[p]["verdict"] for p in free} == dict.fromkeys(free, "Adopt")
    assert "machine type 'large'" in verdicts[large]["reason"]
    assert "installation 'prod'" in verdicts[owned]["reason"]
    assert scenario.nc()["spec"]["targetNodes"] == 2
    assert all(json.loads(machines_by_id(scenario)[p]["tags"]) == {} for p in free)

    done = ops.wait(ops.run("adopt"))["status"]

    assert done["message"] == "adopted 2 of 2 machines; target 2 -> 4"
    scenario.wait_converged(4)
    nodes = {n["status"]["providerId"]: n for n in scenario.nodes()}
    machines = machines_by_id(scenario)
    for provider_id in free:
        node = nodes[provider_id]["metadata"]["name"]
        tags = json.loads(machines[provider_id]["tags"])
        assert tags[NODE_TAG] == node
        assert tags[INSTALLATION_TAG]
        assert nodes[provider_id]["metadata"]["annotations"]["nodecluster.io/adopt-machine"] == (
            provider_id
        )
    # The refused machines are as their owners left them.
    assert json.loads(machines[owned]["tags"]) == theirs
    assert json.loads(machines[large]["tags"]) == {}
    # Nothing was made or deleted for the adopted machines, then or later.
    made = [c for c in scenario.inventory.calls("create") if not c["name"].startswith("hand-")]

    def audit() -> str | None:
        if len(made) != 2:
            return f"{len(made)} machines created, not the 2 of the cluster's first deploy"
        if scenario.inventory.calls("delete"):
            return f"machines deleted: {scenario.inventory.calls('delete')}"
        missing = set(free) - set(machines_by_id(scenario))
        return f"adopted machines gone: {missing}" if missing else None

    wait_audited("no machine made or deleted", audit, timeout=10)
    described = scenario.kube.kubectl(
        "describe", "nodeclusteroperation", "workers-adopt", "-n", scenario.ns
    ).stdout
    assert "OperationSucceeded" in described


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"adopt": None}, "Adopt needs spec.adopt"),
        ({"adopt": {"providerIds": ["i-1"], "tags": {"a": "b"}}}, "exactly one of providerIds"),
        ({"action": "Check", "dryRun": True, "adopt": None}, "spec.dryRun is only supported"),
    ],
    ids=["no-selection", "both", "dry-run-elsewhere"],
)
def test_the_api_server_refuses_a_malformed_adopt(
    scenario: Scenario, kube: Kube, spec: dict[str, Any], message: str
) -> None:
    op = operation_sample("adopt")
    op["metadata"].update(name="malformed", namespace=scenario.ns)
    op["spec"].update(spec)
    op["spec"] = {k: v for k, v in op["spec"].items() if v is not None}

    proc = kube.apply(op, check=False)

    assert proc.returncode != 0, "the API server accepted it"
    assert message in proc.stderr, proc.stderr
