"""What each watch event does: which work queue it wakes, when, and what it forgets.

The `on_*_event` functions run here against a world whose queues only record the keys
they run (`woken`), so a test sees exactly what an event woke and nothing reconciles.
The last tests run the real controllers through the Harness: a restart over converged
state must cost no writes, and must not lose a retry that was due.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import provider_body

from nodecluster import API_VERSION
from nodecluster.api.reasons import Reason
from nodecluster.clock import LoopClock
from nodecluster.controllers.events import (
    on_cluster_event,
    on_node_event,
    on_operation_event,
    on_provider_event,
)
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.controllers.workqueue import WorkQueue
from nodecluster.controllers.world import (
    NODE_FINALIZER,
    PROVIDER_REFRESH_SECONDS,
    ProviderBook,
    Queues,
    Settings,
    World,
)
from nodecluster.planning.model import NodeView
from nodecluster.providers.base import CapacityExceeded
from nodecluster.providers.registry import ProviderRegistry
from nodecluster.testing import FakeKube, Harness, LocalClusterIndex, LocalNodeIndex, WatchEvent
from nodecluster.testing.drivers import DriverFaults

NS = "team-a"
CLUSTER_LABEL = "nodecluster.io/cluster"
"""The label naming a ClusterNode's cluster (what `kubectl get cn -l` selects on)."""
CLUSTER = (NS, "web")
NODE = (NS, "web-x1")
QUEUES = ("cluster", "node", "operation", "provider", "poll", "relist")

Woken = dict[str, list[tuple[Any, float]]]
"""Queue name -> (key, loop time) of every run of its handler."""


@pytest.fixture
def woken() -> Woken:
    return {name: [] for name in QUEUES}


@pytest.fixture
def clusters() -> LocalClusterIndex:
    """The NodeClusters by provider, as kopf's index keeps them (before any handler runs)."""
    return LocalClusterIndex()


@pytest.fixture
async def world(
    fake: FakeKube, clock: LoopClock, woken: Woken, clusters: LocalClusterIndex
) -> AsyncIterator[World]:
    """A world whose queues record what they run instead of reconciling."""

    def queue(name: str) -> WorkQueue[Any]:
        async def record(key: Any) -> None:
            woken[name].append((key, asyncio.get_running_loop().time()))

        return WorkQueue(name, record)

    queues = Queues(*(queue(name) for name in QUEUES))
    built = World(
        api=fake,
        clock=clock,
        settings=Settings(),
        node_index=LocalNodeIndex(),
        cluster_index=clusters,
        queues=queues,
        providers=ProviderBook(api=fake, registry=ProviderRegistry({}), clock=clock),
    )
    yield built
    await queues.close()


async def runs(woken: Woken, after: float = 5.0) -> dict[str, list[Any]]:
    """The keys each queue ran within `after` seconds (queues that ran nothing left out)."""
    await asyncio.sleep(after)
    return {name: [key for key, _ in seen] for name, seen in woken.items() if seen}


def provider(version: str = "10") -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "NodeProvider",
        "metadata": {"name": "sim", "resourceVersion": version, "generation": 1},
        "spec": {"driver": "simulator"},
    }


def cluster(version: str = "20") -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "NodeCluster",
        "metadata": {"name": "web", "namespace": NS, "resourceVersion": version, "generation": 1},
        "spec": {"providerRef": {"name": "sim"}, "profile": {"machineType": "small"}},
    }


def node(version: str = "30", status: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "ClusterNode",
        "metadata": {
            "name": "web-x1",
            "namespace": NS,
            "resourceVersion": version,
            "generation": 1,
            "labels": {CLUSTER_LABEL: "web"},
        },
        "spec": {
            "clusterName": "web",
            "providerRef": {"name": "sim"},
            "profile": {"machineType": "small"},
        },
    }
    if status is not None:
        body["status"] = status
    return body


SETTLED = {"observedGeneration": 1, "state": "Running", "providerId": "sim://zone-a/i-1"}


def operation() -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "NodeClusterOperation",
        "metadata": {"name": "web-check", "namespace": NS, "resourceVersion": "40"},
        "spec": {"clusterName": "web", "action": "Check"},
    }


# -- NodeProvider ----------------------------------------------------------------------------


@pytest.mark.parametrize("etype", [None, "ADDED", "MODIFIED"])
async def test_a_provider_event_remembers_the_provider_and_wakes_its_reconcile(
    world: World, woken: Woken, etype: str | None
) -> None:
    on_provider_event(world, etype, provider())

    assert world.providers.specs["sim"].spec.driver == "simulator"
    assert world.bodies.get(("NodeProvider", "", "sim")) == provider()
    assert await runs(woken) == {"provider": ["sim"]}


