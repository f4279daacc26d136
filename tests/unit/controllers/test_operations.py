"""NodeClusterOperations in-process: what every operation shares, and the helpers of the
`test_operation_*.py` files (one per group of actions).

The real controllers run on FakeKube and the simulator (see conftest.py). An operation is
created through the API, so the harness sees its watch event, and a test waits for the
phase it expects; what it then asserts is what a person would look at: the operation's
status (phase, message, a result per node), its cluster's spec and status, the machines
in the simulator's inventory, and the Events on the operation and on its cluster.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, get_args

import pytest
from conftest import provider_body

from nodecluster.api.operation import OperationAction
from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS, OPERATIONS
from nodecluster.controllers.operation import ACTIONS
from nodecluster.providers.identity import NODE_TAG
from nodecluster.providers.simulator import Inventory, inventory_rows
from nodecluster.testing import FakeKube, Harness

NS = "team-a"
API_VERSION = "nodecluster.io/v1alpha1"
DONE = ("Succeeded", "Failed")


# -- building the world ---------------------------------------------------------------------


def cluster_body(name: str = "web", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "NodeCluster",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "providerRef": {"name": "sim"},
            "profile": {"machineType": "small"},
            "targetNodes": 3,
        },
    }
    body["spec"].update(spec)
    return body


def operation_body(name: str, action: str, cluster: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "NodeClusterOperation",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"clusterName": cluster, "action": action, **spec},
    }


async def deploy(
    fake: FakeKube,
    harness: Harness,
    inventory: Path,
    provider: dict[str, Any] | None = None,
    **spec: Any,
) -> list[str]:
    """A NodeProvider on the simulator and a NodeCluster `web` on it, deployed; its nodes."""
    fake.add(NODEPROVIDERS, provider_body(inventory, **(provider or {})))
    await fake.create(NODECLUSTERS, NS, cluster_body(**spec))
    await converged(fake, harness)
    return node_names(fake)


async def operate(fake: FakeKube, name: str, action: str, **spec: Any) -> None:
    """Create an operation through the API (the harness sees it as a watch event)."""
    await fake.create(OPERATIONS, NS, operation_body(name, action, **spec))


async def finished(
    fake: FakeKube, harness: Harness, name: str, within: float = 600.0
) -> dict[str, Any]:
    """Wait until the operation is over; its status."""
    await harness.wait_for(lambda: phase(fake, name) in DONE, within, f"{name} ending")
    return op_status(fake, name)


async def converged(fake: FakeKube, harness: Harness, within: float = 600.0) -> None:
    """Wait until the cluster is Deployed for its current spec."""
    await harness.wait_for(lambda: is_deployed(fake), within, "the cluster being Deployed")


# -- looking ---------------------------------------------------------------------------------


def op_status(fake: FakeKube, name: str) -> dict[str, Any]:
    body = fake.stored(OPERATIONS, NS, name)
    return (body or {}).get("status", {})


def phase(fake: FakeKube, name: str) -> str | None:
    return op_status(fake, name).get("phase")


def statuses(fake: FakeKube, name: str) -> list[dict[str, Any]]:
    """Every status the operation has had, in order (from the fake's history of changes)."""
    seen: list[dict[str, Any]] = []
    for change in fake.history:
        if change.kind == OPERATIONS.plural and change.body["metadata"]["name"] == name:
            status = change.body.get("status", {})
            if not seen or seen[-1] != status:
                seen.append(status)
    return seen


def first_status(fake: FakeKube, name: str, in_phase: str) -> dict[str, Any]:
    """The first status the operation wrote in a phase."""
    return next(s for s in statuses(fake, name) if s.get("phase") == in_phase)


def results(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The per-node results of an operation's status: name -> (result, message)."""
    return {r["name"]: (r["result"], r.get("message", "")) for r in status.get("nodes", [])}


def cluster(fake: FakeKube, name: str = "web") -> dict[str, Any]:
    return fake.stored(NODECLUSTERS, NS, name) or {}


def target(fake: FakeKube) -> int:
    return int(cluster(fake)["spec"]["targetNodes"])


def condition(fake: FakeKube, ctype: str) -> dict[str, Any]:
    conditions = cluster(fake).get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == ctype), {})


def is_deployed(fake: FakeKube) -> bool:
    body = cluster(fake)
    status = body.get("status", {})
    return (
        status.get("state") == "Deployed"
        and status.get("observedGeneration") == body["metadata"]["generation"]
        and status.get("currentNodes") == body["spec"]["targetNodes"]
    )


def nodes(fake: FakeKube) -> dict[str, dict[str, Any]]:
    """The cluster's ClusterNodes that are not being deleted, by name."""
    return {
        n["metadata"]["name"]: n
        for n in fake.objects(CLUSTERNODES, NS)
        if not n["metadata"].get("deletionTimestamp")
    }


