"""Adopt: machines made without the operator become nodes of a cluster, exactly once.

The machines here are written into the simulator's file directly, as a person or another
tool makes them: no cluster, no identity tags, created a day ago (long past the orphan
collection's grace: a machine tagged for a node that does not exist would be deleted at
the next look). Every test ends with the same audit: the adopted machines are alive and
each is exactly one node's, no machine was created or deleted for them, and the target
rose once by their number.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from test_operations import (
    NS,
    condition,
    converged,
    deploy,
    events,
    finished,
    node_names,
    nodes,
    op_status,
    operate,
    phase,
    target,
)

from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.providers.base import MachineSpec, Retryable
from nodecluster.providers.identity import INSTALLATION_TAG, NODE_TAG, MachineIdentity
from nodecluster.providers.registry import ProviderRegistry
from nodecluster.providers.simulator import Inventory
from nodecluster.testing import FakeKube, Harness
from nodecluster.testing.drivers import DriverFaults, faulty_simulator

DAY = 86400.0


def hand_made(
    inventory: Path,
    clock: LoopClock,
    name: str,
    *,
    machine_type: str = "small",
    zone: str = "zone-a",
    tags: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    cluster: str = "",
) -> str:
    """A machine written into the simulator's file a day ago, as its owner made it; its
    provider id."""
    inv = Inventory(inventory, now=lambda: clock.now().timestamp() - DAY)
    try:
        spec = MachineSpec(
            name=name,
            cluster=cluster,
            machine_type=machine_type,
            labels=labels or {"migrate": "yes"},
            tags=tags or {},
        )
        row, _ = inv.create(spec, 2, zone, 0.0, (None, None, None))
        return str(row["provider_id"])
    finally:
        inv.close()


def rows(inventory: Path, clock: LoopClock) -> dict[str, dict[str, Any]]:
    """Every live machine of the file by provider id: name, tags, state."""
    inv = Inventory(inventory, now=lambda: clock.now().timestamp())
    try:
        return {
            r["provider_id"]: {"name": r["name"], "tags": json.loads(r["tags"])}
            for r in inv.list()
            if r["deleting_at"] is None
        }
    finally:
        inv.close()


def simulator_calls(inventory: Path, op: str) -> int:
    """How many calls `op` the operator made, as the simulator's call log records them
    (the machines made by hand, `hand-*`, left out)."""
    with sqlite3.connect(inventory) as db:
        query = "SELECT COUNT(*) FROM calls WHERE op=? AND name NOT LIKE 'hand-%'"
        return int(db.execute(query, (op,)).fetchone()[0])


def adopted_nodes(fake: FakeKube) -> dict[str, str]:
    """provider id -> node, for the live nodes holding a machine."""
    return {
        n["status"]["providerId"]: name
        for name, n in nodes(fake).items()
        if n.get("status", {}).get("providerId")
    }


def spec_writes(fake: FakeKube) -> list[tuple[str, str, str | None]]:
    """The calls that changed a cluster's spec or any node since the journal was reset."""
    return [
        (c.verb, c.resource, c.name)
        for c in fake.calls
        if c.resource in (NODECLUSTERS.plural, CLUSTERNODES.plural)
        and c.verb in ("create", "patch", "delete")
    ]


async def audit(
    fake: FakeKube,
    harness: Harness,
    inventory: Path,
    clock: LoopClock,
    adopted: list[str],
    expected_target: int,
    foreign: int = 0,
) -> None:
    """Once the cluster converged and the orphan collection had every chance to look: each
    adopted machine is alive, named and tagged for exactly the node that holds it; no
    machine was made or deleted; the target is what the adoption made it. (`foreign`:
    machines of the file that are not this installation's.)"""
    await converged(fake, harness)
    await asyncio.sleep(300)  # past the orphan grace and several health polls
    await harness.idle()
    held = adopted_nodes(fake)
    live = rows(inventory, clock)
    assert target(fake) == expected_target
    assert len(nodes(fake)) == expected_target
    assert len(live) == expected_target + foreign
    for provider_id in adopted:
        assert provider_id in live, f"{provider_id} was deleted"
        node = held.get(provider_id)
        assert node is not None, f"{provider_id} is no node's"
        assert live[provider_id]["tags"][NODE_TAG] == node
        assert live[provider_id]["tags"][INSTALLATION_TAG] == harness.settings.installation_id
    assert simulator_calls(inventory, "create") == expected_target - len(adopted)
    assert simulator_calls(inventory, "delete") == 0


# -- dry run and refusals --------------------------------------------------------------------


