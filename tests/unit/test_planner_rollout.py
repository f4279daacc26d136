"""plan(): replacing nodes built from an older profile.

RollingUpdate works within maxSurge (nodes above the target) and maxUnavailable (ready
nodes below the target); OnDelete leaves old nodes alone. The convergence tests play
the controller: execute each plan, check availability, let machines come up and
go, plan again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from builders import (
    CURRENT,
    NOW,
    OUTDATED,
    declared,
    execute,
    node,
    observed,
    ready_nodes,
    settle,
    spec,
)

from nodecluster.planning.model import NodeView
from nodecluster.planning.planner import plan, resolve_int_or_percent


def rollout(**fields: Any) -> dict[str, Any]:
    return {"policies": {"rollout": fields}}


def outdated(count: int) -> list[NodeView]:
    return ready_nodes(count, prefix="old", profile_hash=OUTDATED)


def test_surge_one_creates_one_new_node_and_deletes_no_ready_old_node() -> None:
    the_spec = spec(rollout(maxSurge=1, maxUnavailable=0), targetNodes=3)
    p = plan(declared(the_spec), observed(outdated(3)))

    assert p.rolling
    assert len(p.creates) == 1
    assert p.deletes == ()


def test_surge_node_not_ready_yet_holds_the_rollout() -> None:
    the_spec = spec(rollout(maxSurge=1, maxUnavailable=0), targetNodes=3)
    first = plan(declared(the_spec), observed(outdated(3)))
    nodes = execute(first, outdated(3), NOW)  # the new node is Provisioning

    p = plan(declared(the_spec), observed(nodes, now=NOW + timedelta(seconds=5)))

    assert p.rolling
    assert p.empty


def test_once_the_surge_node_is_ready_one_old_node_goes_and_another_new_one_comes() -> None:
    the_spec = spec(rollout(maxSurge=1, maxUnavailable=0), targetNodes=3)
    nodes = [*outdated(3), *ready_nodes(1, prefix="new")]

    p = plan(declared(the_spec), observed(nodes))

    assert [d.reason for d in p.deletes] == ["Rollout"]
    assert p.deletes[0].name.startswith("old")
    assert len(p.creates) == 1


def test_max_unavailable_lets_old_nodes_go_before_new_ones_are_ready() -> None:
    the_spec = spec(rollout(maxSurge=0, maxUnavailable=2), targetNodes=4)
    p = plan(declared(the_spec), observed(outdated(4)))

    assert len(p.deletes) == 2
    assert len(p.creates) == 2


def test_not_ready_old_nodes_do_not_count_as_available() -> None:
    the_spec = spec(rollout(maxSurge=1, maxUnavailable=0), targetNodes=3)
    nodes = [*outdated(2), replace(outdated(3)[2], ready=False, state="Provisioning")]

    p = plan(declared(the_spec), observed(nodes))

    assert [d.name for d in p.deletes] == ["old2"]
    assert len(p.creates) == 2  # the replacement plus the surge node


@pytest.mark.parametrize("surge", [0, 1, "50%"])
def test_on_delete_leaves_old_nodes_alone(surge: int | str) -> None:
    the_spec = spec(rollout(strategy="OnDelete", maxSurge=surge), targetNodes=3)
    p = plan(declared(the_spec), observed(outdated(3)))

    assert not p.rolling
    assert p.empty


def test_on_delete_replaces_a_removed_node_with_the_current_profile() -> None:
    # The planner has no profile on a create: new nodes get the cluster's current one.
    # What OnDelete guarantees is that only the missing node is created.
    the_spec = spec(rollout(strategy="OnDelete"), targetNodes=3)
    p = plan(declared(the_spec), observed(outdated(2)))

    assert len(p.creates) == 1
    assert p.deletes == ()


@pytest.mark.parametrize("criteria", ["OldestFirst", "YoungestFirst", "Random"])
@pytest.mark.parametrize(("target", "unavailable"), [(2, 0), (2, 1), (3, 0), (1, 0)])
def test_scaling_in_mid_rollout_keeps_availability(
    criteria: str, target: int, unavailable: int
) -> None:
    # A rollout at 5 nodes with maxSurge 40% (2) is under way, two new nodes
    # provisioning, when the target drops: the extra nodes must go without ready
    # nodes falling below the new target minus maxUnavailable.
    the_spec = spec(
        rollout(maxSurge="40%", maxUnavailable=unavailable),
        {"policies": {"deletion": {"criteria": criteria}}},
        targetNodes=target,
    )
    provisioning = [node(f"new{i}", state="Provisioning", ready=False, age=5) for i in range(2)]
    nodes = [*outdated(4), *provisioning]

    now = NOW
    for step in range(12):
        p = plan(declared(the_spec), observed(nodes, now=now, seed=step))
        if p.empty and converged(nodes, target):
            break
        assert p.blockers == ()
        nodes = execute(p, nodes, now)
        ready = sum(1 for n in nodes if n.ready and not n.deleting)
        assert ready >= target - unavailable, f"step {step}: {ready} ready"
        nodes = settle(nodes)
        now += timedelta(seconds=30)
    else:
        pytest.fail("no convergence")


ROLLOUTS = [
    (3, 1, 0),
    (3, 0, 0),  # both zero: the planner surges by one rather than stand still
    (5, 2, 0),
    (5, 0, 1),
    (6, 0, 2),
    (4, "50%", 0),
    (4, "25%", "25%"),
    (1, 1, 0),
    (1, 0, 1),
    (10, "20%", "10%"),
]


@pytest.mark.parametrize(
    ("desired", "surge", "unavailable"),
    ROLLOUTS,
    ids=[f"n{d}-surge{s}-unavail{u}" for d, s, u in ROLLOUTS],
)
@pytest.mark.parametrize("start", ["at-target", "one-below", "one-above"])
def test_rolling_update_converges_within_its_budget(
    desired: int, surge: int | str, unavailable: int | str, start: str
) -> None:
    the_spec = spec(
        rollout(maxSurge=surge, maxUnavailable=unavailable),
        {"policies": {"deletion": {"criteria": "OldestFirst"}}},
        targetNodes=desired,
    )
    max_surge = resolve_int_or_percent(surge, desired, round_up=True)
    max_unavailable = resolve_int_or_percent(unavailable, desired, round_up=False)
    if max_surge == max_unavailable == 0:
        max_surge = 1
    initial = desired + {"at-target": 0, "one-below": -1, "one-above": 1}[start]
    nodes: list[NodeView] = outdated(max(initial, 0))
    ready_floor = min(len(nodes), desired - max_unavailable)

    now = NOW
    for step in range(4 * desired + 6):
        p = plan(declared(the_spec), observed(nodes, now=now, seed=step))
        if p.empty and converged(nodes, desired):
            break
        assert p.blockers == ()
        nodes = execute(p, nodes, now)
        active = [n for n in nodes if not n.deleting]
        ready = sum(1 for n in active if n.ready)
        assert ready >= ready_floor, f"step {step}: {ready} ready, floor {ready_floor}"
        assert len(active) <= max(desired + max_surge, initial), f"step {step}: too many"
        nodes = settle(nodes)
        now += timedelta(seconds=30)
    else:
        pytest.fail(f"no convergence; last plan {p}")

    assert not p.rolling


def converged(nodes: list[NodeView], desired: int) -> bool:
    active = [n for n in nodes if not n.deleting]
    return len(active) == desired and all(n.profile_hash == CURRENT and n.ready for n in active)


def test_protected_outdated_nodes_are_kept_and_the_plan_says_why() -> None:
    the_spec = spec(rollout(maxSurge=1, maxUnavailable=1), targetNodes=2)
    nodes = [
        replace(outdated(1)[0], protected=True),
        *ready_nodes(1, prefix="new", profile_hash=CURRENT),
    ]

    p = plan(declared(the_spec), observed(nodes))

    assert nodes[0].name == "old0"
    assert "old0" not in {d.name for d in p.deletes}
    reasons = {b.reason: b.message for b in p.blockers}
    assert "ProtectedFromScaleIn" in reasons
    assert "older profile" in reasons["ProtectedFromScaleIn"]


SPREADS = [("abc", 1, 1, 0), ("ab", 2, 1, 0), ("abc", 2, 2, 0), ("abc", 1, 0, 1), ("ab", 3, 1, 1)]


@pytest.mark.parametrize("criteria", ["OldestFirst", "YoungestFirst", "Random"])
@pytest.mark.parametrize(
    ("zones", "per_zone", "surge", "unavailable"),
    SPREADS,
    ids=[f"{z}x{n}-surge{s}-unavail{u}" for z, n, s, u in SPREADS],
)
def test_a_rolling_update_ends_with_the_zones_as_even_as_it_found_them(
    criteria: str, zones: str, per_zone: int, surge: int, unavailable: int
) -> None:
    """Found by `plan`'s preview: the outdated node deleted was chosen among the outdated
    alone, and the replacements were placed as if the outdated stayed, so a 1/1/1 cluster
    ended 2/1/0. Victims now count every node's zone, replacements the nodes that stay."""
    placement = {"policies": {"placement": {"zones": [{"name": z} for z in zones]}}}
    nodes = [
        node(f"old-{z}{i}", profile_hash=OUTDATED, zone=z, age=3600 - k)
        for k, (i, z) in enumerate((i, z) for i in range(per_zone) for z in zones)
    ]
    the_spec = spec(
        placement,
        rollout(maxSurge=surge, maxUnavailable=unavailable),
        {"policies": {"deletion": {"criteria": criteria}}},
        targetNodes=len(nodes),
    )
    now = NOW
    for step in range(8 * len(nodes)):
        p = plan(declared(the_spec), observed(nodes, now=now, seed=step))
        if p.empty and converged(nodes, len(nodes)):
            break
        nodes = settle(execute(p, nodes, now))
        now += timedelta(seconds=30)
    else:
        pytest.fail(f"no convergence; last plan {p}")

    assert Counter(n.zone for n in nodes) == {z: per_zone for z in zones}
