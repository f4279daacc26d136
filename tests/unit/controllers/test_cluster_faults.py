"""The NodeCluster controller when the API or the provider misbehaves: nothing doubled,
nothing lost, and the failure visible where people look."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from clusters import NS, cluster_body, condition, every_machine, live_nodes, machines, nodes, state
from conftest import provider_body

from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.controllers.world import Settings
from nodecluster.providers.base import MachineSpec, Retryable
from nodecluster.providers.simulator import Inventory
from nodecluster.testing import FakeKube, Harness
from nodecluster.testing.drivers import DriverFaults
from nodecluster.testing.fakekube import WRITE_VERBS


async def test_a_conflict_adding_the_finalizer_is_read_again_and_resolved(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    conflict = fake.fail("patch", "nodeclusters", 409)
    await fake.create(NODECLUSTERS, NS, cluster_body())

    await harness.wait_for(lambda: state(fake) == "Deployed")
    assert conflict.fired == 1
    assert len(nodes(fake)) == 3


async def test_failed_node_creates_are_retried_without_doubling(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    refused = fake.fail("create", "clusternodes", 500, times=2)
    lost = fake.fail("create", "clusternodes", 503, after_effect=True)

    await fake.create(NODECLUSTERS, NS, cluster_body())

    await harness.wait_for(lambda: state(fake) == "Deployed")
    assert refused.fired == 2
    assert lost.fired == 1
    assert len(nodes(fake)) == 3
    assert len(machines(inventory)) == 3


async def test_a_lagging_watch_never_doubles_creates(
    fake: FakeKube, registry: object, clock: object, inventory: Path
) -> None:
    """The watch shows each new node 10 s late; expectations bridge the gap."""
    fake.add(NODEPROVIDERS, provider_body(inventory))
    async with Harness(fake, registry=registry, clock=clock, watch_lag=10.0) as harness:  # type: ignore[arg-type]
        await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=5))
        await harness.wait_for(lambda: state(fake) == "Deployed")
        assert len(fake.calls_of("create", "clusternodes")) == 5
    assert len(nodes(fake)) == 5


async def test_a_missing_provider_stalls_the_cluster_until_it_exists(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await fake.create(NODECLUSTERS, NS, cluster_body())

    await harness.wait_for(lambda: condition(fake, "Stalled").get("status") == "True")
    assert condition(fake, "Stalled")["reason"] == "ProviderNotFound"
    assert nodes(fake) == []
    assert state(fake) == "Init"

    fake.add(NODEPROVIDERS, provider_body(inventory))
    await harness.wait_for(lambda: state(fake) == "Deployed", what="Deployed once it exists")
    assert condition(fake, "Stalled")["status"] == "False"


async def test_an_invalid_provider_config_stalls_the_cluster(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, config={"createLatencySeconds": -1}))
    await fake.create(NODECLUSTERS, NS, cluster_body())

    await harness.wait_for(
        lambda: condition(fake, "Stalled").get("reason") == "InvalidProviderConfig"
    )
    assert "createLatencySeconds" in condition(fake, "Stalled")["message"]
    assert live_nodes(fake) == [] or all(
        "providerId" not in n.get("status", {}) for n in live_nodes(fake)
    )


async def test_a_quota_stops_creates_at_the_limit_and_says_so(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, quotas={"maxNodes": 2}))
    await fake.create(NODECLUSTERS, NS, cluster_body())

    await harness.wait_for(lambda: condition(fake, "Stalled").get("reason") == "QuotaExceeded")
    await harness.wait_for(lambda: state(fake) == "PartlyDeployed", what="2 of 3 ready")
    assert len(nodes(fake)) == 2
    assert "quota allows 0 more nodes" in condition(fake, "Stalled")["message"]


async def test_a_broken_machine_is_replaced(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body())
    await harness.wait_for(lambda: state(fake) == "Deployed")
    victim = nodes(fake)[0]["metadata"]["name"]

    broken = Inventory(inventory)
    try:
        assert broken.set_failed(victim)
    finally:
        broken.close()

    await harness.wait_for(
        lambda: (
            victim not in {n["metadata"]["name"] for n in nodes(fake)} and state(fake) == "Deployed"
        ),
        what="the broken node replaced",
    )
    assert len(live_nodes(fake)) == 3
    remediated = fake.events_about("web", reason="NodeRemediated")
    assert [e["message"] for e in remediated] == [f"node {victim} is unhealthy; recreating it"]
    assert fake.events_about("web", reason="Recovering")


async def test_an_orphan_machine_is_deleted_before_the_cluster_lets_go(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=1))
    await harness.wait_for(lambda: state(fake) == "Deployed")
    orphan = Inventory(inventory)
    try:
        orphan.create(
            MachineSpec(name="web-orphn", cluster=f"{NS}/web", machine_type="small"),
            cores=2,
            zone="zone-a",
            latency=0.0,
            limits=(None, None, None),
        )
    finally:
        orphan.close()

    await fake.delete(NODECLUSTERS, NS, "web")
    await harness.wait_for(lambda: fake.stored(NODECLUSTERS, NS, "web") is None, what="gone")

    assert every_machine(inventory) == []


async def test_a_cluster_waits_for_the_provider_to_list_before_letting_go(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=1))
    await harness.wait_for(lambda: state(fake) == "Deployed")
    listing = faults.fail("list", Retryable("the cloud is down"), name=f"{NS}/web", times=3)

    await fake.delete(NODECLUSTERS, NS, "web")
    await harness.wait_for(lambda: listing.fired == 3, what="three failed listings")
    assert fake.stored(NODECLUSTERS, NS, "web") is not None

    await harness.wait_for(lambda: fake.stored(NODECLUSTERS, NS, "web") is None, what="gone")


async def test_a_cluster_of_a_deleted_provider_can_still_be_deleted(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=0))
    await harness.wait_for(lambda: condition(fake, "Stalled").get("status") == "True")

    await fake.delete(NODECLUSTERS, NS, "web")
    await harness.wait_for(lambda: fake.stored(NODECLUSTERS, NS, "web") is None, what="gone")


async def test_a_grace_period_keeps_a_removed_node_draining_first(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(
        NODECLUSTERS,
        NS,
        cluster_body(targetNodes=2, policies={"deletion": {"gracePeriodSeconds": 120}}),
    )
    await harness.wait_for(lambda: state(fake) == "Deployed")

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 1}})
    await harness.wait_for(lambda: len(live_nodes(fake)) == 1, what="one node going")
    going = next(n for n in nodes(fake) if n["metadata"].get("deletionTimestamp"))
    await harness.wait_for(
        lambda: (
            (fake.stored(CLUSTERNODES, NS, going["metadata"]["name"]) or {})
            .get("status", {})
            .get("message", "")
            .startswith("draining")
        ),
        within=60,
        what="draining",
    )
    assert len(machines(inventory)) == 2

    await harness.wait_for(lambda: len(nodes(fake)) == 1, within=300, what="deleted after grace")
    assert len(machines(inventory)) == 1


async def test_a_converged_fleet_writes_nothing_while_idle_or_after_a_restart(
    fake: FakeKube, harness: Harness, inventory: Path, settings: Settings
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    for name in ("web", "db"):
        await fake.create(NODECLUSTERS, NS, cluster_body(name=name))
    await harness.wait_for(lambda: state(fake, "web") == state(fake, "db") == "Deployed")
    # The provider's usage figures are refreshed a few seconds after the last create.
    await harness.wait_for(
        lambda: (fake.stored(NODEPROVIDERS, None, "sim") or {}).get("status", {}).get("nodes") == 6
    )
    await harness.idle()
    fake.reset_journal()

    await harness.restart()
    await harness.idle()
    assert [(c.verb, c.resource, c.name) for c in fake.calls if c.verb not in ("get", "list")] == []
    assert fake.writes == 0

    def without_usage(name: str) -> dict[str, Any]:
        status = dict(fake.stored(NODECLUSTERS, NS, name)["status"])
        assert status.pop("usage")["machines"] == 3
        return status

    before = {name: without_usage(name) for name in ("web", "db")}
    # Two hours of operator time pass (looptime moves the loop's clock; no real wait).
    await asyncio.sleep(2 * settings.idle_resync_seconds)
    await harness.restart()
    await harness.idle()

    # The only writes: the running machines' hours folded into status.usage, at most once
    # an hour per cluster (and the provider's totals, as often), nothing else changed.
    writes = [(c.verb, c.resource, c.name) for c in fake.calls if c.verb in WRITE_VERBS]
    assert {verb for verb, _, _ in writes} == {"patch_status"}
    per_object = Counter((resource, name) for _, resource, name in writes)
    assert set(per_object) == {
        ("nodeclusters", "web"),
        ("nodeclusters", "db"),
        ("nodeproviders", "sim"),
    }
    assert max(per_object.values()) <= 2
    assert {name: without_usage(name) for name in ("web", "db")} == before
    usage = fake.stored(NODECLUSTERS, NS, "web")["status"]["usage"]
    assert usage["total"]["machineHours"] >= 3 * 2 - 0.01
