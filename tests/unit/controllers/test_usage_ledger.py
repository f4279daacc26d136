"""The usage ledger (usage.py) counts exactly what the node cache shows (issue 11).

Quotas are checked against the ledger instead of a walk over every cached ClusterNode, so
the ledger must equal that walk whatever happens: nodes made by a cluster's controller and
by hand, their provider or machine type changed, their machines coming and going, nodes
deleted, the operator restarted. Each scenario here is a random sequence of such changes
(seeded, so a failure replays), made while the real controllers run on the fake API; the
ledger is compared with a count over the whole index after every change, after every
ClusterNode event delivered and at every poll while the operator works. The walks are
kept here, in the test, on purpose: the code must not need them.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from clusters import NS, cluster_body
from conftest import provider_body

from nodecluster.api.nodeprovider import NodeProvider
from nodecluster.clock import LoopClock
from nodecluster.controllers.assembly import build_world
from nodecluster.controllers.events import WATCHED, on_node_event
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.controllers.quota import provider_usage
from nodecluster.controllers.usage import held_by_body
from nodecluster.controllers.world import IndexedNode, Settings, World, index_node
from nodecluster.providers.registry import ProviderRegistry
from nodecluster.testing import FakeKube, Harness, LocalClusterIndex, LocalNodeIndex, WatchEvent

PROVIDERS = ("sim", "big", "gone")
"""`sim` has quotas (so machines are reserved and refused), `big` has none, `gone` does
not exist (its nodes wait, holding nothing)."""
MACHINE_TYPES = ("small", "large", "odd")
"""`odd` is in no bucket: it counts one core."""
HAND_MADE = [f"by-hand-{i}" for i in range(8)]
NODES_LAST = ("nodeproviders", "nodeclusters", "nodeclusteroperations", "clusternodes")
"""The initial listing's order at a start: clusters reconcile (and count their provider's
usage) before any node's own event is handled, as kopf's watchers may deliver them."""

BUCKETS = [
    {"zone": "zone-a", "machineType": "small", "cores": 2},
    {"zone": "zone-b", "machineType": "large", "cores": 4},
]


# -- the walks the ledger replaces ----------------------------------------------------------


def walk(index: LocalNodeIndex) -> list[tuple[str, IndexedNode]]:
    """Every cached node, with its namespace."""
    return [(namespace, node) for (namespace, _), store in index.items() for node in store]


def counted_by_walking(index: LocalNodeIndex, provider: str, machines_only: bool) -> Counter[str]:
    """The cached nodes of `provider` (those holding a machine, with `machines_only`), by
    machine type."""
    return Counter(
        node.machine_type
        for _, node in walk(index)
        if node.provider == provider and (node.has_machine or not machines_only)
    )


def usage_by_walking(world: World, index: LocalNodeIndex, provider: str) -> tuple[int, int]:
    """`quota.provider_usage` as it was written before the ledger: every cached node of the
    provider, plus every create in flight the cache does not show as one of its nodes."""
    cores_of = world.providers.cores_by_type(provider)
    nodes = cores = 0
    cached: set[tuple[str, str]] = set()
    for namespace, node in walk(index):
        if node.provider == provider:
            nodes += 1
            cores += cores_of.get(node.machine_type, 1)
            cached.add((namespace, node.name))
    for (namespace, _), view in world.expectations.creates_in_flight():
        if getattr(view, "provider", None) == provider and (namespace, view.name) not in cached:
            nodes += 1
            cores += cores_of.get(getattr(view, "machine_type", ""), 1)
    return nodes, cores


def assert_ledger_is_the_walk(harness: Harness) -> None:
    """The ledger's every count equals the walk's, and no reservation is left of a node the
    cache shows holding its machine (it would be counted twice)."""
    world, index = harness.world, harness.index
    cached = {(namespace, node.name): node for namespace, node in walk(index)}
    for provider in PROVIDERS:
        assert world.usage.nodes(provider) == counted_by_walking(index, provider, False)
        assert world.usage.machines(provider) == counted_by_walking(index, provider, True)
        assert provider_usage(world, provider) == usage_by_walking(world, index, provider)
        for name in HAND_MADE + [n for (_, n) in cached]:
            node = cached.get((NS, name))
            shown = node is not None and node.provider == provider
            assert world.usage.shows(NS, name, provider) == shown, (provider, name)
            assert world.usage.shows_machine(NS, name, provider) == (
                shown and node is not None and node.has_machine
            ), (provider, name)
    for provider, held in world.reservations.by_provider.items():
        assert world.reservations.types[provider] == Counter(held.values())
        for _, namespace, name in held:
            node = cached.get((namespace, name))
            assert node is None or node.provider != provider or not node.has_machine, name


# -- the changes ------------------------------------------------------------------------------


def hand_made(name: str, cluster: str, provider: str, machine_type: str) -> dict[str, Any]:
    return {
        "apiVersion": "nodecluster.io/v1alpha1",
        "kind": "ClusterNode",
        "metadata": {"name": name, "namespace": NS, "finalizers": ["nodecluster.io/machine"]},
        "spec": {
            "clusterName": cluster,
            "providerRef": {"name": provider},
            "profile": {"machineType": machine_type},
        },
    }


def existing_nodes(fake: FakeKube) -> list[str]:
    return sorted(n["metadata"]["name"] for n in fake.objects(CLUSTERNODES, NS))


async def change_something(fake: FakeKube, rng: random.Random) -> str:
    """One random change a person or another writer could make; returns what it was."""
    names = existing_nodes(fake)
    what = rng.choice(["create", "create", "retype", "move", "machine", "delete", "scale"])
    if what == "create" or not names:
        name = rng.choice(HAND_MADE)
        if fake.stored(CLUSTERNODES, NS, name) is None:
            cluster = rng.choice(["by-hand", "web"])  # alone, or among a cluster's own
            provider, machine_type = rng.choice(PROVIDERS), rng.choice(MACHINE_TYPES)
            await fake.create(CLUSTERNODES, NS, hand_made(name, cluster, provider, machine_type))
        return f"create {name}"
    name = rng.choice(names)
    if what == "retype":  # the schema forbids it; the ledger must not care
        patch = {"spec": {"profile": {"machineType": rng.choice(MACHINE_TYPES)}}}
        await fake.patch(CLUSTERNODES, NS, name, patch)
    elif what == "move":  # likewise
        await fake.patch(
            CLUSTERNODES, NS, name, {"spec": {"providerRef": {"name": rng.choice(PROVIDERS)}}}
        )
    elif what == "machine":  # another writer's status: a machine appears or is lost
        provider_id = rng.choice([None, f"sim://{name}"])
        await fake.patch(
            CLUSTERNODES, NS, name, {"status": {"providerId": provider_id}}, status=True
        )
    elif what == "delete":
        await fake.delete(CLUSTERNODES, NS, name)
    else:
        cluster = rng.choice(["web", "db"])
        await fake.patch(NODECLUSTERS, NS, cluster, {"spec": {"targetNodes": rng.randint(0, 5)}})
        return f"scale {cluster}"
    return f"{what} {name}"


async def run_checked(harness: Harness) -> None:
    """Let the operator do all it will do, checking the ledger at every poll meanwhile."""

    def checked_idle() -> bool:
        assert_ledger_is_the_walk(harness)
        return not harness.busy()

    await harness.wait_for(checked_idle, what="the operator being idle")


@pytest.fixture
async def fleet(fake: FakeKube, tmp_path: Path) -> FakeKube:
    """Three providers (see PROVIDERS) and a NodeCluster on each that exists."""
    quotas = {"maxNodes": 6, "maxCores": 20}
    fake.add(NODEPROVIDERS, provider_body(tmp_path / "sim.db", quotas=quotas, buckets=BUCKETS))
    fake.add(NODEPROVIDERS, provider_body(tmp_path / "big.db", name="big", buckets=BUCKETS))
    fake.add(NODECLUSTERS, cluster_body("web", targetNodes=2))
    db = cluster_body("db", targetNodes=2, providerRef={"name": "big"})
    db["spec"]["profile"] = {"machineType": "large"}
    fake.add(NODECLUSTERS, db)
    return fake


def check_every_node_event(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Compare the ledger with the walk after every ClusterNode event the harness delivers
    too (reservations live only between a node's create and its status write); returns
    where they differed, for the test to assert on (the harness's event pump must not die
    of an assertion)."""
    differences: list[str] = []
    handle = WATCHED["clusternodes"]

    def checked(world: World, type: str | None, body: Mapping[str, Any]) -> None:
        handle(world, type, body)
        try:
            assert_ledger_is_the_walk(harness)
        except AssertionError as err:
            differences.append(f"after {type} {body['metadata']['name']}: {err!r}")

    monkeypatch.setitem(WATCHED, "clusternodes", checked)
    return differences


