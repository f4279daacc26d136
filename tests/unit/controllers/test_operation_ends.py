"""Every operation ends: after `spec.timeoutSeconds` at the latest, and at once (Failed,
nothing changed) when it cannot succeed.

Operations of a cluster run one at a time, so one that waited forever used to block every
later one; these scenarios make one wait too long, or ask what the cluster or its provider
can never do, and check that it fails saying why, and that the next one then runs.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from test_operation_power import stopped
from test_operations import (
    NS,
    cluster,
    deploy,
    events,
    finished,
    first_status,
    machines,
    node_names,
    op_status,
    operate,
    phase,
    results,
    statuses,
    target,
)

from nodecluster.api.operation import NodeClusterOperationSpec
from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import NODECLUSTERS, NODEPROVIDERS
from nodecluster.providers.registry import ProviderRegistry
from nodecluster.testing import FakeKube, Harness
from nodecluster.testing.drivers import DriverFaults, faulty_simulator

NEVER_DONE = {"config": {"powerLatencySeconds": 3600}}
"""Machines take an hour to stop or start: any operation waiting for that times out."""


@pytest.fixture
def registry(faults: DriverFaults) -> ProviderRegistry:
    """`faulty` (the simulator) and `powerless`: the simulator without power control."""
    registry = ProviderRegistry()
    registry.register("faulty", faulty_simulator(faults))
    registry.register("powerless", faulty_simulator(faults, power=False))
    return registry


def seconds_between(status: dict[str, Any]) -> float:
    """From the operation's startTime to its completionTime."""
    start, end = (
        datetime.fromisoformat(status[k].replace("Z", "+00:00"))
        for k in ("startTime", "completionTime")
    )
    return (end - start).total_seconds()


def node_writes(fake: FakeKube) -> int:
    """Patches and deletes of ClusterNodes so far (the operator's and the test's)."""
    return sum(len(fake.calls_of(verb, "clusternodes")) for verb in ("patch", "delete"))


# -- spec.timeoutSeconds ------------------------------------------------------------------------


async def test_a_power_action_that_outlasts_its_timeout_fails_saying_what_it_waited_for(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory, provider=NEVER_DONE)
    # 603 is no multiple of the 5 s poll: the operation must look again at its deadline.
    await operate(fake, "stop", "StopNodes", nodes={"names": names[:2]}, timeoutSeconds=603)
    await harness.wait_for(lambda: phase(fake, "stop") == "Running")

    status = await finished(fake, harness, "stop", within=700)

    assert status["phase"] == "Failed"
    assert status["message"] == "timed out after 603s waiting for 2 of 2 nodes to stop"
    assert 603 <= seconds_between(status) < 604
    assert results(status) == dict.fromkeys(names[:2], ("Error", "timed out; machine is Stopping"))
    assert events(fake, "stop", "OperationFailed") == [
        "StopNodes: timed out after 603s waiting for 2 of 2 nodes to stop"
    ]
    assert fake.events_about("stop", reason="OperationFailed")[0]["type"] == "Warning"
    assert events(fake, "web", "OperationFailed") == [
        "stop (StopNodes): timed out after 603s waiting for 2 of 2 nodes to stop"
    ]


async def test_the_next_operation_runs_once_a_stuck_one_has_timed_out(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory, provider=NEVER_DONE)
    await operate(fake, "stop", "StopNodes", nodes={"names": names[:1]}, timeoutSeconds=60)
    await harness.wait_for(lambda: phase(fake, "stop") == "Running")
    # creationTimestamp has whole seconds: let the clock move so the two creations differ.
    await asyncio.sleep(2)
    await operate(fake, "check", "Check")

    second = await finished(fake, harness, "check", within=120)

    first = op_status(fake, "stop")
    assert first["phase"] == "Failed"
    assert first["message"].startswith("timed out after 60s")
    assert second["phase"] == "Succeeded"
    assert second["startTime"] >= first["completionTime"]


