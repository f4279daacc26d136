"""Warm pools, pure: what the planner does with warm nodes (planning/warmpool.py's rules)
and what status says of them.

Times are fixed (builders.NOW); every case says which rule could break it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from builders import NOW, OUTDATED, declared, node, observed, ready_nodes, spec
from pydantic import ValidationError

from nodecluster.api.nodecluster import NodeClusterSpec
from nodecluster.api.reasons import Reason
from nodecluster.planning.model import NodeView
from nodecluster.planning.planner import Plan, plan
from nodecluster.planning.status import cluster_status
from nodecluster.planning.warmpool import WARM_POOL_CONDITION, PoolMove

POOL = {"size": 2}


def warm(name: str, *, state: str = "Stopped", age: float = 600, **fields: Any) -> NodeView:
    """A warm node, ready at a Stopped pool's state unless told."""
    fields.setdefault("power_state", "Stopped" if state in ("Stopped", "Stopping") else "Running")
    fields.setdefault("ready", state == "Running")
    fields.setdefault("warm", True)
    return node(name, age=age, state=state, **fields)


def with_pool(pool: dict[str, Any] = POOL, **fields: Any) -> NodeClusterSpec:
    return spec(warmPool=pool, **fields)


def promoted(p: Plan) -> list[str]:
    return [m.name for m in p.moves if not m.warm]


def warm_creates(p: Plan) -> list[str | None]:
    return [c.zone for c in p.creates if c.warm]


def serving_creates(p: Plan) -> int:
    return sum(1 for c in p.creates if not c.warm)


def test_without_a_pool_nothing_changes() -> None:
    # Rule: no warmPool, no warm anything: the plan and status are those of before.
    p = plan(declared(spec(targetNodes=3)), observed(ready_nodes(3)))
    status = cluster_status(declared(spec(targetNodes=3)), observed(ready_nodes(3)), p).status

    assert p.empty and p.pool is None
    assert status.warm_nodes is None
    assert status.selector == "nodecluster.io/cluster=web"
    assert all(c.type != WARM_POOL_CONDITION for c in status.conditions)


def test_a_new_pool_is_filled_beside_the_target_at_its_power_state() -> None:
    # Rule 6: the pool is created outside the target, Stopped by default, and the
    # cluster is Deployed on its serving nodes meanwhile (the refill does not block it).
    d = declared(with_pool(targetNodes=3))
    o = observed(ready_nodes(3))
    p = plan(d, o)

    assert serving_creates(p) == 0
    assert [(c.warm, c.power_state) for c in p.creates] == [(True, "Stopped")] * 2
    report = cluster_status(d, o, p)
    assert report.size_change is None  # the target did not move
    status = report.status
    assert (status.state, status.current_nodes, status.warm_nodes) == ("Deployed", 3, 2)
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert ready.status == "True"
    pool = next(c for c in status.conditions if c.type == WARM_POOL_CONDITION)
    assert (pool.status, pool.reason) == ("False", "WarmPoolFilling")


def test_the_scale_selector_excludes_warm_nodes_once_there_is_a_pool() -> None:
    # An HPA reading status.selector must never count warm nodes.
    d = declared(with_pool(targetNodes=1))
    o = observed([*ready_nodes(1), warm("w0"), warm("w1")])
    status = cluster_status(d, o, plan(d, o)).status

    assert status.selector == "nodecluster.io/cluster=web,nodecluster.io/pool notin (warm)"
    assert (status.current_nodes, status.ready_nodes, status.warm_nodes) == (1, 1, 2)
    pool = next(c for c in status.conditions if c.type == WARM_POOL_CONDITION)
    assert (pool.status, pool.reason) == ("True", "WarmPoolFull")


def test_a_scale_out_promotes_warm_nodes_first_then_creates_the_rest() -> None:
    # Rule 2: two warm nodes for three new ones: both promoted (started: one write each,
    # label and power together), one created; the pool refills two.
    d = declared(with_pool(targetNodes=5))
    o = observed([*ready_nodes(2), warm("w0"), warm("w1")])
    p = plan(d, o)

    assert sorted(p.moves, key=lambda m: m.name) == [
        PoolMove("w0", False, "Running"),
        PoolMove("w1", False, "Running"),
    ]
    assert serving_creates(p) == 1
    assert len(warm_creates(p)) == 2
    assert not p.power  # the promotion's own write powers the node
    report = cluster_status(d, o, p)
    assert report.size_change is not None and report.size_change.after == 5


