"""rank_for_deletion picks exactly what re-sorting every candidate for every pick picked.

The ranking was rewritten from a full re-sort per pick (O(n² log n): 3.4 s for a
4,000-node scale-in) to sorted groups and a heap. The rules did not change, so the
simple version is kept here as the reference, and random clusters (zones with and
without weights, unknown zones, broken, marked, outdated and protected nodes, each
criteria, and a vetoing `keep` with the planner's shrinking budget) must give the same
nodes in the same order.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, get_args

import pytest
from builders import CURRENT, OUTDATED, node

from nodecluster.api.nodecluster import DeletionCriteria, ZoneWeight
from nodecluster.planning.model import NodeView
from nodecluster.planning.placement import zone_overage
from nodecluster.planning.ranking import (
    criteria_key,
    health_rank,
    profile_rank,
    rank_for_deletion,
)


def reference(
    nodes: Sequence[NodeView],
    count: int,
    criteria: DeletionCriteria,
    current_hash: str,
    zones: Sequence[ZoneWeight],
    remaining_total: int,
    rng: random.Random,
    keep: Callable[[NodeView], bool],
) -> list[NodeView]:
    """The ranking as it was: every candidate re-sorted for every pick."""
    candidates = [n for n in nodes if not n.protected]
    by_criteria = criteria_key(criteria, current_hash, rng, candidates)
    zone_counts: Counter[str | None] = Counter(n.zone for n in nodes)
    chosen: list[NodeView] = []
    while len(chosen) < count and candidates:
        overage = zone_overage(zones, zone_counts, remaining_total)

        def key(n: NodeView, overage: dict[str | None, float] = overage) -> tuple[Any, ...]:
            return (
                health_rank(n),
                profile_rank(n, current_hash),
                -overage.get(n.zone, 0.0),
                by_criteria(n),
                n.name,
            )

        candidates.sort(key=key)
        pick = next((n for n in candidates if not keep(n)), None)
        if pick is None:
            break
        candidates.remove(pick)
        chosen.append(pick)
        zone_counts[pick.zone] -= 1
    return chosen


def random_cluster(rng: random.Random) -> list[NodeView]:
    zones: list[str | None] = ["a", "b", "c", "x", None]
    nodes = []
    for i in range(rng.randint(0, 40)):
        n = node(
            f"n{i:03d}",
            age=rng.choice([10, 100, 100, 1000, 5000]),
            zone=rng.choice(zones),
            profile_hash=rng.choice([CURRENT, CURRENT, OUTDATED]),
            ready=rng.random() < 0.8,
        )
        roll = rng.random()
        if roll < 0.1:
            n = replace(n, state="Failed", ready=False)
        elif roll < 0.15:
            n = replace(n, marked_for_deletion=True)
        elif roll < 0.2:
            n = replace(n, protected=True)
        elif roll < 0.25:
            n = replace(n, has_machine=False, state="Pending", ready=False)
        nodes.append(n)
    return nodes


def budget_veto(nodes: Sequence[NodeView], floor: int) -> Callable[[NodeView], bool]:
    """The planner's availability veto: a Ready node may go while more than `floor` stay."""
    budget = {"ready": sum(1 for n in nodes if n.ready)}

    def vetoed(n: NodeView) -> bool:
        if n.ready and budget["ready"] - 1 < floor:
            return True
        if n.ready:
            budget["ready"] -= 1
        return False

    return vetoed


@pytest.mark.parametrize("seed", range(300))
def test_the_same_nodes_in_the_same_order_as_a_full_resort(seed: int) -> None:
    rng = random.Random(seed)
    nodes = random_cluster(rng)
    criteria = rng.choice(get_args(DeletionCriteria))
    weighted = rng.random() < 0.7
    zones = (
        [ZoneWeight(name=z, weight=rng.randint(1, 3)) for z in ("a", "b", "c")] if weighted else []
    )
    count = rng.randint(0, len(nodes) + 2)
    remaining = max(len(nodes) - count, 0)
    floor = rng.randint(0, len(nodes)) if rng.random() < 0.5 else 0

    got = rank_for_deletion(
        nodes,
        count,
        criteria,
        CURRENT,
        zones,
        remaining,
        random.Random(seed),
        keep=budget_veto(nodes, floor),
    )
    want = reference(
        nodes,
        count,
        criteria,
        CURRENT,
        zones,
        remaining,
        random.Random(seed),
        keep=budget_veto(nodes, floor),
    )
    assert [n.name for n in got] == [n.name for n in want]