def node_names(fake: FakeKube) -> list[str]:
    return sorted(nodes(fake))


def node(fake: FakeKube, name: str) -> dict[str, Any]:
    return fake.stored(CLUSTERNODES, NS, name) or {}


def machines(inventory: Path, clock: LoopClock) -> dict[str, str]:
    """The simulator's machines not being deleted, as of the operator's clock: node -> state."""
    rows = inventory_rows(inventory, now=clock.now().timestamp())
    return {m["node"]: m["state"] for m in rows if m["state"] != "Deleting"}


def break_machine(inventory: Path, name: str) -> None:
    """The machine fails at the provider (as `nodecluster-operator simulator fail` does)."""
    inv = Inventory(inventory)
    try:
        assert inv.set_failed(name)
    finally:
        inv.close()


def remove_machine(inventory: Path, clock: LoopClock, name: str) -> None:
    """Node `name`'s machine vanishes at the provider, behind the operator's back."""
    inv = Inventory(inventory, now=lambda: clock.now().timestamp())
    try:
        machine = next(r["name"] for r in inv.list() if json.loads(r["tags"]).get(NODE_TAG) == name)
        assert inv.mark_deleting(machine, latency=0.0) is None
    finally:
        inv.close()


def events(fake: FakeKube, about: str, reason: str) -> list[str]:
    """The messages of the Events about an object with a reason."""
    return [e["message"] for e in fake.events_about(about, reason=reason)]


# -- what every operation shares ---------------------------------------------------------------


def test_every_action_has_a_handler() -> None:
    assert set(ACTIONS) == set(get_args(OperationAction))


async def test_an_operation_on_a_missing_cluster_fails_and_says_so(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await operate(fake, "scale-ghost", "ScaleOut", cluster="ghost", count=2)

    status = await finished(fake, harness, "scale-ghost")

    assert status["phase"] == "Failed"
    assert status["message"] == "NodeCluster 'ghost' does not exist"
    assert status["startTime"] and status["completionTime"]
    assert status.get("nodes", []) == []
    assert fake.objects(NODECLUSTERS, NS) == []
    assert events(fake, "scale-ghost", "OperationFailed") == [
        "ScaleOut: NodeCluster 'ghost' does not exist"
    ]
    assert fake.events_about("scale-ghost")[0]["type"] == "Warning"


async def test_an_operation_on_a_terminated_cluster_fails_and_changes_nothing(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    await deploy(fake, harness, inventory)
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"desiredState": "Terminated"}})
    await harness.wait_for(lambda: machines(inventory, clock) == {}, what="machines gone")
    generation = cluster(fake)["metadata"]["generation"]

    await operate(fake, "scale-out", "ScaleOut", count=2)
    status = await finished(fake, harness, "scale-out")

    assert status["phase"] == "Failed"
    assert status["message"] == "NodeCluster 'web' is terminating"
    assert target(fake) == 3
    assert cluster(fake)["metadata"]["generation"] == generation
    assert events(fake, "web", "OperationFailed") == [
        "scale-out (ScaleOut): NodeCluster 'web' is terminating"
    ]