def test_ready_warm_nodes_are_promoted_before_those_still_coming_up() -> None:
    # Rule 2: stopped and Stopped first (one start away), then older first.
    d = declared(with_pool({"size": 3}, targetNodes=2))
    nodes = [
        *ready_nodes(1),
        warm("w-new", state="Provisioning", has_machine=False, age=10),
        warm("w-ready"),
        warm("w-stopping", state="Stopping", age=900),
    ]
    assert promoted(plan(d, observed(nodes))) == ["w-ready"]


def test_a_promotion_in_a_stopped_cluster_leaves_the_node_stopped() -> None:
    d = declared(with_pool(targetNodes=2, desiredState="Stopped"))
    nodes = [node("n0", state="Stopped", ready=False, power_state="Stopped"), warm("w0")]

    assert plan(d, observed(nodes)).moves == (PoolMove("w0", False, "Stopped"),)


ZONES = {"placement": {"zones": [{"name": "a"}, {"name": "b"}]}}


@pytest.mark.parametrize(
    ("pool_zones", "expected_promoted", "created_in"),
    [
        # The new node goes to b (a has two, b one): the warm node in b is promoted.
        (["a", "b"], ["w-b"], []),
        # No warm node in b: the spread holds, a node is made in b, w-a stays warm.
        (["a"], [], ["b"]),
    ],
)
def test_promotion_respects_the_zone_spread(
    pool_zones: list[str], expected_promoted: list[str], created_in: list[str]
) -> None:
    d = declared(with_pool({"size": len(pool_zones)}, targetNodes=4, policies=ZONES))
    serving = [node("n0", zone="a"), node("n1", zone="a"), node("n2", zone="b")]
    pool = [warm(f"w-{z}", zone=z) for z in pool_zones]
    p = plan(d, observed([*serving, *pool]))

    assert promoted(p) == expected_promoted
    assert [c.zone for c in p.creates if not c.warm] == created_in


def test_the_refill_spreads_the_pool_over_the_zones() -> None:
    d = declared(with_pool({"size": 4}, targetNodes=0, minNodes=0, policies=ZONES))
    p = plan(d, observed([]))

    assert sorted(warm_creates(p), key=str) == ["a", "a", "b", "b"]


def test_warm_nodes_of_an_older_profile_or_past_their_lifetime_are_replaced() -> None:
    # Rule 4: never promoted; deleted and made again, whatever the rollout strategy.
    lifetime = {"rollout": {"strategy": "OnDelete", "maxNodeLifetimeSeconds": 3600}}
    d = declared(with_pool({"size": 3}, targetNodes=2, policies=lifetime))
    nodes = [
        node("n0", age=60),
        warm("w-old", profile_hash=OUTDATED),
        warm("w-expired", age=7200),
        warm("w-good"),
    ]
    p = plan(d, observed(nodes))

    assert promoted(p) == ["w-good"]
    assert sorted((x.name, x.reason) for x in p.deletes) == [
        ("w-expired", "WarmPool"),
        ("w-old", "WarmPool"),
    ]
    assert len(warm_creates(p)) == 3  # the pool of 3 lost all three (one promoted)


def test_a_suspended_rollout_keeps_stale_warm_nodes_unpromoted_and_says_so() -> None:
    d = declared(with_pool({"size": 1}, targetNodes=2, suspend=["Rollout"]))
    p = plan(d, observed([*ready_nodes(1), warm("w-old", profile_hash=OUTDATED)]))

    assert not p.moves and not p.deletes
    assert serving_creates(p) == 1 and not warm_creates(p)
    assert p.pool is not None and p.pool.reason == Reason.CHANGES_HELD_BACK


def test_a_warm_node_expires_on_schedule() -> None:
    # The next expiry of a warm node is a recheck: an idle cluster looks then.
    lifetime = {"rollout": {"maxNodeLifetimeSeconds": 3600}}
    d = declared(with_pool({"size": 1}, targetNodes=1, policies=lifetime))
    p = plan(d, observed([node("n0", age=60), warm("w0", age=600)]))

    assert p.empty
    assert p.recheck_at is not None and (p.recheck_at - NOW).total_seconds() == 3000


