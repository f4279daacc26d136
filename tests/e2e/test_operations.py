"""NodeClusterOperations: one-off, auditable actions, from the samples."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import pytest
from kube import Kube, wait_for
from scenario import Operations, Scenario


@pytest.fixture
def ops(scenario: Scenario) -> Operations:
    return Operations(scenario)


def _names(sc: Scenario) -> set[str]:
    return {n["metadata"]["name"] for n in sc.nodes()}


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_scale_out_changes_the_target_and_waits_for_convergence(
    scenario: Scenario, ops: Operations
) -> None:
    scenario.make_provider()
    scenario.make_cluster(targetNodes=2)
    scenario.wait_converged(2)

    name = ops.run("scale-out", count=2)
    op = ops.wait(name)

    st = op["status"]
    assert (st["previousTarget"], st["newTarget"]) == (2, 4)
    assert _time(st["startTime"]) <= _time(st["completionTime"])
    scenario.wait_converged(4)
    # Where people look: `kubectl describe` of the operation and of its cluster (which
    # select Events by the object's uid) show how it ended.
    for kind, obj in (("nodeclusteroperation", name), ("nodecluster", "workers")):
        described = scenario.kube.kubectl("describe", kind, obj, "-n", scenario.ns).stdout
        assert "OperationSucceeded" in described, f"kubectl describe {kind}: {described}"


@pytest.mark.parametrize(
    ("scaling", "action", "count", "target"),
    [
        pytest.param({"adjustmentType": "ExactCapacity"}, "scale-in", 1, 1, id="exact"),
        pytest.param(
            {"adjustmentType": "ChangeInPercentage", "minStep": 2},
            "scale-out",
            10,
            6,
            id="percent-min-step",
        ),
        pytest.param({"bestEffort": True}, "scale-out", 50, 10, id="best-effort-clamps"),
    ],
)
def test_scaling_policy_adjustments(
    scenario: Scenario,
    ops: Operations,
    scaling: dict[str, object],
    action: str,
    count: int,
    target: int,
) -> None:
    scenario.make_provider()
    scenario.make_cluster(targetNodes=4, minNodes=0, maxNodes=10, policies={"scaling": scaling})
    scenario.wait_converged(4)

    op = ops.wait(ops.run(action, count=count))

    assert op["status"]["newTarget"] == target
    scenario.wait_converged(target)


def test_scale_beyond_max_without_best_effort_is_refused(
    scenario: Scenario, ops: Operations
) -> None:
    scenario.make_provider()
    scenario.make_cluster(targetNodes=2, maxNodes=3)
    scenario.wait_converged(2)

    op = ops.wait(ops.run("scale-out", count=5), phase="Failed")

    assert "bestEffort" in op["status"]["message"]
    assert scenario.nc()["spec"]["targetNodes"] == 2


def test_operations_run_in_creation_order_and_respect_the_cooldown(
    scenario: Scenario, ops: Operations
) -> None:
    scenario.make_provider()
    scenario.make_cluster(targetNodes=1, policies={"scaling": {"cooldownSeconds": 3}})
    scenario.wait_converged(1)

    first = ops.run("scale-out", name="first", count=1)
    second = ops.run("scale-out", name="second", count=1)

    a, b = ops.wait(first), ops.wait(second, timeout=120)
    assert _time(b["status"]["startTime"]) >= _time(a["status"]["completionTime"])
    assert (a["status"]["newTarget"], b["status"]["newTarget"]) == (2, 3)
    scenario.wait_converged(3)


def test_remove_nodes_by_name_lowers_the_target(scenario: Scenario, ops: Operations) -> None:
    scenario.make_provider()
    scenario.make_cluster(targetNodes=3, minNodes=0)
    scenario.wait_converged(3)
    victim = sorted(_names(scenario))[1]

    op = ops.wait(ops.run("remove-nodes", nodes={"names": [victim]}))

    assert op["status"]["nodes"] == [{"name": victim, "result": "OK", "message": "removed"}]
    scenario.wait_converged(2)
    assert victim not in _names(scenario)
    assert scenario.nc()["spec"]["targetNodes"] == 2


def test_replace_nodes_by_provider_id_keeps_the_count(scenario: Scenario, ops: Operations) -> None:
    scenario.make_provider()
    scenario.make_cluster(targetNodes=3)
    scenario.wait_converged(3)
    victim = sorted(scenario.nodes(), key=lambda n: n["metadata"]["name"])[0]

    ops.wait(ops.run("replace-nodes", nodes={"providerIds": [victim["status"]["providerId"]]}))

    wait_for(
        "replacement",
        lambda: victim["metadata"]["name"] not in _names(scenario) and len(_names(scenario)) == 3,
    )
    scenario.wait_converged(3)


def test_stop_and_start_nodes_by_label(scenario: Scenario, ops: Operations, kube: Kube) -> None:
    scenario.make_provider()
    scenario.make_cluster(targetNodes=3)
    scenario.wait_converged(3)
    chosen = sorted(_names(scenario))[0]
    kube.kubectl("label", "clusternode", chosen, "-n", scenario.ns, "role=spare")

    op = ops.wait(ops.run("stop-nodes", nodes={"selector": {"matchLabels": {"role": "spare"}}}))
    assert [r["name"] for r in op["status"]["nodes"]] == [chosen]
    power = {m["node"]: m["power"] for m in scenario.inventory.machines(scenario.tag())}
    assert power[chosen] == "Stopped"
    assert sorted(p for n, p in power.items() if n != chosen) == ["Running", "Running"]
    scenario.wait_state("Deployed")

    ops.wait(ops.run("start-nodes", nodes={"selector": {"matchLabels": {"role": "spare"}}}))
    power = {m["node"]: m["power"] for m in scenario.inventory.machines(scenario.tag())}
    assert set(power.values()) == {"Running"}


def test_reboot_nodes_by_address(scenario: Scenario, ops: Operations) -> None:
    scenario.make_provider()
    scenario.make_cluster(targetNodes=2)
    scenario.wait_converged(2)
    node = sorted(scenario.nodes(), key=lambda n: n["metadata"]["name"])[0]
    address = node["status"]["addresses"][0]["address"]

    op = ops.wait(ops.run("reboot-nodes", nodes={"addresses": [address]}))

    assert op["status"]["nodes"][0]["name"] == node["metadata"]["name"]
    after = next(n for n in scenario.nodes() if n["metadata"]["name"] == node["metadata"]["name"])
    assert after["status"]["lastRebootTime"]
    assert any(c["op"] == "reboot" for c in scenario.inventory.calls("reboot"))


def test_check_and_recover(scenario: Scenario, ops: Operations) -> None:
    scenario.make_provider()
    scenario.make_cluster(targetNodes=3, policies={"health": {"pollIntervalSeconds": 3600}})
    scenario.wait_converged(3)
    victim = sorted(_names(scenario))[0]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "nodecluster",
            "simulator",
            "fail",
            str(scenario.inventory.path),
            victim,
        ],
        check=True,
    )

    check = ops.wait(ops.run("check"))
    results = {r["name"]: r["result"] for r in check["status"]["nodes"]}
    assert results[victim] == "Error"
    assert sorted(results.values()).count("OK") == 2

    recover = ops.wait(ops.run("recover"))
    assert any(
        r["name"] == victim and "recreated" in r["message"] for r in recover["status"]["nodes"]
    )
    wait_for(
        "victim replaced", lambda: victim not in _names(scenario) and len(_names(scenario)) == 3
    )


def test_operation_on_a_missing_cluster_fails_clearly(scenario: Scenario, ops: Operations) -> None:
    op = ops.wait(ops.run("scale-out", cluster="nowhere"), phase="Failed")
    assert "'nowhere' does not exist" in op["status"]["message"]


def test_naming_missing_nodes_fails_and_changes_nothing(
    scenario: Scenario, ops: Operations
) -> None:
    scenario.make_provider()
    scenario.make_cluster(targetNodes=2)
    scenario.wait_converged(2)
    before = _names(scenario)

    op = ops.wait(
        ops.run("remove-nodes", nodes={"names": ["workers-nope1", sorted(before)[0]]}),
        phase="Failed",
    )

    assert "workers-nope1" in op["status"]["message"]
    assert _names(scenario) == before
    assert scenario.nc()["spec"]["targetNodes"] == 2


def test_operation_spec_is_immutable(scenario: Scenario, ops: Operations, kube: Kube) -> None:
    name = ops.run("check", cluster="whatever")
    proc = kube.kubectl(
        "patch",
        "nodeclusteroperation",
        name,
        "-n",
        scenario.ns,
        "--type=merge",
        "-p",
        '{"spec":{"action":"Recover"}}',
        check=False,
    )
    assert proc.returncode != 0
    assert "immutable" in proc.stderr