async def test_a_dry_run_lists_what_it_would_adopt_and_why_not_and_writes_nothing_else(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    await deploy(fake, harness, inventory, targetNodes=2)
    free = hand_made(inventory, clock, "hand-1")
    large = hand_made(inventory, clock, "hand-2", machine_type="large")
    theirs = MachineIdentity("prod", "team-b", "db", "db-x", "uid-x").tags()
    owned = hand_made(inventory, clock, "hand-db", tags=theirs, cluster="team-b/db")
    before = rows(inventory, clock)
    await harness.idle()
    fake.reset_journal()

    await operate(fake, "preview", "Adopt", adopt={"tags": {"migrate": "yes"}}, dryRun=True)
    status = await finished(fake, harness, "preview")
    await asyncio.sleep(300)  # past the orphan grace: machines nobody claims are not collected
    await harness.idle()

    assert status["phase"] == "Succeeded", (status["message"], status.get("nodes"))
    assert status["message"].startswith("dry run: would adopt 1 of 3 machines matched")
    report = status["adoption"]
    assert (report["matched"], report["adopted"], report["more"]) == (3, 1, 0)
    listed = {m["providerId"]: m for m in report["machines"]}
    assert listed[free]["verdict"] == "Adopt"
    assert listed[free]["node"].startswith("web-")
    assert (listed[free]["machineType"], listed[free]["zone"]) == ("small", "zone-a")
    assert listed[large]["verdict"] == "Refused"
    assert "machine type 'large'" in listed[large]["reason"]
    assert listed[owned]["verdict"] == "Refused"
    assert "team-b/db/db-x of installation 'prod'" in listed[owned]["reason"]
    assert spec_writes(fake) == []
    assert target(fake) == 2
    assert rows(inventory, clock) == before
    assert events(fake, "preview", "OperationSucceeded")


async def test_a_driver_without_adoption_fails_the_operation_and_changes_nothing(
    fake: FakeKube, clock: LoopClock, settings: Any, inventory: Path
) -> None:
    registry = ProviderRegistry()
    registry.register("noadopt", faulty_simulator(DriverFaults(), adoption=False))
    async with Harness(fake, registry=registry, clock=clock, settings=settings) as harness:
        await deploy(fake, harness, inventory, provider={"driver": "noadopt"}, targetNodes=2)
        provider_id = hand_made(inventory, clock, "hand-1")
        await harness.idle()
        fake.reset_journal()

        await operate(fake, "take", "Adopt", adopt={"providerIds": [provider_id]})
        status = await finished(fake, harness, "take")

        assert status["phase"] == "Failed"
        assert "cannot adopt machines" in status["message"]
        assert spec_writes(fake) == []
        assert rows(inventory, clock)[provider_id]["tags"] == {}
        assert events(fake, "take", "OperationFailed")


async def test_an_owned_machine_is_refused_and_never_touched_while_a_free_one_is_adopted(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    await deploy(fake, harness, inventory, targetNodes=2)
    free = hand_made(inventory, clock, "hand-1")
    theirs = MachineIdentity("prod", NS, "web", "web-zzzzz", "uid-z").tags()
    owned = hand_made(inventory, clock, "hand-web", tags=theirs, cluster=f"{NS}/web")

    await operate(fake, "take", "Adopt", adopt={"providerIds": [free, owned, "sim://nope"]})
    status = await finished(fake, harness, "take")

    assert status["phase"] == "Succeeded", (status["message"], status.get("nodes"))
    report = status["adoption"]
    assert report["unmatched"] == ["sim://nope"]
    verdicts = {m["providerId"]: m["verdict"] for m in report["machines"]}
    assert verdicts == {free: "Adopt", owned: "Refused"}
    assert rows(inventory, clock)[owned]["tags"] == theirs
    assert (status["previousTarget"], status["newTarget"]) == (2, 3)
    await audit(fake, harness, inventory, clock, [free], expected_target=3, foreign=1)
    # (the other installation's machine is not this one's to collect, and was not)
    assert rows(inventory, clock)[owned]["tags"] == theirs


@pytest.mark.parametrize(
    ("spec", "refusal"),
    [
        ({"maxNodes": 3}, "above maxNodes (3)"),
        ({"paused": True}, "is paused"),
    ],
    ids=["max-nodes", "paused"],
)
async def test_an_adoption_that_cannot_be_carried_out_fails_and_changes_nothing(
    fake: FakeKube,
    harness: Harness,
    inventory: Path,
    clock: LoopClock,
    spec: dict[str, Any],
    refusal: str,
) -> None:
    await deploy(fake, harness, inventory, targetNodes=2)
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": spec})
    ids = [hand_made(inventory, clock, f"hand-{i}") for i in range(2)]
    await harness.idle()
    fake.reset_journal()

    await operate(fake, "take", "Adopt", adopt={"providerIds": ids})
    status = await finished(fake, harness, "take")

    assert status["phase"] == "Failed"
    assert refusal in status["message"]
    assert spec_writes(fake) == []
    assert all(rows(inventory, clock)[i]["tags"] == {} for i in ids)


# -- adopting --------------------------------------------------------------------------------


async def test_adopted_machines_become_nodes_and_the_target_rises_once(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    await deploy(fake, harness, inventory, targetNodes=2)
    before = set(node_names(fake))
    ids = [
        hand_made(inventory, clock, f"hand-{i}", zone=z) for i, z in enumerate(("zone-a", "zone-b"))
    ]

    await operate(fake, "take", "Adopt", adopt={"tags": {"migrate": "yes"}})
    status = await finished(fake, harness, "take")

    assert status["phase"] == "Succeeded", (status["message"], status.get("nodes"))
    assert status["message"] == "adopted 2 of 2 machines; target 2 -> 4"
    made = {m["node"]: m["providerId"] for m in status["adoption"]["machines"]}
    assert set(node_names(fake)) == before | set(made)
    for node, provider_id in made.items():
        stored = nodes(fake)[node]
        assert stored["status"]["providerId"] == provider_id
        assert stored["metadata"]["annotations"]["nodecluster.io/adopt-machine"] == provider_id
    assert {r["name"]: r["result"] for r in status["nodes"]} == dict.fromkeys(made, "OK")
    assert (
        not fake.stored(NODECLUSTERS, NS, "web")["metadata"]
        .get("annotations", {})
        .get("nodecluster.io/adopting")
    )
    await audit(fake, harness, inventory, clock, ids, expected_target=4)


async def test_a_lost_answer_of_the_tagging_adopts_the_machine_once(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock, faults: DriverFaults
) -> None:
    await deploy(fake, harness, inventory, targetNodes=1)
    provider_id = hand_made(inventory, clock, "hand-1")
    lost = faults.fail("adopt", Retryable("the answer was lost"), after_effect=True)

    await operate(fake, "take", "Adopt", adopt={"providerIds": [provider_id]})
    status = await finished(fake, harness, "take")

    assert lost.fired == 1
    assert status["phase"] == "Succeeded", (status["message"], status.get("nodes"))
    assert faults.count("adopt") == 1  # the retry found it by its name
    await audit(fake, harness, inventory, clock, [provider_id], expected_target=2)


# -- crash safety: a kill anywhere leaks nothing and doubles nothing -------------------------


async def wait_raised(fake: FakeKube, harness: Harness, value: int) -> None:
    await harness.wait_for(lambda: target(fake) == value, what=f"the target at {value}")


async def wait_nodes(fake: FakeKube, harness: Harness, count: int) -> None:
    await harness.wait_for(lambda: len(nodes(fake)) == count, what=f"{count} nodes")


async def test_a_kill_after_the_intent_is_recorded_raises_the_target_once(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    await deploy(fake, harness, inventory, targetNodes=2)
    ids = [hand_made(inventory, clock, f"hand-{i}") for i in range(2)]
    slow = fake.slow("patch", "nodeclusters", 30.0)

    await operate(fake, "take", "Adopt", adopt={"providerIds": ids})
    await harness.wait_for(lambda: phase(fake, "take") == "Running", what="the intent")
    await harness.restart(kill=True)
    fake.remove(slow)
    status = await finished(fake, harness, "take")
    assert status["phase"] == "Succeeded", (status["message"], status.get("nodes"))
    await audit(fake, harness, inventory, clock, ids, expected_target=4)


async def test_a_kill_between_the_target_and_the_nodes_makes_no_fresh_machine(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    """Killed with the target raised and its nodes not made, then every create of a node
    failing for a minute: the cluster's reconciles meanwhile see the target above its
    nodes, and must wait for the adoption's nodes, not make two fresh ones."""
    await deploy(fake, harness, inventory, targetNodes=2)
    ids = [hand_made(inventory, clock, f"hand-{i}") for i in range(2)]
    slow = fake.slow("create", "clusternodes", 60.0, times=None)
    fake.reset_journal()

    await operate(fake, "take", "Adopt", adopt={"providerIds": ids})
    await wait_raised(fake, harness, 4)
    failing = fake.fail("create", "clusternodes", 503, times=None)
    await harness.restart(kill=True)
    fake.remove(slow)
    await asyncio.sleep(60)
    fake.remove(failing)
    status = await finished(fake, harness, "take")

    made = {m["node"] for m in status["adoption"]["machines"]}
    tried = {c.name for c in fake.calls_of("create", "clusternodes")}
    assert tried == made, f"the cluster made nodes of its own: {tried - made}"
    assert condition(fake, "Ready")["reason"] != "Adopting"  # the hold has ended
    assert status["phase"] == "Succeeded", (status["message"], status.get("nodes"))
    await audit(fake, harness, inventory, clock, ids, expected_target=4)


async def test_a_kill_between_the_node_and_the_tagging_adopts_once(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock, faults: DriverFaults
) -> None:
    await deploy(fake, harness, inventory, targetNodes=2)
    ids = [hand_made(inventory, clock, f"hand-{i}") for i in range(2)]
    hung = faults.hang("adopt", times=None)

    await operate(fake, "take", "Adopt", adopt={"providerIds": ids})
    await wait_nodes(fake, harness, 4)
    await harness.wait_for(lambda: hung.fired >= 1, what="a tagging in flight")
    await harness.restart(kill=True)
    faults.faults.remove(hung)
    status = await finished(fake, harness, "take")

    assert status["phase"] == "Succeeded", (status["message"], status.get("nodes"))
    await audit(fake, harness, inventory, clock, ids, expected_target=4)


async def test_a_kill_between_the_tagging_and_the_node_s_status_adopts_once(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock, faults: DriverFaults
) -> None:
    """The machines are tagged for nodes whose status does not say so yet: the restarted
    operator finds them by their names, and the orphan collection leaves them (their
    nodes exist)."""
    await deploy(fake, harness, inventory, targetNodes=2)
    ids = [hand_made(inventory, clock, f"hand-{i}") for i in range(2)]
    held = fake.hang("patch_status", "clusternodes", times=None)

    await operate(fake, "take", "Adopt", adopt={"providerIds": ids})
    await harness.wait_for(
        lambda: all(rows(inventory, clock)[i]["tags"] for i in ids), what="both tagged"
    )
    await harness.restart(kill=True)
    fake.remove(held)
    status = await finished(fake, harness, "take")

    assert status["phase"] == "Succeeded", (status["message"], status.get("nodes"))
    assert faults.count("adopt") == 2
    await audit(fake, harness, inventory, clock, ids, expected_target=4)


@pytest.mark.parametrize("seed", range(4))
async def test_adoption_under_random_kills_and_faults_ends_at_its_arithmetic(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock, seed: int
) -> None:
    """Writes of the cluster, of the nodes and of the operation's status fail at random
    (before or after taking effect) and are slow, and the operator is killed at random
    points: the operation still ends having adopted each machine once."""
    rng = random.Random(seed)
    await deploy(fake, harness, inventory, targetNodes=2)
    ids = [hand_made(inventory, clock, f"hand-{i}") for i in range(3)]
    for verb, resource in (
        ("patch", "nodeclusters"),
        ("create", "clusternodes"),
        ("patch_status", "nodeclusteroperations"),
        ("patch_status", "clusternodes"),
    ):
        for after in (False, True):
            fake.fail(verb, resource, 503, after_effect=after, times=None, probability=0.15)
        fake.slow(verb, resource, 0.5, times=None)

    await operate(fake, "take", "Adopt", adopt={"tags": {"migrate": "yes"}})
    for _ in range(3):
        await asyncio.sleep(rng.uniform(0.0, 3.0))
        await harness.restart(kill=True)
    status = await finished(fake, harness, "take", within=3600)
    fake.clear_faults()

    assert status["phase"] == "Succeeded", (status["message"], status.get("nodes"))
    assert op_status(fake, "take")["newTarget"] == 5
    await audit(fake, harness, inventory, clock, ids, expected_target=5)


async def test_no_machine_is_taken_over_through_a_provider_being_deleted(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    """Tagging a machine makes it this installation's, as a create does: through a
    provider being deleted it would be stranded there (a reviewer's find: the take-over
    skipped the in-use hold a create makes)."""
    await deploy(fake, harness, inventory, targetNodes=1)
    provider_id = hand_made(inventory, clock, "hand-0")
    await fake.delete(NODEPROVIDERS, None, "sim")  # held by the cluster: being deleted

    await operate(fake, "take", "Adopt", adopt={"tags": {"migrate": "yes"}})

    def refused() -> bool:
        return any(
            c["reason"] == "ProviderDeleting"
            for n in nodes(fake).values()
            for c in (n.get("status") or {}).get("conditions", [])
        )

    await harness.wait_for(refused, what="the adopted machine's node refused")

    assert rows(inventory, clock)[provider_id]["tags"] == {}
