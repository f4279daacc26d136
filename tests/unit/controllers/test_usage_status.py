"""Usage and cost in status, end to end on the fake API and clock: what a cluster's
machines ran for is in its status and its provider's, costs about one write an hour, and
is not lost when machines, clusters or the operator go (accounting.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from clusters import NS, cluster_body, condition, nodes, state, status
from conftest import provider_body

from nodecluster.api.usage import ClusterUsage
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.controllers.world import Settings
from nodecluster.planning.usage import brought_up_to
from nodecluster.testing import FakeKube, Harness
from nodecluster.testing.fakekube import Fault

HOUR = 3600.0
SPREAD = {"placement": {"zones": [{"name": "zone-a"}, {"name": "zone-b"}]}}
"""Nodes spread over both zones, whose prices differ."""
BUCKETS = [
    {"zone": "zone-a", "machineType": "small", "cores": 2, "hourlyCost": 1.0},
    {"zone": "zone-b", "machineType": "small", "cores": 2, "hourlyCost": 2.0},
]


def priced(inventory: Path, **spec: Any) -> dict[str, Any]:
    return provider_body(inventory, buckets=BUCKETS, **spec)


def usage(fake: FakeKube, name: str = "web") -> dict[str, Any]:
    return status(fake, name).get("usage") or {}


def provider_entry(fake: FakeKube) -> dict[str, Any]:
    body = fake.stored(NODEPROVIDERS, None, "sim") or {}
    return body.get("status", {}).get("installations", {}).get("default", {}).get("usage") or {}


def rate(fake: FakeKube) -> float:
    """What the cluster's machines cost per hour, from their zones."""
    zones = [n.get("status", {}).get("zone") for n in nodes(fake)]
    return sum({"zone-a": 1.0, "zone-b": 2.0}[z] for z in zones)


async def test_a_running_cluster_accrues_hours_cores_and_cost_with_one_write_an_hour(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, priced(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(policies=SPREAD))
    await harness.wait_for(lambda: state(fake) == "Deployed" and usage(fake).get("machines") == 3)
    first = usage(fake)
    assert (first["cores"], first["hourlyCost"]) == (6, rate(fake))
    assert {b["zone"] for b in first["buckets"]} == {"zone-a", "zone-b"}
    await harness.idle()
    fake.reset_journal()

    await asyncio.sleep(HOUR + 60)
    await harness.idle()

    writes = fake.calls_of("patch_status", "nodeclusters")
    assert len(writes) == 1  # the hour folded in, once
    later = usage(fake)
    assert later["total"]["machineHours"] >= 3.0
    assert later["total"]["coreHours"] == later["total"]["machineHours"] * 2
    hours = later["total"]["machineHours"] - first["total"]["machineHours"]
    assert later["total"]["cost"] - first["total"]["cost"] == round(hours / 3 * rate(fake), 6)
    assert later["currentMonth"] == later["total"]  # (the fake clock stays in one month)


class TestHeldBackProgress:
    """Progress held back for ten minutes (instead of two seconds), machines coming up
    over minutes: what was folded while it was held back is not lost."""

    @pytest.fixture
    def settings(self) -> Settings:
        return Settings(status_progress_seconds=600)

    async def test_the_hours_folded_while_progress_was_held_back_are_kept(
        self, fake: FakeKube, harness: Harness, inventory: Path
    ) -> None:
        slow = {"createLatencySeconds": 300, "latencyJitter": 0.9}  # 30 s to 9.5 min
        fake.add(NODEPROVIDERS, priced(inventory, config=slow))
        await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=3))
        await harness.wait_for(lambda: state(fake) == "Deployed", within=2000)
        await asyncio.sleep(60)
        await harness.idle()

        now = harness.world.now()
        figures = brought_up_to(ClusterUsage.model_validate(usage(fake)), now)
        # Each machine billed at least since its node became Ready (it bills from its
        # creation, earlier); folding afresh from the status at every held-back look
        # started the figures when the cluster converged, minutes after the first.
        ready_since = [
            datetime.fromisoformat(c["lastTransitionTime"])
            for n in nodes(fake)
            for c in n["status"]["conditions"]
            if c["type"] == "Ready"
        ]
        at_least = sum((now - t).total_seconds() for t in ready_since) / HOUR
        assert len(ready_since) == 3
        assert figures.total.machine_hours >= round(at_least, 6)


async def test_a_cluster_without_machines_writes_no_usage_ever(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, priced(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=0))
    await harness.wait_for(lambda: state(fake) == "Empty")
    await harness.idle()
    fake.reset_journal()

    await asyncio.sleep(5 * HOUR)
    await harness.restart()
    await harness.idle()

    assert "usage" not in status(fake)
    assert fake.writes == 0


async def test_a_restart_writes_no_usage(fake: FakeKube, harness: Harness, inventory: Path) -> None:
    fake.add(NODEPROVIDERS, priced(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body())
    await harness.wait_for(lambda: provider_entry(fake).get("machines") == 3)
    await harness.idle()
    fake.reset_journal()

    await harness.restart()
    await harness.idle()

    assert fake.writes == 0


async def test_the_hours_of_deleted_machines_stay(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, priced(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body())
    await harness.wait_for(lambda: state(fake) == "Deployed" and usage(fake).get("machines") == 3)
    await asyncio.sleep(HOUR / 2)
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 1}})
    await harness.wait_for(lambda: usage(fake).get("machines") == 1 and len(nodes(fake)) == 1)

    after = usage(fake)
    # Three machines for (at least) half an hour: their hours stay after two went.
    assert after["total"]["machineHours"] >= 1.5
    assert sum(b["machines"] for b in after["buckets"]) == 1


