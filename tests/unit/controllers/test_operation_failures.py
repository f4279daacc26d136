"""Every failure of an operation visible on the operation (issue 11, item 5): an error
while it runs reaches its conditions (Stalled when a person must act, Degraded while it is
retried) and its message, with one Warning Event, and is cleared by the next step that
succeeds. The phase stays what it was: only a timeout or a refusal fails an operation.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from test_operation_power import SLOW_POWER
from test_operations import (
    cluster,
    deploy,
    finished,
    op_status,
    operate,
    phase,
    results,
    target,
)

from nodecluster.testing import FakeKube, Harness


def op_condition(fake: FakeKube, name: str, ctype: str) -> dict[str, Any]:
    conditions = op_status(fake, name).get("conditions", [])
    return next((c for c in conditions if c["type"] == ctype), {})


def failing(fake: FakeKube, name: str, ctype: str, reason: str) -> bool:
    cond = op_condition(fake, name, ctype)
    return cond.get("status") == "True" and cond.get("reason") == reason


async def test_an_api_failure_while_an_operation_runs_degrades_it_once_and_clears(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory)
    broken = fake.fail("patch", "clusternodes", 503, times=None, message="etcdserver: timeout")

    await operate(fake, "stop", "StopNodes", nodes={"names": names[:1]})
    await harness.wait_for(lambda: failing(fake, "stop", "Degraded", "APIUnavailable"))

    degraded = op_condition(fake, "stop", "Degraded")
    assert "503" in degraded["message"] and "etcdserver: timeout" in degraded["message"]
    assert "etcdserver: timeout" in op_status(fake, "stop")["message"]
    assert op_status(fake, "stop")["startTime"], "started: its timeout runs"
    assert phase(fake, "stop") is None, "the phase is not changed by a failure"
    await asyncio.sleep(300)  # five minutes of retries (operator time)
    assert broken.fired > 3
    assert failing(fake, "stop", "Degraded", "APIUnavailable")
    warnings = fake.events_about("stop", reason="APIUnavailable")
    assert [e["type"] for e in warnings] == ["Warning"]
    assert "etcdserver: timeout" in warnings[0]["message"]

    fake.remove(broken)
    status = await finished(fake, harness, "stop")

    assert status["phase"] == "Succeeded"
    assert status["message"] == "StopNodes: 1 OK, 0 failed"
    degraded = op_condition(fake, "stop", "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("False", "AsExpected")
    assert len(fake.events_about("stop", reason="APIUnavailable")) == 1


async def test_a_refused_write_of_an_operation_stalls_it_with_the_servers_message(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory, maxNodes=10)
    refused = fake.fail(
        "patch",
        "nodeclusters",
        403,
        times=None,
        message='nodeclusters "web" is forbidden: User "system:serviceaccount:x:y" cannot patch',
    )

    await operate(fake, "grow", "ScaleOut", count=2)
    await harness.wait_for(lambda: failing(fake, "grow", "Stalled", "APIRefused"))

    stalled = op_condition(fake, "grow", "Stalled")
    assert "403" in stalled["message"] and "cannot patch" in stalled["message"]
    assert "cannot patch" in op_status(fake, "grow")["message"]
    assert phase(fake, "grow") == "Pending", "its intent recorded, the phase unchanged"
    assert (op_status(fake, "grow")["previousTarget"], op_status(fake, "grow")["newTarget"]) == (
        3,
        5,
    )
    await asyncio.sleep(300)
    assert len(fake.events_about("grow", reason="APIRefused")) == 1

    fake.remove(refused)
    status = await finished(fake, harness, "grow")

    assert status["phase"] == "Succeeded"
    assert target(fake) == 5
    assert op_condition(fake, "grow", "Stalled")["status"] == "False"


async def test_a_failure_while_running_keeps_the_phase_and_the_per_node_results(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory, provider=SLOW_POWER)
    await operate(fake, "stop", "StopNodes", nodes={"names": names[:2]})
    await harness.wait_for(lambda: phase(fake, "stop") == "Running")
    asked = results(op_status(fake, "stop"))

    broken = fake.fail("list", "clusternodes", 500, times=None, message="etcd leader changed")
    await harness.wait_for(lambda: failing(fake, "stop", "Degraded", "APIUnavailable"))

    assert phase(fake, "stop") == "Running"
    assert results(op_status(fake, "stop")) == asked
    assert "etcd leader changed" in op_status(fake, "stop")["message"]

    fake.remove(broken)
    status = await finished(fake, harness, "stop")
    assert status["phase"] == "Succeeded"
    assert op_condition(fake, "stop", "Degraded")["status"] == "False"


async def test_a_restart_while_an_operation_fails_neither_reposts_nor_rewrites(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory)
    fake.fail("patch", "clusternodes", 503, times=None)
    await operate(fake, "stop", "StopNodes", nodes={"names": names[:1]})
    await harness.wait_for(lambda: failing(fake, "stop", "Degraded", "APIUnavailable"))
    writes = len(fake.calls_of("patch_status", "nodeclusteroperations"))

    await harness.restart()
    await asyncio.sleep(120)

    assert len(fake.calls_of("patch", "clusternodes")) > 1, "retried after the restart"
    assert len(fake.calls_of("patch_status", "nodeclusteroperations")) == writes
    assert len(fake.events_about("stop", reason="APIUnavailable")) == 1


async def test_an_operation_failing_until_its_timeout_fails_saying_why(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory)
    fake.fail("patch", "clusternodes", 503, times=None, message="etcdserver: timeout")

    await operate(fake, "stop", "StopNodes", nodes={"names": names[:1]}, timeoutSeconds=120)
    status = await finished(fake, harness, "stop", within=400)

    assert status["phase"] == "Failed"
    assert status["message"].startswith("timed out after 120s; ")
    assert "etcdserver: timeout" in status["message"]
    assert [e["reason"] for e in fake.events_about("stop")] == ["APIUnavailable", "OperationFailed"]


async def test_a_failure_to_list_a_clusters_operations_is_posted_on_the_cluster(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory)
    broken = fake.fail("list", "nodeclusteroperations", 500, times=None, message="etcd down")

    await operate(fake, "check", "Check")
    await harness.wait_for(lambda: bool(fake.events_about("web", reason="APIUnavailable")))

    await asyncio.sleep(120)
    [event] = fake.events_about("web", reason="APIUnavailable")
    assert event["involvedObject"]["kind"] == "NodeCluster"
    assert event["involvedObject"]["uid"] == cluster(fake)["metadata"]["uid"]
    assert "etcd down" in event["message"]

    fake.remove(broken)
    assert (await finished(fake, harness, "check"))["phase"] == "Succeeded"


async def test_a_lost_answer_to_the_final_write_posts_no_warning(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    """The final write took effect and only its answer was lost: the failure report's write
    meets 409 (the operation moved on) and leaves the status alone; it must not post a
    Warning either, or `kubectl describe` shows a Succeeded operation next to a failure
    that changed nothing (issue 11, review finding 6)."""
    await deploy(fake, harness, inventory)
    lost = fake.fail("patch_status", "nodeclusteroperations", 500, after_effect=True)

    await operate(fake, "check", "Check")
    status = await finished(fake, harness, "check")
    await harness.idle()

    assert lost.fired == 1
    assert status["phase"] == "Succeeded"
    assert not any(c["status"] == "True" for c in status.get("conditions", []))
    assert [e["reason"] for e in fake.events_about("check")] == ["OperationSucceeded"]