def test_scale_in_returns_nodes_to_the_pool_while_it_is_below_size() -> None:
    # Rule 5: two go; the pool has room for one, which goes back stopped; one is deleted.
    d = declared(with_pool({"size": 2, "reuseOnScaleIn": True}, targetNodes=3))
    p = plan(d, observed([*ready_nodes(5), warm("w0")]))

    assert [(m.warm, m.power_state) for m in p.moves] == [(True, "Stopped")]
    assert [x.reason for x in p.deletes] == ["ScaleIn"]
    assert not p.creates  # the pool is full again
    returned = p.moves[0].name
    status = cluster_status(d, observed([*ready_nodes(5), warm("w0")]), p).status
    assert (status.current_nodes, status.warm_nodes) == (3, 2)
    assert returned not in {x.name for x in p.deletes}


def test_without_reuse_a_scale_in_deletes_and_the_pool_stays_as_it_is() -> None:
    d = declared(with_pool({"size": 2}, targetNodes=3))
    p = plan(d, observed([*ready_nodes(5), warm("w0"), warm("w1")]))

    assert not p.moves
    assert [x.reason for x in p.deletes] == ["ScaleIn", "ScaleIn"]


def test_scale_in_deletes_nodes_that_are_not_fit_for_the_pool() -> None:
    # Rule 5: a victim annotated for deletion is deleted even with room in the pool.
    d = declared(with_pool({"size": 2, "reuseOnScaleIn": True}, targetNodes=2))
    nodes = [*ready_nodes(2), node("marked", marked_for_deletion=True)]
    p = plan(d, observed(nodes))

    assert [(x.name, x.reason) for x in p.deletes] == [("marked", "ScaleIn")]
    assert not p.moves


def test_a_smaller_pool_deletes_the_surplus_and_a_suspended_terminate_holds_it() -> None:
    # Rule 8.
    nodes = [*ready_nodes(1), warm("w0"), warm("w1"), warm("w2")]
    p = plan(declared(with_pool({"size": 1}, targetNodes=1)), observed(nodes))
    assert len(p.deletes) == 2 and {x.reason for x in p.deletes} == {"WarmPool"}

    held = plan(
        declared(with_pool({"size": 1}, targetNodes=1, suspend=["Terminate"])), observed(nodes)
    )
    assert not held.deletes
    assert held.pool is not None and "above the pool's size" in held.pool.message


def test_removing_the_pool_deletes_its_nodes() -> None:
    p = plan(declared(spec(targetNodes=1)), observed([*ready_nodes(1), warm("w0")]))

    assert [(x.name, x.reason) for x in p.deletes] == [("w0", "WarmPool")]
    assert not p.creates


def test_a_suspended_launch_holds_the_refill_but_not_promotion() -> None:
    # Promotion brings no new machine; the refill does.
    d = declared(with_pool(targetNodes=3, suspend=["Launch"]))
    p = plan(d, observed([*ready_nodes(2), warm("w0")]))

    assert promoted(p) == ["w0"]
    assert not p.creates
    assert p.pool is not None and p.pool.reason == Reason.CHANGES_HELD_BACK


def test_the_refill_takes_only_the_quota_room_the_serving_creates_leave() -> None:
    # Rule 6: the target first; the pool is held short, said in its condition, and the
    # cluster is not Stalled for it (its serving nodes are all there).
    d = declared(with_pool(targetNodes=3))
    o = observed(ready_nodes(2), headroom=1)
    p = plan(d, o)

    assert serving_creates(p) == 1 and not warm_creates(p)
    assert not p.blockers
    assert p.pool is not None and p.pool.reason == Reason.QUOTA_EXCEEDED
    status = cluster_status(d, o, p).status
    stalled = next(c for c in status.conditions if c.type == "Stalled")
    assert stalled.status == "False"


def test_a_provider_that_gives_no_machines_holds_the_refill() -> None:
    d = declared(with_pool(targetNodes=1))
    p = plan(d, observed(ready_nodes(1), no_new_machines=("ProviderDeleting", "deleting")))

    assert not p.creates
    assert p.pool is not None and p.pool.reason == Reason.PROVIDER_DELETING


def test_unhealthy_warm_nodes_are_replaced_not_promoted() -> None:
    d = declared(with_pool({"size": 1}, targetNodes=2))
    broken = warm("w0", error_reason="MachineMissing")
    p = plan(d, observed([*ready_nodes(1), broken]))

    assert [(x.name, x.reason) for x in p.deletes] == [("w0", "WarmPool")]
    assert not p.moves
    assert serving_creates(p) == 1 and len(warm_creates(p)) == 1
    assert not p.remediating  # no serving node was remediated

    held = plan(
        declared(with_pool({"size": 1}, targetNodes=2, suspend=["Remediate"])),
        observed([*ready_nodes(1), broken]),
    )
    assert not held.deletes and not held.moves