async def test_stopped_machines_do_not_bill(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, priced(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body())
    await harness.wait_for(lambda: state(fake) == "Deployed" and usage(fake).get("machines") == 3)
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"desiredState": "Stopped"}})
    await harness.wait_for(lambda: state(fake) == "Stopped" and usage(fake).get("machines") == 0)
    stopped = usage(fake)
    assert stopped["hourlyCost"] == 0
    await harness.idle()
    fake.reset_journal()

    await asyncio.sleep(3 * HOUR)
    await harness.idle()

    assert usage(fake) == stopped
    assert fake.calls_of("patch_status", "nodeclusters") == []


async def test_a_deleted_clusters_hours_stay_in_its_providers_total_once(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, priced(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body())
    await fake.create(NODECLUSTERS, NS, cluster_body("db", targetNodes=1))
    await harness.wait_for(lambda: provider_entry(fake).get("machines") == 4)
    await asyncio.sleep(HOUR / 2)
    uid = fake.stored(NODECLUSTERS, NS, "web")["metadata"]["uid"]
    # Its release is refused once after its hours went to the provider: it is retried.
    fake.inject(Fault("patch", NODECLUSTERS, "web", status=500, skip=0, times=1))
    await fake.delete(NODECLUSTERS, NS, "web")
    await harness.wait_for(lambda: fake.stored(NODECLUSTERS, NS, "web") is None, within=600)
    await harness.wait_for(lambda: provider_entry(fake).get("machines") == 1)

    entry = provider_entry(fake)
    assert entry["retired"] == [uid]
    web_hours = entry["retiredTotal"]["machineHours"]
    assert web_hours >= 1.5  # three machines, half an hour
    db_hours = usage(fake, "db")["total"]["machineHours"]
    assert entry["total"]["machineHours"] >= web_hours + db_hours
    assert entry["total"]["machineHours"] < 2 * web_hours + db_hours  # not twice
    assert entry["clusters"] == 1


async def test_a_cluster_deleted_before_its_providers_first_sum_is_in_its_total(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, priced(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=2))
    await harness.wait_for(lambda: state(fake) == "Deployed" and usage(fake).get("machines") == 2)
    await asyncio.sleep(2)  # (the provider sums 5 s after its users change)
    assert provider_entry(fake) == {}
    await fake.delete(NODECLUSTERS, NS, "web")
    await harness.wait_for(lambda: fake.stored(NODECLUSTERS, NS, "web") is None)
    await harness.idle()

    entry = provider_entry(fake)
    assert entry["retiredTotal"]["machineHours"] > 0
    # Retired and summed in one patch: the total is the retired clusters' at once.
    assert entry["total"] == entry["retiredTotal"]
    assert entry["currentMonth"] == entry["retiredTotal"]
    assert entry["clusters"] == 0


async def test_the_cost_limit_stops_a_scale_out_and_says_so_with_the_figures(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    # Placement spreads over zone-a (1/h) and zone-b (2/h); a node to come is priced at
    # the dearest zone of its type (2/h): 4/h allows two nodes (one in each, 3/h), and
    # then no third.
    fake.add(NODEPROVIDERS, priced(inventory, quotas={"maxHourlyCost": 4}))
    await fake.create(NODECLUSTERS, NS, cluster_body(policies=SPREAD))

    await harness.wait_for(lambda: condition(fake, "Stalled").get("reason") == "CostLimitExceeded")
    await harness.wait_for(lambda: state(fake) == "PartlyDeployed", what="2 of 3 ready")
    assert len(nodes(fake)) == 2
    message = condition(fake, "Stalled")["message"]
    assert "cost limit allows 0 more nodes, 1 are needed" in message
    assert "quotas.maxHourlyCost 4/h, 3/h held" in message and "2/h per small node" in message

    # Raising the limit lets the scale-out finish.
    await fake.patch(NODEPROVIDERS, None, "sim", {"spec": {"quotas": {"maxHourlyCost": 6}}})
    await harness.wait_for(lambda: state(fake) == "Deployed" and len(nodes(fake)) == 3)


async def test_a_node_made_by_hand_over_the_cost_limit_waits(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, priced(inventory, quotas={"maxHourlyCost": 2}))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=1))
    await harness.wait_for(lambda: state(fake) == "Deployed")
    spare = dict(nodes(fake)[0])
    body = {
        "apiVersion": spare["apiVersion"],
        "kind": "ClusterNode",
        "metadata": {"name": "by-hand", "namespace": NS},
        "spec": {**spare["spec"], "zone": "zone-b"},
    }
    await fake.create(CLUSTERNODES, NS, body)

    def refused() -> bool:
        node = fake.stored(CLUSTERNODES, NS, "by-hand") or {}
        ready = [c for c in node.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
        return bool(ready) and ready[0].get("reason") == "CostLimitExceeded"

    await harness.wait_for(refused)
    node = fake.stored(CLUSTERNODES, NS, "by-hand") or {}
    assert "providerId" not in node.get("status", {})
    assert "quotas.maxHourlyCost" in node["status"].get("message", "")