async def test_an_operation_on_a_cluster_being_deleted_fails(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    # Machines take a minute to go, so the NodeCluster stays, marked, while the operation runs.
    names = await deploy(
        fake, harness, inventory, provider={"config": {"deleteLatencySeconds": 60}}
    )
    await fake.delete(NODECLUSTERS, NS, "web")
    assert cluster(fake)["metadata"]["deletionTimestamp"]

    await operate(fake, "replace", "ReplaceNodes", nodes={"names": names[:1]})
    status = await finished(fake, harness, "replace", within=10)

    assert status["phase"] == "Failed"
    assert status["message"] == "NodeCluster 'web' is terminating"
    assert status.get("nodes", []) == []
    assert fake.stored(NODECLUSTERS, NS, "web") is not None, "still being deleted"


async def test_operations_of_one_cluster_run_one_at_a_time_in_creation_order(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory, provider={"config": {"powerLatencySeconds": 30}})
    # Named against their creation order: the order is by creation time, not by name.
    await operate(fake, "b-stop", "StopNodes", nodes={"names": names[:1]})
    await harness.wait_for(lambda: phase(fake, "b-stop") == "Running")
    # creationTimestamp has whole seconds: let the clock move so the two creations differ.
    await asyncio.sleep(2)
    await operate(fake, "a-check", "Check")

    seen: list[tuple[str | None, str | None]] = []

    def second_over() -> bool:
        seen.append((phase(fake, "b-stop"), phase(fake, "a-check")))
        return phase(fake, "a-check") in DONE

    await harness.wait_for(second_over, what="a-check ending")

    assert ("Running", None) in seen, "the second operation waited"
    assert all(second is None for first, second in seen if first not in DONE)
    first, second = op_status(fake, "b-stop"), op_status(fake, "a-check")
    assert first["phase"] == second["phase"] == "Succeeded"
    assert second["startTime"] >= first["completionTime"]
    assert results(second)[names[0]] == ("OK", "machine is Stopped")


async def test_an_operation_whose_status_write_fails_is_retried_and_still_ends(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory)
    fault = fake.fail("patch_status", "nodeclusteroperations", 500)

    await operate(fake, "check", "Check")
    status = await finished(fake, harness, "check")

    assert fault.fired == 1
    outcomes = [c.status for c in fake.calls_of("patch_status", "nodeclusteroperations", "check")]
    assert outcomes == [500, 200, 200], "failed, the failure written, then the retry"
    degraded = [c["status"] for s in statuses(fake, "check") for c in s.get("conditions", [])]
    assert degraded == ["True", "False"], "said while it failed, cleared with the retry"
    assert status["phase"] == "Succeeded"
    assert sorted(results(status)) == names
    assert len(events(fake, "check", "OperationSucceeded")) == 1
    assert len(events(fake, "web", "OperationSucceeded")) == 1


async def test_a_finished_operation_is_announced_on_itself_and_on_its_cluster(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory)

    await operate(fake, "check", "Check")
    await finished(fake, harness, "check")

    on_op = fake.events_about("check", reason="OperationSucceeded")
    on_cluster = fake.events_about("web", reason="OperationSucceeded")
    assert [(e["type"], e["message"]) for e in on_op] == [
        ("Normal", "Check: checked 3 nodes, 0 unhealthy")
    ]
    assert on_op[0]["involvedObject"]["kind"] == "NodeClusterOperation"
    assert [(e["type"], e["message"]) for e in on_cluster] == [
        ("Normal", "check (Check): checked 3 nodes, 0 unhealthy")
    ]
    assert on_cluster[0]["involvedObject"]["kind"] == "NodeCluster"
    assert on_cluster[0]["involvedObject"]["namespace"] == NS
    # `kubectl describe` selects the Events of an object by its uid too.
    assert (
        on_op[0]["involvedObject"]["uid"] == fake.stored(OPERATIONS, NS, "check")["metadata"]["uid"]
    )
    assert on_cluster[0]["involvedObject"]["uid"] == cluster(fake)["metadata"]["uid"]
    assert on_cluster[0]["involvedObject"]["resourceVersion"]


async def test_a_timed_out_operation_is_announced_on_its_cluster_by_uid(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(
        fake, harness, inventory, provider={"config": {"powerLatencySeconds": 600}}
    )

    await operate(fake, "stop", "StopNodes", nodes={"names": names[:1]}, timeoutSeconds=30)
    assert (await finished(fake, harness, "stop"))["phase"] == "Failed"

    [event] = fake.events_about("web", reason="OperationFailed")
    assert event["involvedObject"]["uid"] == cluster(fake)["metadata"]["uid"]


async def test_a_finished_operation_is_not_run_again(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory)
    await operate(fake, "check", "Check")
    status = await finished(fake, harness, "check")
    gets = len(fake.calls_of("list", "nodeclusteroperations"))

    # A change of the cluster wakes its operations' queue only while one is unfinished.
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 4}})
    await converged(fake, harness)
    await harness.idle()

    assert op_status(fake, "check") == status
    assert len(fake.calls_of("list", "nodeclusteroperations")) == gets
    assert len(fake.events_about("check")) == 1


NODE_ACTIONS = ["RemoveNodes", "ReplaceNodes", "StopNodes", "StartNodes", "RebootNodes"]


@pytest.mark.parametrize("nodes", [None, {}, {"names": []}, {"selector": {"matchLabels": {}}}])
@pytest.mark.parametrize("action", NODE_ACTIONS)
async def test_a_node_action_that_names_no_nodes_is_refused_and_changes_nothing(
    fake: FakeKube,
    harness: Harness,
    inventory: Path,
    clock: LoopClock,
    action: str,
    nodes: dict[str, Any] | None,
) -> None:
    # The API server refuses these (a CEL rule); one stored before the rule, or on a
    # server without it, must not act on every node either.
    names = await deploy(fake, harness, inventory)
    spec = {} if nodes is None else {"nodes": nodes}

    await operate(fake, "op", action, **spec)
    status = await finished(fake, harness, "op", within=10)

    assert status["phase"] == "Failed"
    assert status["message"] == (
        f"{action} acts only on the nodes spec.nodes chooses, and it chooses none (give "
        "names, providerIds, addresses or selector.matchLabels): only Check and Recover "
        "act on every node"
    )
    assert node_names(fake) == names
    assert target(fake) == 3
    assert not fake.calls_of("patch", "clusternodes")
    assert not fake.calls_of("delete", "clusternodes")
    assert machines(inventory, clock) == dict.fromkeys(names, "Running")
