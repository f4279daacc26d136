"""ScaleOut and ScaleIn: a new target by the scaling policy, then a wait for the cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from test_operations import (
    cluster,
    condition,
    converged,
    deploy,
    events,
    finished,
    machines,
    node_names,
    op_status,
    operate,
    phase,
    target,
)

from nodecluster.clock import LoopClock
from nodecluster.testing import FakeKube, Harness


def scaling(**policy: Any) -> dict[str, Any]:
    return {"scaling": policy}


async def test_scale_out_raises_the_target_and_succeeds_once_ready(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    await deploy(fake, harness, inventory)
    generation = cluster(fake)["metadata"]["generation"]

    await operate(fake, "scale-out", "ScaleOut", count=2)
    await harness.wait_for(lambda: phase(fake, "scale-out") == "Running")
    running = op_status(fake, "scale-out")
    assert running["message"] == "target 3 -> 5"
    assert running["previousTarget"] == 3
    assert running["newTarget"] == 5
    assert running["clusterGeneration"] == generation + 1
    assert "completionTime" not in running

    status = await finished(fake, harness, "scale-out")

    assert status["phase"] == "Succeeded"
    assert status["message"] == "target 3 -> 5; 5 nodes ready"
    assert target(fake) == 5
    assert len(node_names(fake)) == 5
    assert sorted(machines(inventory, clock)) == node_names(fake)
    assert condition(fake, "Ready")["status"] == "True"
    assert events(fake, "scale-out", "OperationSucceeded") == [
        "ScaleOut: target 3 -> 5; 5 nodes ready"
    ]


async def test_scale_in_lowers_the_target_and_succeeds_once_the_nodes_are_gone(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    await deploy(fake, harness, inventory, targetNodes=4)

    await operate(fake, "scale-in", "ScaleIn", count=1)
    status = await finished(fake, harness, "scale-in")

    assert status["phase"] == "Succeeded"
    assert status["message"] == "target 4 -> 3; 3 nodes ready"
    assert (status["previousTarget"], status["newTarget"]) == (4, 3)
    assert target(fake) == 3
    await harness.wait_for(lambda: len(machines(inventory, clock)) == 3, what="3 machines")
    assert sorted(machines(inventory, clock)) == node_names(fake)


async def test_scale_without_a_count_adjusts_by_one(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory)

    await operate(fake, "scale-out", "ScaleOut")
    status = await finished(fake, harness, "scale-out")

    assert (status["previousTarget"], status["newTarget"]) == (3, 4)
    assert target(fake) == 4


async def test_exact_capacity_sets_the_target_to_the_count(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory, policies=scaling(adjustmentType="ExactCapacity"))

    # ExactCapacity ignores the direction: a "ScaleOut" to 2 of a 3-node cluster shrinks it.
    await operate(fake, "exact", "ScaleOut", count=2)
    status = await finished(fake, harness, "exact")

    assert status["phase"] == "Succeeded"
    assert (status["previousTarget"], status["newTarget"]) == (3, 2)
    assert target(fake) == 2
    assert len(node_names(fake)) == 2


async def test_change_in_percentage_adds_that_percent_of_the_target(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(
        fake,
        harness,
        inventory,
        targetNodes=4,
        policies=scaling(adjustmentType="ChangeInPercentage"),
    )

    await operate(fake, "half-again", "ScaleOut", count=50)
    status = await finished(fake, harness, "half-again")

    assert (status["previousTarget"], status["newTarget"]) == (4, 6)
    assert target(fake) == 6
    assert len(node_names(fake)) == 6


async def test_change_in_percentage_moves_at_least_min_step(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    policy = scaling(adjustmentType="ChangeInPercentage", minStep=2)
    await deploy(fake, harness, inventory, targetNodes=4, policies=policy)

    # 10% of 4 is less than a node: minStep makes it 2.
    await operate(fake, "trim", "ScaleIn", count=10)
    status = await finished(fake, harness, "trim")

    assert (status["previousTarget"], status["newTarget"]) == (4, 2)
    assert target(fake) == 2


async def test_scale_out_beyond_max_nodes_is_refused_and_changes_nothing(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory, maxNodes=4)
    generation = cluster(fake)["metadata"]["generation"]

    await operate(fake, "too-far", "ScaleOut", count=2)
    status = await finished(fake, harness, "too-far")

    assert status["phase"] == "Failed"
    assert status["message"] == (
        "the new target 5 is outside minNodes/maxNodes [0, 4]; "
        "set policies.scaling.bestEffort to clamp instead"
    )
    assert "newTarget" not in status
    assert target(fake) == 3
    assert cluster(fake)["metadata"]["generation"] == generation
    assert fake.events_about("too-far", reason="OperationFailed")[0]["type"] == "Warning"


async def test_scale_in_below_min_nodes_is_refused(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory, minNodes=2)

    await operate(fake, "too-few", "ScaleIn", count=2)
    status = await finished(fake, harness, "too-few")

    assert status["phase"] == "Failed"
    assert status["message"].startswith("the new target 1 is outside minNodes/maxNodes [2, ")
    assert target(fake) == 3
    assert len(node_names(fake)) == 3


async def test_best_effort_clamps_an_out_of_bounds_request_to_max_nodes(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory, maxNodes=4, policies=scaling(bestEffort=True))

    await operate(fake, "as-far-as-allowed", "ScaleOut", count=5)
    status = await finished(fake, harness, "as-far-as-allowed")

    assert status["phase"] == "Succeeded"
    assert (status["previousTarget"], status["newTarget"]) == (3, 4)
    assert target(fake) == 4
    assert len(node_names(fake)) == 4


async def test_best_effort_clamps_a_scale_in_to_min_nodes(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory, minNodes=2, policies=scaling(bestEffort=True))

    await operate(fake, "as-low-as-allowed", "ScaleIn", count=3)
    status = await finished(fake, harness, "as-low-as-allowed")

    assert status["phase"] == "Succeeded"
    assert (status["previousTarget"], status["newTarget"]) == (3, 2)
    assert target(fake) == 2


async def test_scaling_waits_out_the_cooldown_then_proceeds(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    loop = asyncio.get_running_loop()
    await deploy(fake, harness, inventory, policies=scaling(cooldownSeconds=120))
    # Deploying the cluster was its last scaling.
    last_scale = cluster(fake)["status"]["lastScaleTime"]
    deployed_at = loop.time()

    await operate(fake, "scale-out", "ScaleOut", count=1)
    await harness.wait_for(lambda: phase(fake, "scale-out") == "Pending")
    pending = op_status(fake, "scale-out")
    assert pending["message"].startswith("waiting ")
    assert pending["message"].endswith("s for the scaling cooldown")
    assert 110 <= int(pending["message"].split()[1].rstrip("s")) <= 120
    assert pending["startTime"]
    assert target(fake) == 3

    await harness.wait_for(lambda: phase(fake, "scale-out") == "Running", within=150)
    assert loop.time() - deployed_at >= 119, "not before the cooldown has passed"
    status = await finished(fake, harness, "scale-out")

    assert status["phase"] == "Succeeded"
    assert target(fake) == 4
    assert status["startTime"] == pending["startTime"], "started when it was first seen"
    assert cluster(fake)["status"]["lastScaleTime"] > last_scale


async def test_scale_out_of_a_cluster_that_stalls_on_the_providers_quota_fails(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    await deploy(fake, harness, inventory, provider={"quotas": {"maxNodes": 4}})

    await operate(fake, "scale-out", "ScaleOut", count=3)
    status = await finished(fake, harness, "scale-out")

    assert status["phase"] == "Failed"
    assert status["message"].startswith("the cluster is stalled: QuotaExceeded: ")
    assert "quota allows" in status["message"]
    assert target(fake) == 6, "the target was set; the cluster could not reach it"
    assert condition(fake, "Stalled")["status"] == "True"
    await harness.wait_for(lambda: len(machines(inventory, clock)) == 4, what="4 machines")
    assert events(fake, "web", "OperationFailed") == [f"scale-out (ScaleOut): {status['message']}"]


async def test_a_scale_waits_for_the_cluster_to_observe_its_generation(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deploy(fake, harness, inventory)
    # While the cluster's status is behind the target the operation set, a stale Ready=True
    # must not end it: make the cluster's status writes fail for a while.
    fault = fake.fail("patch_status", "nodeclusters", 500, times=3)

    await operate(fake, "scale-out", "ScaleOut", count=1)
    await harness.wait_for(lambda: fault.fired == 3, what="the status writes failing")
    assert phase(fake, "scale-out") == "Running"
    status = await finished(fake, harness, "scale-out")

    assert status["phase"] == "Succeeded"
    assert status["message"] == "target 3 -> 4; 4 nodes ready"
    await converged(fake, harness)
