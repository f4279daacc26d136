"""Check and Recover: asking the provider about nodes, and the health policy's recovery."""

from __future__ import annotations

from pathlib import Path

from test_operations import (
    NS,
    break_machine,
    converged,
    deploy,
    events,
    finished,
    machines,
    node,
    node_names,
    operate,
    remove_machine,
    results,
)

from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODEPROVIDERS
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