@pytest.mark.parametrize("seed", range(8))
async def test_the_ledger_counts_what_the_cache_shows(
    fleet: FakeKube,
    registry: ProviderRegistry,
    clock: LoopClock,
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
) -> None:
    rng = random.Random(seed)
    harness = Harness(fleet, registry=registry, clock=clock, initial_order=NODES_LAST)
    differences = check_every_node_event(harness, monkeypatch)
    await harness.start()
    done: list[str] = []
    try:
        await run_checked(harness)
        for step in range(40):
            if step in (15, 30):
                await harness.restart(kill=step == 30)
                done.append("restart")
                assert_ledger_is_the_walk(harness)
            done.append(await change_something(fleet, rng))
            assert_ledger_is_the_walk(harness)  # the change's event is not delivered yet
            if rng.random() < 0.5:  # else the next change comes while this one is handled
                await run_checked(harness)
        await run_checked(harness)
    finally:
        await harness.stop()
    assert differences == [], done


async def test_a_restart_counts_nodes_listed_before_their_events(
    fake: FakeKube, registry: ProviderRegistry, clock: LoopClock, inventory: Path
) -> None:
    """kopf fills its index from the initial listing before any handler runs, but the
    nodes' own events may come after their clusters reconciled: a ledger counting only
    events would see an empty provider then, and give a second cluster the whole quota."""
    fake.add(NODEPROVIDERS, provider_body(inventory, quotas={"maxNodes": 3}))
    fake.add(NODECLUSTERS, cluster_body("web", targetNodes=3))
    async with Harness(fake, registry=registry, clock=clock) as first:
        await first.wait_for(lambda: len(existing_nodes(fake)) == 3, what="three nodes")
        await first.idle()
    fake.add(NODECLUSTERS, cluster_body("late", targetNodes=2))
    fake.reset_journal()

    harness = Harness(fake, registry=registry, clock=clock, initial_order=NODES_LAST)
    await harness.start()  # every cluster has reconciled once when it returns
    try:
        assert_ledger_is_the_walk(harness)
        await run_checked(harness)
        assert fake.calls_of("create", "clusternodes") == []
        assert len(existing_nodes(fake)) == 3
    finally:
        await harness.stop()