def test_with_launch_hooks_a_stopped_pool_launches_running_then_stops() -> None:
    # Rule 7: hooks run on a running machine; once launched the node is stopped.
    hooks = {"lifecycleHooks": [{"name": "configure", "transition": "Launch"}]}
    d = declared(with_pool({"size": 3}, targetNodes=0, minNodes=0, policies=hooks))
    nodes = [
        warm("w-launched", state="Running"),
        warm("w-waiting", state="Running", launching=True, ready=False),
    ]
    p = plan(d, observed(nodes))

    assert [(s.name, s.power_state) for s in p.power] == [("w-launched", "Stopped")]
    assert [c.power_state for c in p.creates] == ["Running"]


def test_a_running_pool_starts_its_stopped_members() -> None:
    d = declared(with_pool({"size": 1, "state": "Running"}, targetNodes=0, minNodes=0))
    p = plan(d, observed([warm("w0")]))

    assert [(s.name, s.power_state) for s in p.power] == [("w0", "Running")]


def test_deleting_the_cluster_deletes_warm_nodes_too() -> None:
    d = declared(with_pool(targetNodes=1), deleting=True)
    p = plan(d, observed([*ready_nodes(1), warm("w0")]))

    assert sorted(x.name for x in p.deletes) == ["n0", "w0"]
    assert all(x.reason == "Terminating" for x in p.deletes)


def test_paused_holds_the_pool_too() -> None:
    d = declared(with_pool(targetNodes=3, paused=True))
    assert plan(d, observed([*ready_nodes(1), warm("w0")])).empty


def test_a_warm_node_being_promoted_is_not_promoted_twice() -> None:
    # After the move (as the expectations show it until the cache does), the plan is
    # settled: the promoted node is serving, no other warm node is taken for it.
    d = declared(with_pool({"size": 1}, targetNodes=2))
    nodes = [*ready_nodes(1), warm("w0", power_state="Running", state="Stopped", warm=False)]
    p = plan(d, observed(nodes))

    assert not p.moves and serving_creates(p) == 0
    assert len(warm_creates(p)) == 1  # the pool refills behind it


@pytest.mark.parametrize(
    ("pool", "field"),
    [
        ({"size": -1}, "size"),
        ({"size": 10001}, "size"),
        ({"size": 1, "state": "Hibernated"}, "state"),
    ],
)
def test_the_pool_is_validated(pool: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        spec(warmPool=pool)


def test_a_rollout_that_promotes_warm_nodes_keeps_the_zones_even() -> None:
    """A reviewer's find: promotions mid-rollout were placed as if the outdated nodes
    stayed (as creates were before), and a 1/1/1 cluster ended 2/1/0."""
    the_spec = with_pool(
        {"size": 6, "state": "Running"},
        policies={
            "placement": {"zones": [{"name": z} for z in "abc"]},
            "rollout": {"maxSurge": 1, "maxUnavailable": 0},
        },
        targetNodes=3,
    )
    nodes = [
        node(f"old-{z}", profile_hash=OUTDATED, zone=z, age=3600 - i) for i, z in enumerate("abc")
    ]
    nodes += [warm(f"w-{z}{i}", state="Running", zone=z) for i in range(2) for z in "abc"]
    now = NOW
    for step in range(30):
        p = plan(declared(the_spec), observed(nodes, now=now, seed=step))
        serving = [n for n in nodes if not n.warm and not n.deleting]
        if p.empty and len(serving) == 3 and all(n.profile_hash != OUTDATED for n in serving):
            break
        moved = {m.name: m for m in p.moves}
        gone = {d.name for d in p.deletes}
        nodes = [
            replace(n, warm=moved[n.name].warm, power_state=moved[n.name].power_state)
            if n.name in moved
            else n
            for n in nodes
            if n.name not in gone
        ]
        nodes += [
            node(c.name, age=0, zone=c.zone, warm=c.warm, power_state=c.power_state)
            for c in p.creates
        ]
        now += timedelta(seconds=30)
    else:
        pytest.fail(f"no convergence; last plan {p}")

    assert Counter(n.zone for n in nodes if not n.warm) == {"a": 1, "b": 1, "c": 1}
