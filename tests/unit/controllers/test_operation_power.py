"""StopNodes, StartNodes and RebootNodes: ask each chosen node, then wait until it is done."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_operations import (
    NS,
    cluster,
    converged,
    deploy,
    events,
    finished,
    first_status,
    machines,
    node,
    node_names,
    op_status,
    operate,
    phase,
    results,
    statuses,
)

from nodecluster.clock import LoopClock, rfc3339
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS
from nodecluster.planning.model import POWER_HOLD_ANNOTATION
from nodecluster.providers.base import ProviderError, Retryable
from nodecluster.testing import FakeKube, Harness
from nodecluster.testing.drivers import DriverFaults
from nodecluster.testing.fakekube import Fault, Verb

SLOW_POWER = {"config": {"powerLatencySeconds": 20}}
"""Machines take 20 s to stop, start or reboot: long enough to see an operation wait."""


def held(fake: FakeKube, name: str) -> str | None:
    return node(fake, name)["metadata"].get("annotations", {}).get(POWER_HOLD_ANNOTATION)


async def stopped(fake: FakeKube, harness: Harness, names: list[str]) -> None:
    """Stop these nodes with an operation, and wait until it has succeeded."""
    await operate(fake, "stop", "StopNodes", nodes={"names": names})
    status = await finished(fake, harness, "stop")
    assert status["phase"] == "Succeeded", status


async def test_stop_nodes_powers_the_chosen_nodes_off_and_waits_for_them(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory, provider=SLOW_POWER)
    off = names[0]

    await operate(fake, "stop", "StopNodes", nodes={"names": [off]})
    await harness.wait_for(lambda: phase(fake, "stop") == "Running")
    assert held(fake, off) == "Stopped"
    assert node(fake, off)["spec"]["powerState"] == "Stopped"
    assert machines(inventory, clock)[off] == "Stopping"

    status = await finished(fake, harness, "stop")

    asked = first_status(fake, "stop", "Running")
    assert asked["message"] == "StopNodes: waiting for 1 nodes"
    assert results(asked) == {off: ("Pending", "requested")}
    assert ("Pending", "machine is Stopping") in [
        results(s).get(off) for s in statuses(fake, "stop")
    ]

    assert status["phase"] == "Succeeded"
    assert status["message"] == "StopNodes: 1 OK, 0 failed"
    assert results(status) == {off: ("OK", "machine is Stopped")}
    assert machines(inventory, clock) == {off: "Stopped"} | dict.fromkeys(names[1:], "Running")
    assert node(fake, off)["status"]["state"] == "Stopped"
    assert all(held(fake, n) is None for n in names[1:])
    assert events(fake, "stop", "OperationSucceeded") == ["StopNodes: StopNodes: 1 OK, 0 failed"]


async def test_stop_nodes_by_selector_stops_the_labelled_nodes(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory)
    for name in names[1:]:
        await fake.patch(CLUSTERNODES, NS, name, {"metadata": {"labels": {"team": "batch"}}})

    await operate(fake, "stop", "StopNodes", nodes={"selector": {"matchLabels": {"team": "batch"}}})
    status = await finished(fake, harness, "stop")

    assert status["phase"] == "Succeeded"
    assert sorted(results(status)) == names[1:]
    assert machines(inventory, clock) == {names[0]: "Running"} | dict.fromkeys(names[1:], "Stopped")


async def test_the_cluster_leaves_nodes_held_stopped_off(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory)
    await stopped(fake, harness, [names[0]])

    # The cluster works on (here: grows) and counts the held node as where it should be.
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 4}})
    await converged(fake, harness)

    assert len(node_names(fake)) == 4
    assert names[0] in node_names(fake)
    assert node(fake, names[0])["spec"]["powerState"] == "Stopped"
    assert held(fake, names[0]) == "Stopped"
    assert machines(inventory, clock)[names[0]] == "Stopped"
    assert cluster(fake)["status"]["stoppedNodes"] == 1
    assert list(machines(inventory, clock).values()).count("Running") == 3


async def test_start_nodes_powers_held_nodes_on_and_releases_them(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory, provider=SLOW_POWER)
    await stopped(fake, harness, names[:2])

    await operate(fake, "start", "StartNodes", nodes={"names": names[:2]})
    await harness.wait_for(lambda: phase(fake, "start") == "Running")
    assert op_status(fake, "start")["message"] == "StartNodes: waiting for 2 of 2 nodes"
    status = await finished(fake, harness, "start")

    assert status["phase"] == "Succeeded"
    assert status["message"] == "StartNodes: 2 OK, 0 failed"
    assert results(status) == dict.fromkeys(names[:2], ("OK", "machine is Running"))
    assert all(held(fake, n) is None for n in names)
    assert all(node(fake, n)["spec"]["powerState"] == "Running" for n in names)
    assert all(node(fake, n)["status"]["ready"] for n in names[:2])
    assert machines(inventory, clock) == dict.fromkeys(names, "Running")


async def test_reboot_nodes_reboots_them_and_waits_until_they_run_again(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock, faults: DriverFaults
) -> None:
    names = await deploy(fake, harness, inventory, provider=SLOW_POWER)
    chosen = names[1]
    address = node(fake, chosen)["status"]["addresses"][0]["address"]

    await operate(fake, "reboot", "RebootNodes", nodes={"addresses": [address]})
    status = await finished(fake, harness, "reboot")

    assert results(first_status(fake, "reboot", "Running")) == {chosen: ("Pending", "requested")}

    assert status["phase"] == "Succeeded"
    assert status["message"] == "RebootNodes: 1 OK, 0 failed"
    assert results(status) == {chosen: ("OK", "machine is Running")}
    rebooted = node(fake, chosen)
    assert rebooted["spec"]["rebootRequestedAt"] == status["startTime"]
    assert rebooted["status"]["lastRebootTime"] >= status["startTime"]
    assert all("lastRebootTime" not in node(fake, n)["status"] for n in names if n != chosen)
    assert faults.count("reboot") == faults.count("reboot", chosen) == 1
    assert node_names(fake) == names, "rebooted, not replaced"
    assert machines(inventory, clock) == dict.fromkeys(names, "Running")


async def test_a_second_reboot_waits_for_a_reboot_newer_than_its_start(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    names = await deploy(fake, harness, inventory, provider=SLOW_POWER)
    await operate(fake, "reboot", "RebootNodes", nodes={"names": names[:1]})
    first = await finished(fake, harness, "reboot")

    await operate(fake, "reboot-again", "RebootNodes", nodes={"names": names[:1]})
    second = await finished(fake, harness, "reboot-again")

    assert second["phase"] == "Succeeded"
    assert second["startTime"] >= first["completionTime"]
    assert node(fake, names[0])["status"]["lastRebootTime"] >= second["startTime"]
    assert node(fake, names[0])["spec"]["rebootRequestedAt"] == second["startTime"]
    assert faults.count("reboot", names[0]) == 2


async def test_a_power_action_naming_an_unknown_node_is_refused_and_changes_nothing(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory)

    await operate(fake, "stop", "StopNodes", nodes={"names": [names[0], "web-nope"]})
    status = await finished(fake, harness, "stop")

    assert status["phase"] == "Failed"
    assert status["message"] == "no such nodes in the cluster: web-nope"
    assert held(fake, names[0]) is None
    assert not fake.calls_of("patch", "clusternodes")
    assert machines(inventory, clock) == dict.fromkeys(names, "Running")


async def test_a_node_deleted_while_its_stop_is_awaited_fails_the_operation(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory, provider=SLOW_POWER)
    await operate(fake, "stop", "StopNodes", nodes={"names": names[:2]})
    await harness.wait_for(lambda: phase(fake, "stop") == "Running")

    await fake.delete(CLUSTERNODES, NS, names[0])
    status = await finished(fake, harness, "stop")

    assert status["phase"] == "Failed"
    assert status["message"] == "StopNodes: 1 OK, 1 failed"
    assert results(status) == {
        names[0]: ("Error", "node disappeared"),
        names[1]: ("OK", "machine is Stopped"),
    }
    assert events(fake, "web", "OperationFailed") == ["stop (StopNodes): StopNodes: 1 OK, 1 failed"]


async def test_a_node_whose_provider_refuses_the_stop_fails_the_operation(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    names = await deploy(fake, harness, inventory)
    faults.fail("stop", ProviderError("stopping is not supported"), name=names[0], times=None)

    await operate(fake, "stop", "StopNodes", nodes={"names": names[:2]})
    status = await finished(fake, harness, "stop")

    assert status["phase"] == "Failed"
    assert results(status) == {
        names[0]: ("Error", "stopping is not supported"),
        names[1]: ("OK", "machine is Stopped"),
    }
    assert status["message"] == "StopNodes: 1 OK, 1 failed"
    assert faults.count("stop", names[0]) >= 1


async def test_a_passing_provider_error_on_a_stop_is_retried_and_the_stop_succeeds(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory)
    throttled = faults.fail("stop", Retryable("the cloud API is throttling"), name=names[0])

    await operate(fake, "stop", "StopNodes", nodes={"names": names[:2]})
    status = await finished(fake, harness, "stop")

    assert throttled.fired == 1
    assert status["phase"] == "Succeeded", status["message"]
    assert results(status) == dict.fromkeys(names[:2], ("OK", "machine is Stopped"))
    assert ("Pending", "retrying: the cloud API is throttling") in [
        results(s).get(names[0]) for s in statuses(fake, "stop")
    ]
    assert machines(inventory, clock) == dict.fromkeys(names[:2], "Stopped") | {names[2]: "Running"}


async def test_a_start_the_provider_keeps_failing_in_passing_ends_at_the_timeout_saying_why(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    names = await deploy(fake, harness, inventory)
    await stopped(fake, harness, names[:1])
    faults.fail("start", Retryable("the cloud API is throttling"), name=names[0], times=None)

    await operate(fake, "start", "StartNodes", nodes={"names": names[:1]}, timeoutSeconds=120)
    status = await finished(fake, harness, "start")

    assert status["phase"] == "Failed"
    assert status["message"] == "timed out after 120s waiting for 1 of 1 nodes to start"
    assert results(status) == {
        names[0]: ("Error", "timed out; retrying: the cloud API is throttling")
    }


async def test_a_reboot_asked_in_the_second_of_the_last_reboot_is_still_carried_out(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults, clock: LoopClock
) -> None:
    # Timestamps have whole seconds: a reboot request written in the second the node was
    # last rebooted is no newer than that reboot, and used to be taken for it.
    names = await deploy(fake, harness, inventory)
    await asyncio.sleep(1 - clock.now().microsecond / 1e6 + 0.01)  # early in a second
    second = rfc3339(clock.now())
    await fake.patch(CLUSTERNODES, NS, names[0], {"spec": {"rebootRequestedAt": second}})
    await harness.wait_for(
        lambda: node(fake, names[0])["status"].get("lastRebootTime") == second, within=0.5
    )
    assert faults.count("reboot", names[0]) == 1

    await operate(fake, "reboot", "RebootNodes", nodes={"names": names[:1]})
    status = await finished(fake, harness, "reboot")

    assert status["startTime"] == second, "the operation started in that same second"
    assert status["phase"] == "Succeeded"
    assert faults.count("reboot", names[0]) == 2, "rebooted once more, and only once"
    assert node(fake, names[0])["status"]["lastRebootTime"] > second
    await harness.idle()
    assert faults.count("reboot", names[0]) == 2


@pytest.mark.parametrize(
    ("verb", "resource", "skip"),
    [
        ("patch_status", "nodeclusteroperations", 0),  # recording the request
        ("patch", "clusternodes", 1),  # asking the second node, after the first
    ],
    ids=["record", "second-node"],
)
async def test_a_failed_write_while_asking_for_reboots_reboots_each_node_once(
    fake: FakeKube,
    harness: Harness,
    inventory: Path,
    faults: DriverFaults,
    verb: Verb,
    resource: str,
    skip: int,
) -> None:
    # The write fails a second and a half after it was made; the retry comes in a later
    # second, while the nodes asked already are rebooting.
    names = await deploy(fake, harness, inventory, provider=SLOW_POWER)
    failed = fake.inject(Fault(verb, resource, status=500, latency=1.5, skip=skip))

    await operate(fake, "reboot", "RebootNodes", nodes={"names": names[:2]})
    status = await finished(fake, harness, "reboot")

    assert failed.fired == 1
    assert status["phase"] == "Succeeded"
    await harness.idle()
    assert [faults.count("reboot", n) for n in names] == [1, 1, 0]
