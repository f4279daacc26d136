"""Warm pools carried by the controllers, on the fake API and the simulator.

The planner decides (tests/unit/test_planner_warmpool.py); these prove what is written:
warm nodes are labelled ClusterNodes whose machines are stopped, a promotion is one write
of each node, a kill in the middle of a scale-out loses and doubles nothing, the refill
keeps within the quota, a scale-in returns nodes to the pool, and deleting the cluster
deletes the pool's machines too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from clusters import NS, cluster_body, condition, live_nodes, machines, status
from conftest import provider_body

from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.providers.registry import ProviderRegistry
from nodecluster.testing import FakeKube, Harness

POOL_LABEL = "nodecluster.io/pool"


def is_warm(node: dict[str, Any]) -> bool:
    return node["metadata"].get("labels", {}).get(POOL_LABEL) == "warm"


def warm_names(fake: FakeKube) -> set[str]:
    return {n["metadata"]["name"] for n in live_nodes(fake) if is_warm(n)}


def serving_names(fake: FakeKube) -> set[str]:
    return {n["metadata"]["name"] for n in live_nodes(fake) if not is_warm(n)}


def machine_states(inventory: Path) -> dict[str, str]:
    """Machine state by ClusterNode name (the simulator tags each machine with it)."""
    return {m["node"]: m["state"] for m in machines(inventory)}


def settled(fake: FakeKube, inventory: Path, serving: int, warm: int) -> bool:
    """Deployed with `serving` ready nodes, and `warm` warm nodes whose machines are
    stopped; the provider holds exactly those machines."""
    st = status(fake)
    if st.get("state") != ("Deployed" if serving else "Empty") or st.get("readyNodes") != serving:
        return False
    if st.get("currentNodes") != serving or st.get("warmNodes") != warm:
        return False
    states = machine_states(inventory)
    nodes = live_nodes(fake)
    if set(states) != {n["metadata"]["name"] for n in nodes} or len(nodes) != serving + warm:
        return False
    return all(states[name] == "Stopped" for name in warm_names(fake))


async def pooled(
    fake: FakeKube, harness: Harness, inventory: Path, serving: int = 2, **pool: Any
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    spec = {"targetNodes": serving, "warmPool": {"size": 2, **pool}}
    await fake.create(NODECLUSTERS, NS, cluster_body(**spec))
    size = spec["warmPool"]["size"]
    await harness.wait_for(
        lambda: (
            settled(fake, inventory, serving, size)
            and condition(fake, "WarmPool").get("status") == "True"
        ),
        what="the cluster Deployed and its pool full",
    )


async def test_a_pool_is_made_of_labelled_nodes_with_stopped_machines(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await pooled(fake, harness, inventory)

    assert len(warm_names(fake)) == 2 and len(serving_names(fake)) == 2
    st = status(fake)
    assert st["selector"] == "nodecluster.io/cluster=web,nodecluster.io/pool notin (warm)"
    assert condition(fake, "Ready")["status"] == "True"
    assert condition(fake, "WarmPool")["reason"] == "WarmPoolFull"


async def test_a_scale_out_promotes_warm_nodes_one_write_each_and_refills(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await pooled(fake, harness, inventory)
    warm_before = warm_names(fake)
    await harness.idle()
    fake.reset_journal()

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 4}})
    await harness.wait_for(
        lambda: settled(fake, inventory, 4, 2), what="4 serving, the pool refilled"
    )

    assert warm_before <= serving_names(fake)  # both warm nodes now serve
    for name in warm_before:
        # Label and power state in one write: never half promoted.
        assert len(fake.calls_of("patch", CLUSTERNODES.plural, name)) == 1
    created = fake.calls_of("create", CLUSTERNODES.plural)
    assert len(created) == 2  # the refill only: no serving node was created
    assert {c.name for c in created} == warm_names(fake)
    promoted = fake.events_about("web", reason="WarmNodesPromoted")
    assert len(promoted) == 1 and "promoted 2 warm node(s)" in promoted[0]["message"]


async def test_a_kill_during_a_scale_out_from_the_pool_loses_and_doubles_nothing(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await pooled(fake, harness, inventory)

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 3}})
    await harness.wait_for(
        lambda: len(serving_names(fake)) == 3, what="the first promotion written"
    )
    await harness.restart(kill=True)
    await harness.wait_for(lambda: settled(fake, inventory, 3, 2), what="converged again")

    names = [m["node"] for m in machines(inventory)]
    assert len(names) == len(set(names)) == 5


async def test_the_refill_keeps_within_the_quota_and_says_so(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, quotas={"maxNodes": 3}))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=2, warmPool={"size": 2}))
    await harness.wait_for(
        lambda: condition(fake, "WarmPool").get("reason") == "QuotaExceeded", what="held short"
    )
    await harness.wait_for(lambda: settled(fake, inventory, 2, 1), what="2 serving, 1 warm")

    # The target is served: Ready, and nothing for a person to do (not Stalled).
    assert condition(fake, "Ready")["status"] == "True"
    assert condition(fake, "Stalled")["status"] == "False"
    assert "quotas.maxNodes 3" in condition(fake, "WarmPool")["message"]


async def test_a_scale_in_returns_nodes_to_the_pool_stopped(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await pooled(fake, harness, inventory, serving=4, size=3, reuseOnScaleIn=True)
    # Promote one, so the pool has room for a node coming back.
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 5}})
    await harness.wait_for(lambda: settled(fake, inventory, 5, 3), what="scaled out")
    before = {n["metadata"]["name"] for n in live_nodes(fake)}
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 3, "warmPool": {
        "size": 4, "reuseOnScaleIn": True}}})  # fmt: skip
    await harness.wait_for(lambda: settled(fake, inventory, 3, 4), what="scaled in")

    after = {n["metadata"]["name"] for n in live_nodes(fake)}
    assert len(before - after) == 1  # one of the two went back to the pool, one was deleted
    assert after - before == set()  # and nothing was made for it


async def test_deleting_the_cluster_deletes_the_pool_machines_too(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await pooled(fake, harness, inventory)

    await fake.delete(NODECLUSTERS, NS, "web")
    await harness.wait_for(lambda: fake.stored(NODECLUSTERS, NS, "web") is None, what="gone")

    assert fake.objects(CLUSTERNODES, NS) == []
    assert machines(inventory) == []


async def test_launch_hooks_run_on_warm_nodes_before_they_are_stopped(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    hooks = [{"name": "configure", "transition": "Launch", "timeoutSeconds": 60,
              "defaultResult": "Continue"}]  # fmt: skip
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(
        NODECLUSTERS,
        NS,
        cluster_body(targetNodes=0, warmPool={"size": 1}, policies={"lifecycleHooks": hooks}),
    )
    await harness.wait_for(
        lambda: any((n.get("status") or {}).get("lifecycleHook") for n in live_nodes(fake)),
        what="the warm node waiting on its hook, its machine running",
    )
    assert set(machine_states(inventory).values()) == {"Running"}

    await harness.wait_for(lambda: settled(fake, inventory, 0, 1), what="stopped after launch")
    node = live_nodes(fake)[0]
    hook = next(c for c in node["status"]["conditions"] if c["type"] == "LifecycleHook")
    assert hook["reason"] == "LaunchHooksCompleted"


@pytest.mark.parametrize("lag", [10.0, 120.0])
async def test_a_lagging_watch_never_promotes_twice_nor_overfills(
    fake: FakeKube, registry: ProviderRegistry, clock: LoopClock, inventory: Path, lag: float
) -> None:
    # Promotions are expected until the cache shows them (expectations.py): a reconcile in
    # between (the 30 s safety net comes before a lagging echo) sees the node serving, so
    # it neither writes the promotion again, nor takes another warm node for the same
    # place, nor refills the pool for it twice.
    fake.add(NODEPROVIDERS, provider_body(inventory))
    async with Harness(fake, registry=registry, clock=clock) as harness:
        await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=1, warmPool={"size": 3}))
        await harness.wait_for(lambda: settled(fake, inventory, 1, 3), what="the pool full")
    fake.reset_journal()
    async with Harness(fake, registry=registry, clock=clock, watch_lag=lag) as harness:
        await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 3}})
        await harness.wait_for(
            lambda: settled(fake, inventory, 3, 3), within=3 * lag + 600, poll=1.0
        )

    promotions = fake.calls_of("patch", CLUSTERNODES.plural)
    assert len(promotions) == len({c.name for c in promotions}) == 2  # one write each
    assert len(fake.calls_of("create", CLUSTERNODES.plural)) == 2  # the refill, once