async def test_the_echo_of_the_providers_own_write_wakes_nothing(
    world: World, woken: Woken
) -> None:
    world.bodies.wrote(("NodeProvider", "", "sim"), provider("11"))

    on_provider_event(world, "MODIFIED", provider("11"))

    assert await runs(woken) == {}


async def test_a_deleted_provider_is_forgotten_and_its_clusters_are_woken(
    world: World, woken: Woken, clusters: LocalClusterIndex
) -> None:
    on_provider_event(world, "ADDED", provider())
    world.providers.credentials["sim"] = ("10", {"token": "s3cret"})
    world.providers.errors["sim"] = (Reason.INVALID_PROVIDER_CONFIG, "bad")
    clusters.apply(WatchEvent("nodeclusters", "ADDED", cluster()))
    elsewhere = cluster()
    elsewhere["metadata"]["name"] = "api"
    elsewhere["spec"]["providerRef"]["name"] = "elsewhere"
    clusters.apply(WatchEvent("nodeclusters", "ADDED", elsewhere))
    await runs(woken)
    world.queues.provider.add("sim", delay=60)  # its next poll
    woken["provider"].clear()

    on_provider_event(world, "DELETED", provider())

    assert "sim" not in world.providers.specs
    assert "sim" not in world.providers.credentials
    assert "sim" not in world.providers.errors
    assert world.bodies.get(("NodeProvider", "", "sim")) is None
    assert not world.queues.provider.knows("sim")
    assert await runs(woken, after=120) == {"cluster": [CLUSTER]}


# -- NodeCluster -----------------------------------------------------------------------------


@pytest.mark.parametrize("etype", [None, "MODIFIED"])
async def test_a_cluster_event_remembers_its_newest_body_and_wakes_it(
    world: World, woken: Woken, etype: str | None
) -> None:
    on_cluster_event(world, etype, cluster())

    assert world.bodies.get(("NodeCluster", *CLUSTER)) == cluster()
    assert await runs(woken, after=60) == {"cluster": [CLUSTER]}


async def test_a_cluster_added_wakes_it_and_soon_its_provider_which_it_now_uses(
    world: World, woken: Woken
) -> None:
    start = asyncio.get_running_loop().time()

    on_cluster_event(world, "ADDED", cluster())

    assert await runs(woken, after=60) == {"cluster": [CLUSTER], "provider": ["sim"]}
    [(_, when)] = woken["provider"]
    assert when - start == pytest.approx(PROVIDER_REFRESH_SECONDS)


async def test_a_cluster_event_also_wakes_the_clusters_unfinished_operations(
    world: World, woken: Woken
) -> None:
    world.book.pending_operations.add(CLUSTER)

    on_cluster_event(world, "MODIFIED", cluster())

    assert await runs(woken) == {"cluster": [CLUSTER], "operation": [CLUSTER]}


async def test_the_echo_of_the_clusters_own_write_wakes_nothing(world: World, woken: Woken) -> None:
    world.bodies.wrote(("NodeCluster", *CLUSTER), cluster("21"))

    on_cluster_event(world, "MODIFIED", cluster("21"))

    assert await runs(woken) == {}


async def test_a_deleted_cluster_is_forgotten_everywhere(
    world: World, woken: Woken, clock: LoopClock
) -> None:
    on_cluster_event(world, "ADDED", cluster())
    book = world.book
    book.lock(CLUSTER)
    book.progress_written[CLUSTER] = 1.0
    book.poll_intervals[CLUSTER] = 60.0
    book.orphans_suspected.add(CLUSTER)
    world.expectations.expect_create(CLUSTER, NodeView(name="web-x2", created_at=clock.now()))
    await runs(woken)
    world.queues.cluster.add(CLUSTER, delay=3600)  # its idle resync
    woken["cluster"].clear()
    woken["provider"].clear()

    on_cluster_event(world, "DELETED", cluster())

    assert CLUSTER not in book.locks
    assert CLUSTER not in book.progress_written
    assert CLUSTER not in book.poll_intervals
    assert CLUSTER not in book.orphans_suspected
    assert world.expectations.in_flight(CLUSTER) == 0
    assert world.bodies.get(("NodeCluster", *CLUSTER)) is None
    assert not world.queues.cluster.knows(CLUSTER)
    # Its provider looks again: it may have been its last user.
    assert await runs(woken, after=4000) == {"provider": ["sim"]}


async def test_a_deleted_cluster_with_unfinished_operations_wakes_them_to_fail(
    world: World, woken: Woken
) -> None:
    on_cluster_event(world, "MODIFIED", cluster())
    world.book.pending_operations.add(CLUSTER)
    await runs(woken)
    woken["cluster"].clear()
    woken["operation"].clear()

    on_cluster_event(world, "DELETED", cluster())

    assert CLUSTER not in world.book.pending_operations
    assert (await runs(woken))["operation"] == [CLUSTER]


# -- ClusterNode -----------------------------------------------------------------------------


