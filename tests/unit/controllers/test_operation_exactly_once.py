"""Operations apply exactly once: whatever fails after their effect, they never apply twice,
and they never overwrite someone else's write of the target.

Each test here failed before operations recorded their step before the effect and wrote
spec.targetNodes with a resourceVersion precondition.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from test_operations import NS, deploy, finished, op_status, operate, phase, results

from nodecluster.controllers.kubeapi import CLUSTERNODES, EVENT_MESSAGE_LIMIT, NODECLUSTERS
from nodecluster.planning.model import POWER_HOLD_ANNOTATION
from nodecluster.testing import FakeKube, Harness


def target(fake: FakeKube) -> int:
    return int((fake.stored(NODECLUSTERS, NS, "web") or {})["spec"]["targetNodes"])


def live(fake: FakeKube) -> set[str]:
    return {
        n["metadata"]["name"]
        for n in fake.objects(CLUSTERNODES, NS)
        if not n["metadata"].get("deletionTimestamp")
    }


async def test_a_scale_in_whose_target_write_answer_is_lost_applies_once(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory, targetNodes=10, maxNodes=20)
    lost = fake.fail("patch", "nodeclusters", 500, after_effect=True)

    await operate(fake, "shrink", "ScaleIn", count=3)
    status = await finished(fake, harness, "shrink")

    assert lost.fired == 1
    assert status["phase"] == "Succeeded"
    assert target(fake) == 7
    assert (status["previousTarget"], status["newTarget"]) == (10, 7)


@pytest.mark.parametrize("failing_write", [0, 1, 2], ids=["intent", "applied", "final"])
async def test_a_failed_status_write_anywhere_never_applies_a_scale_twice(
    fake: FakeKube, harness: Harness, inventory: Path, failing_write: int
) -> None:
    await deploy(fake, harness, inventory, targetNodes=4, maxNodes=20)
    fake.fail("patch_status", "nodeclusteroperations", 503, skip=failing_write)

    await operate(fake, "grow", "ScaleOut", count=3)
    status = await finished(fake, harness, "grow")

    assert status["phase"] == "Succeeded"
    assert target(fake) == 7


async def test_remove_nodes_whose_target_write_answer_is_lost_removes_only_its_nodes(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory, targetNodes=5)
    chosen = names[:2]
    fake.fail("patch", "nodeclusters", 500, after_effect=True)

    await operate(fake, "remove", "RemoveNodes", nodes={"names": chosen})
    status = await finished(fake, harness, "remove")

    assert status["phase"] == "Succeeded", status["message"]
    assert target(fake) == 3
    assert not live(fake) & set(chosen)


@pytest.mark.parametrize("failing_write", [0, 1], ids=["first", "second"])
async def test_remove_nodes_whose_status_write_fails_still_succeeds(
    fake: FakeKube, harness: Harness, inventory: Path, failing_write: int
) -> None:
    names = await deploy(fake, harness, inventory, targetNodes=4)
    fake.fail("patch_status", "nodeclusteroperations", 500, skip=failing_write)

    await operate(fake, "remove", "RemoveNodes", nodes={"names": names[:1]})
    status = await finished(fake, harness, "remove")

    assert status["phase"] == "Succeeded", status["message"]
    assert target(fake) == 3


async def test_a_conflicting_target_write_is_read_again_and_applied(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory, targetNodes=3, maxNodes=10)
    conflict = fake.fail("patch", "nodeclusters", 409)

    await operate(fake, "grow", "ScaleOut", count=2)
    status = await finished(fake, harness, "grow")

    assert conflict.fired == 1
    assert status["phase"] == "Succeeded"
    assert target(fake) == 5


async def test_someone_elses_scale_meanwhile_is_kept_and_the_operation_fails(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory, targetNodes=3, maxNodes=10)
    fake.slow("patch", "nodeclusters", 10.0)  # the operation's target write, in flight

    await operate(fake, "grow", "ScaleOut", count=2)
    await harness.wait_for(lambda: phase(fake, "grow") == "Pending", what="the intent recorded")
    await asyncio.sleep(1)
    # `kubectl scale --replicas=6` while the operation's write is on its way
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 6}})
    status = await finished(fake, harness, "grow")

    assert target(fake) == 6
    assert status["phase"] == "Failed"
    assert "changed meanwhile" in status["message"]


@pytest.mark.parametrize("seed", range(6))
async def test_operations_under_random_faults_and_kills_end_at_their_arithmetic(
    fake: FakeKube, harness: Harness, inventory: Path, seed: int
) -> None:
    """ScaleOut, ScaleIn and RemoveNodes in a row, while every write of the target and of
    the operations' status, and every Event post, fails at random (before or after taking
    effect), writes are slow (so there is something to interrupt), and the operator is
    killed at random points: every operation ends, the target is exactly the operations'
    arithmetic, and each is announced exactly once, on itself and on its cluster."""
    rng = random.Random(seed)
    await deploy(fake, harness, inventory, targetNodes=6, maxNodes=30)
    for verb, resource in (("patch", "nodeclusters"), ("patch_status", "nodeclusteroperations")):
        for after in (False, True):
            fake.fail(verb, resource, 503, after_effect=after, times=None, probability=0.2)
        fake.slow(verb, resource, 0.5, times=None)
    for after in (False, True):
        fake.fail("event", "events", 503, after_effect=after, times=None, probability=0.2)
    expected, kills = 6, 0
    for i in range(8):
        # Never below 2 nodes: every operation here has something to act on.
        action = rng.choice(
            ["ScaleOut", "ScaleIn", "RemoveNodes"] if expected > 3 else ["ScaleOut"]
        )
        name = f"op-{i}"
        if action == "RemoveNodes":
            chosen = sorted(live(fake))[: rng.randint(1, 2)]
            await operate(fake, name, action, nodes={"names": chosen})
            expected -= len(chosen)
        else:
            count = rng.randint(1, 2 if action == "ScaleIn" else 3)
            await operate(fake, name, action, count=count)
            expected += count if action == "ScaleOut" else -count
        await asyncio.sleep(rng.uniform(0.0, 2.0))
        if rng.random() < 0.6:
            await harness.restart(kill=True)
            kills += 1
        status = await finished(fake, harness, name, within=3600)
        assert status["phase"] == "Succeeded", (name, action, status.get("message"))
        assert target(fake) == expected, (name, action, status)
        await harness.wait_for(lambda n=expected: len(live(fake)) == n, within=3600)
    assert kills > 0
    await harness.idle()
    for i in range(8):
        name = f"op-{i}"
        on_op, on_cluster = ended_events(fake, name)
        assert (len(on_op), len(on_cluster)) == (1, 1), (name, on_op, on_cluster)


# -- the Events that say how an operation ended: exactly one each, whatever fails ------------


def ended_events(fake: FakeKube, op: str) -> tuple[list[str], list[str]]:
    """The messages of the OperationSucceeded/Failed Events on the operation and on its
    cluster (about it)."""
    on_op = [e["message"] for e in fake.events_about(op) if e["reason"].startswith("Operation")]
    on_cluster = [
        e["message"]
        for e in fake.events_about("web")
        if e["reason"].startswith("Operation") and e["message"].startswith(f"{op} (")
    ]
    return on_op, on_cluster


@pytest.mark.parametrize(
    ("action", "spec", "final_write"),
    [("Check", {}, 0), ("ScaleOut", {"count": 1}, 2)],
    ids=["check", "scale-out"],
)
async def test_an_operation_whose_final_status_answer_is_lost_is_announced_once(
    fake: FakeKube,
    harness: Harness,
    inventory: Path,
    action: str,
    spec: dict[str, Any],
    final_write: int,
) -> None:
    await deploy(fake, harness, inventory, maxNodes=10)
    lost = fake.fail(
        "patch_status", "nodeclusteroperations", 500, after_effect=True, skip=final_write
    )

    await operate(fake, "op", action, **spec)
    status = await finished(fake, harness, "op")
    await harness.idle()

    assert lost.fired == 1
    assert status["phase"] == "Succeeded"
    on_op, on_cluster = ended_events(fake, "op")
    assert on_op == [f"{action}: {status['message']}"]
    assert on_cluster == [f"op ({action}): {status['message']}"]


@pytest.mark.parametrize("after_effect", [False, True], ids=["failed", "answer-lost"])
async def test_an_operation_whose_event_post_fails_is_announced_once(
    fake: FakeKube, harness: Harness, inventory: Path, after_effect: bool
) -> None:
    await deploy(fake, harness, inventory)
    failing = fake.fail("event", "events", 503, name="op", after_effect=after_effect)

    await operate(fake, "op", "Check")
    status = await finished(fake, harness, "op")
    await harness.idle()

    assert failing.fired == 1
    assert status["phase"] == "Succeeded"
    assert ended_events(fake, "op") == (
        [f"Check: {status['message']}"],
        [f"op (Check): {status['message']}"],
    )


async def test_an_operation_killed_between_its_events_and_its_final_write_is_announced_once(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory)
    fake.hang("patch_status", "nodeclusteroperations", name="op")

    await operate(fake, "op", "Check")
    await harness.wait_for(lambda: bool(fake.events_about("web", reason="OperationSucceeded")))
    await harness.restart(kill=True)
    status = await finished(fake, harness, "op")
    await harness.idle()

    assert status["phase"] == "Succeeded"
    assert [len(events) for events in ended_events(fake, "op")] == [1, 1]


async def test_an_operation_whose_events_are_forbidden_still_ends(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory)
    fake.fail("event", "events", 403, times=None, message='events is forbidden: User "x"')

    await operate(fake, "op", "Check")
    status = await finished(fake, harness, "op", within=30)

    assert status["phase"] == "Succeeded", "an Event is a courtesy: it never holds an operation"
    assert ended_events(fake, "op") == ([], [])


# -- an end once announced is the end: the deadline or the nodes never change it afterwards --
# (issue 11, review finding 3: the end Event is posted before the final status write; when
# that write kept failing past the deadline, the retry timed out and announced Failed after
# Succeeded, and recorded Failed)


def announced_once(fake: FakeKube, name: str, action: str) -> dict[str, Any]:
    """The operation's status, checked against what was announced: one end Event on the
    operation and one on its cluster, saying the phase and the message recorded."""
    status = op_status(fake, name)
    on_op = [e for e in fake.events_about(name) if e["reason"].startswith("Operation")]
    on_cluster = [
        e
        for e in fake.events_about("web")
        if e["reason"].startswith("Operation") and e["message"].startswith(f"{name} (")
    ]
    assert (len(on_op), len(on_cluster)) == (1, 1), (name, on_op, on_cluster)
    said = f"Operation{status['phase']}"
    assert (on_op[0]["reason"], on_cluster[0]["reason"]) == (said, said), (name, status)
    assert on_op[0]["message"] == f"{action}: {status['message']}"[:EVENT_MESSAGE_LIMIT]
    assert (
        on_cluster[0]["message"] == f"{name} ({action}): {status['message']}"[:EVENT_MESSAGE_LIMIT]
    )
    return status


async def test_an_end_whose_record_fails_past_the_deadline_stays_the_end_announced(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory, maxNodes=10)
    await operate(fake, "grow", "ScaleOut", count=1, timeoutSeconds=60)
    await harness.wait_for(lambda: phase(fake, "grow") == "Running")
    outage = fake.fail("patch_status", "nodeclusteroperations", 503, times=None)

    await harness.wait_for(lambda: bool(fake.events_about("grow")), what="the end announced")
    await asyncio.sleep(300)  # five minutes of failing writes: far past the deadline
    fake.remove(outage)
    status = await finished(fake, harness, "grow")
    await harness.idle()

    assert outage.fired > 3
    assert status["phase"] == "Succeeded", status["message"]
    assert status["message"].startswith("target 3 -> 4")
    announced_once(fake, "grow", "ScaleOut")


async def test_an_end_announced_before_a_kill_stays_the_end_after_the_deadline(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    """Killed between its Events and its final write, and restarted past its deadline: the
    restarted operator, which would time it out, finds its Event and records that end."""
    await deploy(fake, harness, inventory, maxNodes=10)
    await operate(fake, "grow", "ScaleOut", count=1, timeoutSeconds=60)
    await harness.wait_for(lambda: phase(fake, "grow") == "Running")
    fake.hang("patch_status", "nodeclusteroperations", name="grow")

    await harness.wait_for(lambda: bool(fake.events_about("web", reason="OperationSucceeded")))
    # The restarted operator cannot see its operations until past their deadline.
    blind = fake.fail("list", "nodeclusteroperations", 503, times=None)
    await harness.restart(kill=True)
    await asyncio.sleep(120)
    fake.remove(blind)
    status = await finished(fake, harness, "grow")
    await harness.idle()

    assert status["phase"] == "Succeeded", status["message"]
    assert status["message"].startswith("target 3 -> 4")
    assert fake.calls_of("get", "events"), "it read the Event posted before the kill"
    announced_once(fake, "grow", "ScaleOut")


def node_state(fake: FakeKube, name: str) -> str | None:
    body = fake.stored(CLUSTERNODES, NS, name) or {}
    return body.get("status", {}).get("state")


async def start_by_hand(fake: FakeKube, name: str) -> None:
    """Someone starts a stopped node again (as StartNodes would)."""
    await fake.patch(
        CLUSTERNODES,
        NS,
        name,
        {
            "metadata": {"annotations": {POWER_HOLD_ANNOTATION: None}},
            "spec": {"powerState": "Running"},
        },
    )


async def test_a_stop_whose_record_fails_ends_as_announced_though_the_node_runs_again(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    names = await deploy(fake, harness, inventory)
    await operate(fake, "stop", "StopNodes", nodes={"names": names[:1]}, timeoutSeconds=120)
    await harness.wait_for(lambda: phase(fake, "stop") == "Running")
    outage = fake.fail("patch_status", "nodeclusteroperations", 503, times=None)
    await harness.wait_for(lambda: bool(fake.events_about("stop")), what="the end announced")

    await start_by_hand(fake, names[0])
    await asyncio.sleep(300)
    fake.remove(outage)
    status = await finished(fake, harness, "stop")
    await harness.idle()

    assert status["phase"] == "Succeeded", status["message"]
    assert status["message"] == "StopNodes: 1 OK, 0 failed"
    assert results(status) == {names[0]: ("OK", "machine is Stopped")}
    announced_once(fake, "stop", "StopNodes")


async def test_a_stop_announced_before_a_kill_ends_as_announced_though_the_node_runs_again(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    """The restarted operator knows nothing of the end announced until it ends the
    operation itself (here: at its deadline, as the node runs again); then the Event it
    finds is the end."""
    names = await deploy(fake, harness, inventory)
    await operate(fake, "stop", "StopNodes", nodes={"names": names[:1]}, timeoutSeconds=120)
    await harness.wait_for(lambda: phase(fake, "stop") == "Running")
    fake.hang("patch_status", "nodeclusteroperations", name="stop")
    await harness.wait_for(lambda: bool(fake.events_about("web", reason="OperationSucceeded")))

    await start_by_hand(fake, names[0])
    await harness.wait_for(lambda: node_state(fake, names[0]) == "Running")
    await harness.restart(kill=True)
    status = await finished(fake, harness, "stop")
    await harness.idle()

    assert status["phase"] == "Succeeded", status["message"]
    assert status["message"] == "StopNodes: 1 OK, 0 failed"
    announced_once(fake, "stop", "StopNodes")


def held_stopped(fake: FakeKube) -> list[str]:
    return sorted(
        n["metadata"]["name"]
        for n in fake.objects(CLUSTERNODES, NS)
        if not n["metadata"].get("deletionTimestamp")
        and n["metadata"].get("annotations", {}).get(POWER_HOLD_ANNOTATION) == "Stopped"
    )


@pytest.mark.parametrize("seed", range(6))
async def test_operations_under_outages_past_their_deadline_end_as_they_announced(
    fake: FakeKube, harness: Harness, inventory: Path, seed: int
) -> None:
    """Checks, scales, stops and starts in a row, with short timeouts, while the operations'
    status writes go down for minutes at random (before or after taking effect: often past
    the deadline), Event posts fail at random, and the operator is killed at random
    points: every operation ends (Succeeded, or Failed when it timed out before it was
    done), announced exactly once on itself and on its cluster, and what it records is
    what it announced."""
    rng = random.Random(seed)
    await deploy(fake, harness, inventory, targetNodes=4, maxNodes=30)
    for after in (False, True):
        fake.fail("event", "events", 503, after_effect=after, times=None, probability=0.2)
    fake.slow("patch_status", "nodeclusteroperations", 0.5, times=None)
    ran: list[tuple[str, str]] = []
    kills = outages_past_deadline = 0
    for i in range(8):
        name, timeout = f"op-{i}", rng.choice([30, 60, 120])
        running = sorted(live(fake) - set(held_stopped(fake)))
        choices = ["Check", "ScaleOut"] + (["ScaleIn", "StopNodes"] if len(running) > 2 else [])
        action = rng.choice(choices + (["StartNodes"] if held_stopped(fake) else []))
        spec: dict[str, Any] = {"timeoutSeconds": timeout}
        if action in ("ScaleOut", "ScaleIn"):
            spec["count"] = 1
        elif action == "StopNodes":
            spec["nodes"] = {"names": running[:1]}
        elif action == "StartNodes":
            spec["nodes"] = {"names": held_stopped(fake)[:1]}
        await operate(fake, name, action, **spec)
        ran.append((name, action))
        await asyncio.sleep(rng.uniform(0.0, 3.0))
        down = rng.uniform(0.0, 300.0)
        outage = fake.fail(
            "patch_status",
            "nodeclusteroperations",
            503,
            after_effect=rng.random() < 0.5,
            times=None,
        )
        if rng.random() < 0.5:
            await harness.restart(kill=True)
            kills += 1
        await asyncio.sleep(down)
        fake.remove(outage)
        outages_past_deadline += down > timeout
        if rng.random() < 0.3:
            await harness.restart(kill=True)
            kills += 1
        await finished(fake, harness, name, within=3600)
    assert kills > 0 and outages_past_deadline > 0
    await harness.idle()
    for name, action in ran:
        announced_once(fake, name, action)