async def test_an_operation_without_a_timeout_ends_after_the_default(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory, provider=NEVER_DONE)

    await operate(fake, "stop", "StopNodes", nodes={"names": names[:1]})
    status = await finished(fake, harness, "stop", within=1900)

    assert status["message"] == "timed out after 1800s waiting for 1 of 1 nodes to stop"
    assert 1800 <= seconds_between(status) < 1801


async def test_a_scale_that_outlasts_its_timeout_fails_and_leaves_the_target_set(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory)
    # From now on machines take an hour to come up.
    await fake.patch(
        NODEPROVIDERS, None, "sim", {"spec": {"config": {"createLatencySeconds": 3600}}}
    )

    await operate(fake, "scale-out", "ScaleOut", count=2, timeoutSeconds=300)
    status = await finished(fake, harness, "scale-out", within=400)

    assert status["phase"] == "Failed"
    assert status["message"] == (
        "timed out after 300s waiting for the cluster to be Ready with 5 nodes (target 3 -> 5)"
    )
    assert 300 <= seconds_between(status) < 301
    assert target(fake) == 5, "a timeout ends the operation; it does not undo its step"


async def test_a_cooldown_longer_than_the_timeout_fails_at_once(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory, policies={"scaling": {"cooldownSeconds": 3600}})
    generation = cluster(fake)["metadata"]["generation"]

    await operate(fake, "scale-out", "ScaleOut", count=1, timeoutSeconds=600)
    status = await finished(fake, harness, "scale-out", within=10)

    assert status["phase"] == "Failed"
    assert status["message"].startswith("the scaling cooldown ends in ")
    assert status["message"].endswith(
        "s, after this operation's timeout (600s): create it once the cooldown is over, "
        "or with a longer spec.timeoutSeconds"
    )
    assert seconds_between(status) == 0
    assert [s.get("phase") for s in statuses(fake, "scale-out")] == [None, "Failed"]
    assert target(fake) == 3
    assert cluster(fake)["metadata"]["generation"] == generation


def test_the_timeout_is_at_least_a_second() -> None:
    with pytest.raises(ValidationError, match="timeoutSeconds"):
        NodeClusterOperationSpec.model_validate(
            {"clusterName": "web", "action": "Check", "timeoutSeconds": 0}
        )


# -- actions that cannot succeed fail at once --------------------------------------------------


async def test_start_nodes_on_a_stopped_cluster_fails_at_once_and_changes_nothing(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory)
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"desiredState": "Stopped"}})
    await harness.wait_for(lambda: cluster(fake).get("status", {}).get("state") == "Stopped")
    writes = node_writes(fake)

    await operate(fake, "start", "StartNodes", nodes={"names": names[:1]})
    status = await finished(fake, harness, "start", within=10)

    assert status["phase"] == "Failed"
    assert status["message"] == (
        "NodeCluster 'web' has desiredState Stopped: it would power the nodes off again; "
        "set desiredState to Running to start them"
    )
    assert seconds_between(status) == 0
    assert node_writes(fake) == writes
    assert machines(inventory, clock) == dict.fromkeys(names, "Stopped")
    assert events(fake, "web", "OperationFailed") == [f"start (StartNodes): {status['message']}"]


async def test_reboot_nodes_on_a_stopped_cluster_fails_at_once(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory)
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"desiredState": "Stopped"}})
    await harness.wait_for(lambda: cluster(fake).get("status", {}).get("state") == "Stopped")
    writes = node_writes(fake)

    await operate(fake, "reboot", "RebootNodes", nodes={"names": names[:1]})
    status = await finished(fake, harness, "reboot", within=10)

    assert status["phase"] == "Failed"
    assert status["message"] == (
        "NodeCluster 'web' has desiredState Stopped: its nodes are off, and only a running "
        "machine can be rebooted"
    )
    assert node_writes(fake) == writes


