"""Check and Recover: asking the provider about nodes, and the health policy's recovery."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from test_operations import (
    NS,
    break_machine,
    converged,
    deploy,
    events,
    finished,
    first_status,
    machines,
    node,
    node_names,
    operate,
    remove_machine,
    results,
)

from nodecluster.clock import LoopClock, rfc3339
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.providers.base import Retryable
from nodecluster.testing import FakeKube, Harness
from nodecluster.testing.drivers import DriverFaults

REPORT_ONLY = {"health": {"recovery": "None"}}
"""A health policy that leaves broken nodes alone, so what a test breaks stays broken."""


async def test_check_of_a_healthy_cluster_reports_every_node_ok(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory)

    await operate(fake, "check", "Check")
    status = await finished(fake, harness, "check")

    assert status["phase"] == "Succeeded"
    assert status["message"] == "checked 3 nodes, 0 unhealthy"
    assert results(status) == {n: ("OK", "machine is Running") for n in names}
    assert status["startTime"] <= status["completionTime"]


async def test_check_names_a_broken_node_and_wakes_its_controller(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory, policies=REPORT_ONLY)
    broken = names[1]
    break_machine(inventory, broken)

    await operate(fake, "check", "Check")
    status = await finished(fake, harness, "check")

    assert status["phase"] == "Succeeded", "a Check reports; it does not fail for what it finds"
    assert status["message"] == "checked 3 nodes, 1 unhealthy"
    assert results(status)[broken] == ("Error", "machine is Failed")
    assert {n: r for n, (r, _) in results(status).items() if n != broken} == {
        n: "OK" for n in names if n != broken
    }
    # Woken by the Check, well before the provider's next health poll (60 s) would find it.
    await harness.wait_for(
        lambda: node(fake, broken)["status"]["state"] == "Failed", within=5, what="node Failed"
    )


async def test_check_reports_a_machine_missing_at_the_provider(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory, policies=REPORT_ONLY)
    remove_machine(inventory, clock, names[0])

    await operate(fake, "check", "Check")
    status = await finished(fake, harness, "check")

    assert status["phase"] == "Succeeded"
    assert status["message"] == "checked 3 nodes, 1 unhealthy"
    assert results(status)[names[0]] == ("Error", "machine does not exist at the provider")


async def test_check_reports_a_provider_error_as_the_nodes_result(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    names = await deploy(fake, harness, inventory)
    faults.fail("get", Retryable("the cloud API is throttling"), name=names[2])

    await operate(fake, "check", "Check")
    status = await finished(fake, harness, "check")

    assert faults.count("get", names[2]) >= 1
    assert status["phase"] == "Succeeded"
    assert results(status)[names[2]] == ("Error", "the cloud API is throttling")
    assert results(status)[names[0]] == ("OK", "machine is Running")
    assert status["message"] == "checked 3 nodes, 1 unhealthy"


async def test_check_of_nodes_whose_provider_is_gone_reports_why(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory)
    # Deleted anyway: its finalizer removed by hand, so nothing holds it.
    await fake.delete(NODEPROVIDERS, None, "sim")
    await fake.patch(NODEPROVIDERS, None, "sim", {"metadata": {"finalizers": None}})

    await operate(fake, "check", "Check")
    status = await finished(fake, harness, "check")

    assert results(status) == {n: ("Error", "NodeProvider 'sim' does not exist") for n in names}
    assert status["message"] == "checked 3 nodes, 3 unhealthy"


async def test_check_looks_only_at_the_chosen_nodes(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    names = await deploy(fake, harness, inventory)
    gets = faults.count("get")

    await operate(fake, "check", "Check", nodes={"names": [names[0]]})
    status = await finished(fake, harness, "check")

    assert results(status) == {names[0]: ("OK", "machine is Running")}
    assert status["message"] == "checked 1 nodes, 0 unhealthy"
    assert faults.count("get") - gets >= 1
    assert faults.count("get", names[1]) == faults.count("get", names[2]) == 0


async def test_recover_recreates_broken_nodes_under_the_recreate_policy(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory)
    broken = names[0]
    break_machine(inventory, broken)

    await operate(fake, "recover", "Recover")
    status = await finished(fake, harness, "recover")

    assert status["phase"] == "Succeeded"
    assert status["message"] == "recovered 1 of 3 nodes"
    # The node's own status had not noticed yet: it says what it was, the provider knew better.
    assert results(status)[broken] == ("OK", "recreated: was Running")
    assert all(results(status)[n] == ("OK", "healthy") for n in names[1:])
    await converged(fake, harness)
    now = node_names(fake)
    assert broken not in now
    assert set(names[1:]) < set(now)
    assert len(now) == 3
    await harness.wait_for(lambda: set(machines(inventory, clock)) == set(now), what="machines")
    assert set(machines(inventory, clock).values()) == {"Running"}
    assert events(fake, "recover", "OperationSucceeded") == ["Recover: recovered 1 of 3 nodes"]


async def test_recover_requests_a_reboot_of_broken_nodes_under_the_reboot_policy(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory, policies={"health": {"recovery": "Reboot"}})
    broken = names[2]
    break_machine(inventory, broken)

    await operate(fake, "recover", "Recover")
    status = await finished(fake, harness, "recover")

    assert status["phase"] == "Succeeded"
    assert results(status)[broken] == ("OK", "rebooted: was Running")
    assert node(fake, broken)["spec"]["rebootRequestedAt"] == status["startTime"]
    assert "rebootRequestedAt" not in node(fake, names[0])["spec"]
    # The node's controller carries the reboot out: the machine runs again, nothing replaced.
    await harness.wait_for(
        lambda: node(fake, broken)["status"].get("lastRebootTime") is not None, what="rebooted"
    )
    await converged(fake, harness)
    assert node_names(fake) == names
    assert machines(inventory, clock) == dict.fromkeys(names, "Running")


async def test_recover_is_refused_when_something_is_broken_and_recovery_is_none(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory, policies=REPORT_ONLY)
    break_machine(inventory, names[0])
    deletes = len(fake.calls_of("delete", "clusternodes"))

    await operate(fake, "recover", "Recover")
    status = await finished(fake, harness, "recover")

    assert status["phase"] == "Failed"
    assert status["message"] == "the health policy's recovery is None: nothing may be done"
    assert len(fake.calls_of("delete", "clusternodes")) == deletes
    assert not [c for c in fake.calls_of("patch", "clusternodes") if c.name == names[0]]
    assert machines(inventory, clock)[names[0]] == "Failed"
    assert events(fake, "web", "OperationFailed") == [
        "recover (Recover): the health policy's recovery is None: nothing may be done"
    ]


async def test_recover_of_a_healthy_cluster_reports_every_node_healthy(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    # recovery None refuses only when there is something to recover.
    names = await deploy(fake, harness, inventory, policies=REPORT_ONLY)
    before = len(fake.calls)

    await operate(fake, "recover", "Recover")
    status = await finished(fake, harness, "recover")

    assert status["phase"] == "Succeeded"
    assert status["message"] == "recovered 0 of 3 nodes"
    assert results(status) == {n: ("OK", "healthy") for n in names}
    touched = [c for c in fake.calls[before:] if c.verb in ("patch", "delete")]
    assert [c for c in touched if c.resource == "clusternodes"] == []


async def test_recover_treats_a_node_its_own_status_calls_unready_as_broken(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory, policies={"health": {"recovery": "Reboot"}})
    # The provider says Running, but the node's status says it is not ready.
    await fake.patch(CLUSTERNODES, NS, names[1], {"status": {"ready": False}}, status=True)

    await operate(fake, "recover", "Recover", nodes={"names": [names[1], names[2]]})
    status = await finished(fake, harness, "recover")

    assert results(status) == {
        names[1]: ("OK", "rebooted: was Running"),
        names[2]: ("OK", "healthy"),
    }
    assert status["message"] == "recovered 1 of 2 nodes"
    assert "rebootRequestedAt" in node(fake, names[1])["spec"]


# -- Recover acts only on nodes it checked and found broken -----------------------------------


async def test_recover_asks_again_when_the_provider_fails_to_answer_for_a_node(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    names = await deploy(fake, harness, inventory)
    throttled = faults.fail("get", Retryable("the cloud API is throttling"), name=names[0])

    await operate(fake, "recover", "Recover")
    status = await finished(fake, harness, "recover")

    assert throttled.fired == 1
    assert faults.count("get", names[0]) >= 2, "asked again"
    assert status["phase"] == "Succeeded"
    assert status["message"] == "recovered 0 of 3 nodes"
    assert results(status) == {n: ("OK", "healthy") for n in names}
    assert node_names(fake) == names, "nothing recreated"
    waiting = first_status(fake, "recover", "Pending")
    assert waiting["message"] == (
        f"could not check 1 of 3 nodes ({names[0]}: the cloud API is throttling); asking again"
    )


async def test_recover_that_cannot_check_a_node_until_its_timeout_recovers_nothing(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    names = await deploy(fake, harness, inventory)
    faults.fail("get", Retryable("the cloud API is throttling"), name=names[0], times=None)

    await operate(fake, "recover", "Recover", timeoutSeconds=60)
    status = await finished(fake, harness, "recover")

    assert status["phase"] == "Failed"
    assert status["message"] == (
        "timed out after 60s; could not check 1 of 3 nodes "
        f"({names[0]}: the cloud API is throttling); asking again"
    )
    assert node_names(fake) == names, "nothing recreated"


async def test_recover_leaves_a_node_still_being_created_alone(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(
        fake, harness, inventory, provider={"config": {"createLatencySeconds": 120}}
    )
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 4}})
    await harness.wait_for(
        lambda: any(
            node(fake, n).get("status", {}).get("state") == "Provisioning"
            for n in set(node_names(fake)) - set(names)
        ),
        what="a fourth node provisioning",
    )
    [new] = set(node_names(fake)) - set(names)

    await operate(fake, "recover", "Recover")
    status = await finished(fake, harness, "recover", within=60)

    assert status["phase"] == "Succeeded"
    assert status["message"] == "recovered 0 of 4 nodes"
    assert results(status)[new] == ("OK", "machine is Provisioning: not broken, left to settle")
    assert new in node_names(fake), "not recreated"
    await converged(fake, harness)
    assert sorted(node_names(fake)) == sorted([*names, new])


async def test_recover_without_its_provider_fails_and_recreates_nothing(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory)
    # Deleted anyway: its finalizer removed by hand, so nothing holds it.
    await fake.delete(NODEPROVIDERS, None, "sim")
    await fake.patch(NODEPROVIDERS, None, "sim", {"metadata": {"finalizers": None}})
    deletes = len(fake.calls_of("delete", "clusternodes"))

    await operate(fake, "recover", "Recover")
    status = await finished(fake, harness, "recover", within=10)

    assert status["phase"] == "Failed"
    assert status["message"] == (
        "could not check the nodes, so none was recovered: NodeProvider 'sim' does not exist"
    )
    assert len(fake.calls_of("delete", "clusternodes")) == deletes
    assert node_names(fake) == names
    assert machines(inventory, clock) == dict.fromkeys(names, "Running")


async def test_recover_reboots_a_node_broken_in_the_second_of_its_last_reboot(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults, clock: LoopClock
) -> None:
    names = await deploy(fake, harness, inventory, policies={"health": {"recovery": "Reboot"}})
    await asyncio.sleep(1 - clock.now().microsecond / 1e6 + 0.01)  # early in a second
    second = rfc3339(clock.now())
    await fake.patch(CLUSTERNODES, NS, names[0], {"spec": {"rebootRequestedAt": second}})
    await harness.wait_for(
        lambda: node(fake, names[0])["status"].get("lastRebootTime") == second, within=0.5
    )
    break_machine(inventory, names[0])

    await operate(fake, "recover", "Recover")
    status = await finished(fake, harness, "recover")

    assert status["startTime"] == second, "the operation started in that same second"
    assert results(status)[names[0]] == ("OK", "rebooted: was Running")
    # Asked by the Recover in the next second (not left to the cluster's remediation).
    asked = [
        c.body["spec"].get("rebootRequestedAt")
        for c in fake.history
        if c.kind == "clusternodes" and c.body["metadata"]["name"] == names[0]
    ]
    requests = sorted({a for a in asked if a is not None})
    next_second = rfc3339(datetime.fromisoformat(second) + timedelta(seconds=1))
    assert requests[:2] == [second, next_second]
    await harness.wait_for(lambda: faults.count("reboot", names[0]) >= 2, what="rebooted again")