async def test_a_new_node_is_reconciled_at_once_and_its_cluster_after_the_debounce(
    world: World, woken: Woken
) -> None:
    start = asyncio.get_running_loop().time()

    on_node_event(world, "ADDED", node())

    assert await runs(woken) == {"node": [NODE], "cluster": [CLUSTER]}
    assert woken["node"][0][1] - start == pytest.approx(0)
    debounce = world.settings.child_debounce_seconds
    assert woken["cluster"][0][1] - start == pytest.approx(debounce)
    assert world.bodies.get(("ClusterNode", *NODE)) == node()


async def test_a_settled_node_wakes_only_its_cluster_and_is_not_kept(
    world: World, woken: Woken
) -> None:
    on_node_event(world, "MODIFIED", node(status=SETTLED))

    assert await runs(woken) == {"cluster": [CLUSTER]}
    assert world.bodies.get(("ClusterNode", *NODE)) is None


async def test_a_node_event_wakes_its_clusters_unfinished_operations_after_the_debounce(
    world: World, woken: Woken
) -> None:
    world.book.pending_operations.add(CLUSTER)
    start = asyncio.get_running_loop().time()

    on_node_event(world, "MODIFIED", node(status=SETTLED))

    assert await runs(woken) == {"cluster": [CLUSTER], "operation": [CLUSTER]}
    debounce = world.settings.child_debounce_seconds
    assert woken["operation"][0][1] - start == pytest.approx(debounce)


async def test_the_echo_of_a_nodes_own_status_write_wakes_only_its_cluster(
    world: World, woken: Woken
) -> None:
    provisioning = {**SETTLED, "state": "Provisioning"}
    world.bodies.wrote(("ClusterNode", *NODE), node("31", provisioning))

    on_node_event(world, "MODIFIED", node("31", provisioning))

    assert await runs(woken) == {"cluster": [CLUSTER]}


async def test_a_deleted_node_is_forgotten_and_its_cluster_woken(
    world: World, woken: Woken
) -> None:
    on_node_event(world, "ADDED", node())
    await runs(woken)
    world.queues.node.add(NODE, delay=15)  # its next look
    for seen in woken.values():
        seen.clear()

    on_node_event(world, "DELETED", node())

    assert world.bodies.get(("ClusterNode", *NODE)) is None
    assert not world.queues.node.knows(NODE)
    assert await runs(woken, after=60) == {"cluster": [CLUSTER]}


# -- NodeClusterOperation --------------------------------------------------------------------


@pytest.mark.parametrize("etype", [None, "ADDED", "MODIFIED"])
async def test_an_operation_event_wakes_its_clusters_operations(
    world: World, woken: Woken, etype: str | None
) -> None:
    on_operation_event(world, etype, operation())

    assert await runs(woken) == {"operation": [CLUSTER]}


async def test_a_deleted_operation_wakes_nothing(world: World, woken: Woken) -> None:
    on_operation_event(world, "DELETED", operation())

    assert await runs(woken) == {}


# -- restarts, with the real controllers -----------------------------------------------------


def cluster_state(fake: FakeKube) -> str | None:
    return (fake.stored(NODECLUSTERS, NS, "web") or {}).get("status", {}).get("state")


async def test_a_restart_over_converged_state_writes_nothing(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    body = cluster()
    del body["metadata"]["resourceVersion"]
    body["spec"]["targetNodes"] = 3
    await fake.create(NODECLUSTERS, NS, body)
    await harness.wait_for(lambda: cluster_state(fake) == "Deployed")
    await asyncio.sleep(600)  # usage figures refreshed, every timer of the converge passed
    fake.reset_journal()
    lists = faults.count("list")

    await harness.restart()
    await harness.idle()
    await asyncio.sleep(600)

    assert faults.count("list") > lists  # the new world did look at the provider
    assert fake.writes == 0
    assert cluster_state(fake) == "Deployed"
    assert faults.count("create") == 3


async def test_after_a_restart_a_node_waiting_for_a_retry_is_reconciled_at_once(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    faults.fail("create", CapacityExceeded("zone-a is full"), times=None)
    fake.add(NODEPROVIDERS, provider_body(inventory))
    body = node()
    del body["metadata"]["resourceVersion"]
    body["metadata"]["finalizers"] = [NODE_FINALIZER]
    await fake.create(CLUSTERNODES, NS, body)
    # Six failures: the next retry of this process is half a minute or more away.
    await harness.wait_for(lambda: faults.count("create") == 6, within=120)

    faults.clear()  # the provider recovers, and the operator restarts
    await harness.restart()
    start = asyncio.get_running_loop().time()

    def running() -> bool:
        return (fake.stored(CLUSTERNODES, NS, "web-x1") or {}).get("status", {}).get(
            "state"
        ) == "Running"

    await harness.wait_for(running, within=2)
    assert asyncio.get_running_loop().time() - start < 1