async def test_rebooting_a_node_held_stopped_fails_at_once(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory)
    await stopped(fake, harness, names[:1])
    writes = node_writes(fake)

    await operate(fake, "reboot", "RebootNodes", nodes={"names": names[:2]})
    status = await finished(fake, harness, "reboot", within=10)

    assert status["phase"] == "Failed"
    assert status["message"] == (
        f"only a running machine can be rebooted, and these nodes are held stopped: {names[0]} "
        "(StartNodes starts them)"
    )
    assert node_writes(fake) == writes
    assert machines(inventory, clock)[names[0]] == "Stopped"


@pytest.mark.parametrize("action", ["StopNodes", "StartNodes", "RebootNodes"])
async def test_a_power_action_on_a_driver_without_power_control_fails_at_once(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock, action: str
) -> None:
    names = await deploy(fake, harness, inventory, provider={"driver": "powerless"})
    writes = node_writes(fake)

    await operate(fake, "power", action, nodes={"names": names[:1]})
    status = await finished(fake, harness, "power", within=10)

    assert status["phase"] == "Failed"
    assert status["message"] == (
        "the driver of NodeProvider 'sim' has no power control: it cannot stop, start or "
        "reboot machines"
    )
    assert seconds_between(status) == 0
    assert node_writes(fake) == writes
    assert machines(inventory, clock) == dict.fromkeys(names, "Running")


async def test_a_power_action_waits_for_an_unavailable_provider_until_its_timeout(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory)
    await fake.patch(NODEPROVIDERS, None, "sim", {"spec": {"driver": "uninstalled"}})
    writes = node_writes(fake)

    await operate(fake, "stop", "StopNodes", nodes={"names": names[:1]}, timeoutSeconds=60)
    status = await finished(fake, harness, "stop", within=100)

    waiting = first_status(fake, "stop", "Pending")
    assert waiting["message"].startswith("waiting for the NodeProvider: NodeProvider 'sim': ")
    assert status["phase"] == "Failed"
    assert status["message"].startswith(
        "timed out after 60s; waiting for the NodeProvider: NodeProvider 'sim': "
        "no driver named 'uninstalled' is installed"
    )
    assert node_writes(fake) == writes


PAUSED_REFUSALS = [
    pytest.param("ScaleOut", {"count": 1}, id="scale-out"),
    pytest.param("ScaleIn", {"count": 1}, id="scale-in"),
    pytest.param("RemoveNodes", {"nodes": {"names": ["FIRST"]}}, id="remove-nodes"),
    pytest.param("ReplaceNodes", {"nodes": {"names": ["FIRST"]}}, id="replace-nodes"),
    pytest.param("Recover", {}, id="recover"),
]


@pytest.mark.parametrize(("action", "spec"), PAUSED_REFUSALS)
async def test_changing_a_paused_cluster_fails_at_once_and_changes_nothing(
    fake: FakeKube,
    harness: Harness,
    inventory: Path,
    clock: LoopClock,
    action: str,
    spec: dict[str, Any],
) -> None:
    names = await deploy(fake, harness, inventory)
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"paused": True}})
    generation = cluster(fake)["metadata"]["generation"]
    writes = node_writes(fake)
    if "nodes" in spec:
        spec = {"nodes": {"names": names[:1]}}

    await operate(fake, "op", action, **spec)
    status = await finished(fake, harness, "op", within=10)

    assert status["phase"] == "Failed"
    assert status["message"] == (
        "NodeCluster 'web' is paused (spec.paused): it acts on nothing until it is unpaused"
    )
    assert seconds_between(status) == 0
    assert target(fake) == 3
    assert cluster(fake)["metadata"]["generation"] == generation
    assert node_writes(fake) == writes
    assert node_names(fake) == names
    assert sorted(machines(inventory, clock)) == names


async def test_power_actions_still_work_on_a_paused_cluster(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    # A pause freezes what the cluster does; a power action is carried out by the nodes
    # themselves, and the paused cluster does not undo it.
    names = await deploy(fake, harness, inventory)
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"paused": True}})

    await operate(fake, "stop", "StopNodes", nodes={"names": names[:1]})
    status = await finished(fake, harness, "stop")

    assert status["phase"] == "Succeeded"
    assert machines(inventory, clock)[names[0]] == "Stopped"