async def test_a_node_cached_before_its_event_is_counted_once(
    fake: FakeKube, registry: ProviderRegistry, clock: LoopClock, inventory: Path
) -> None:
    """kopf may run other tasks between taking a watch event into its index and handing
    it to on_node_event. A cluster reconciling in between ends the expected create that
    its cache shows (World.nodes_of): the node must be counted from the cache by then."""
    index = LocalNodeIndex()
    world = build_world(Settings(), fake, registry, clock, index, LocalClusterIndex())
    provider = provider_body(inventory, quotas={"maxNodes": 3}, buckets=BUCKETS)
    world.providers.specs["sim"] = NodeProvider.model_validate(provider)
    body = hand_made("web-1", "web", "sim", "small")
    (view,) = index_node(body).values()
    try:
        assert provider_usage(world, "sim") == (0, 0)
        world.expectations.expect_create((NS, "web"), view)
        assert provider_usage(world, "sim") == (1, 2)

        index.apply(WatchEvent("clusternodes", "ADDED", body))  # the event, not handled yet
        world.nodes_of((NS, "web"))  # the cluster's reconcile
        assert world.expectations.in_flight((NS, "web")) == 0
        assert provider_usage(world, "sim") == (1, 2)

        on_node_event(world, "ADDED", body)
        assert provider_usage(world, "sim") == (1, 2)
    finally:
        await world.queues.abort()


def test_what_a_body_holds_is_what_the_index_shows() -> None:
    """The ledger reads three fields straight from a watch event's body; the index
    validates the whole body. Both must read them alike, status or none."""
    bodies: Iterable[dict[str, Any]] = [
        hand_made("a", "web", "sim", "small"),
        {**hand_made("b", "web", "big", "large"), "status": {"providerId": "sim://b"}},
        {**hand_made("c", "web", "sim", "odd"), "status": {"providerId": ""}},
        {**hand_made("d", "web", "sim", "odd"), "status": {"providerId": None}},
    ]
    for body in bodies:
        (view,) = index_node(body).values()
        assert held_by_body(body) == (
            view.provider,
            view.machine_type,
            view.has_machine,
            view.zone,
        )
