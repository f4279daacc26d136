"""Which nodes go first when a cluster shrinks: small pure ranking rules.

The order, strongest rule first (as in Cluster API's deletion order and an AWS Auto
Scaling group's termination policy):

1. nodes that are unhealthy, failed, or never got a machine;
2. nodes annotated `nodecluster.io/delete-node`;
3. nodes built from an older profile (they are to be replaced anyway);
4. the zone furthest above its share, so scale-in keeps the spread;
5. the policy's criteria: OldestFirst, YoungestFirst, OldestProfileFirst or Random;
6. the name, so equal nodes still have a stable order.

Nodes annotated `nodecluster.io/protect-from-scale-in` are never chosen.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

from nodecluster.api.nodecluster import DeletionCriteria, ZoneWeight
from nodecluster.planning.model import NodeView
from nodecluster.planning.placement import ideal_shares, overage_of

_NO_MACHINE_STATES = frozenset({None, "Pending", "Failed", "Unknown"})


def is_broken(node: NodeView) -> bool:
    """Failed, in error, or never got a machine: the cheapest node to lose."""
    return (
        node.state in _NO_MACHINE_STATES
        or node.error_reason is not None
        or node.unhealthy_since is not None
        or not node.has_machine
    )


def health_rank(node: NodeView) -> int:
    """0 for broken nodes, 1 for nodes annotated for deletion, 2 otherwise."""
    if is_broken(node):
        return 0
    if node.marked_for_deletion:
        return 1
    return 2


def profile_rank(node: NodeView, current_hash: str) -> int:
    """0 for nodes built from an older profile."""
    return 0 if node.profile_hash != current_hash else 1


def criteria_key(
    criteria: DeletionCriteria, current_hash: str, rng: random.Random, nodes: Sequence[NodeView]
) -> Callable[[NodeView], float]:
    """The sort key of the deletion policy's criteria: a plain number, always.

    Numbers because the ranking sorts a cluster's candidates in a worker thread for a
    large cluster, and list.sort compares plain floats in C without a Python object
    comparison per pair: sorting 33,000 nodes by (datetime, name) tuples held the GIL
    (so the event loop) for ~100 ms at once, by float then by name a fraction of it.
    OldestProfileFirst is the creation time too: the older profile's nodes already go
    first by rule 3, for every criteria, which is why rule 3 exists."""
    del current_hash  # (rule 3, profile_rank, ranks profiles before any criteria)
    if criteria in ("OldestFirst", "OldestProfileFirst"):
        return lambda n: n.created_at.timestamp()
    if criteria == "YoungestFirst":
        return lambda n: -n.created_at.timestamp()
    # Random: one draw per node, in name order, so the same seed gives the same choice.
    draws = {n.name: rng.random() for n in sorted(nodes, key=lambda n: n.name)}
    return lambda n: draws[n.name]


_name = attrgetter("name")


def rank_for_deletion(
    nodes: Sequence[NodeView],
    count: int,
    criteria: DeletionCriteria,
    current_hash: str,
    zones: Sequence[ZoneWeight],
    remaining_total: int,
    rng: random.Random,
    keep: Callable[[NodeView], bool] = lambda _n: False,
    counted: Sequence[NodeView] | None = None,
) -> list[NodeView]:
    """Choose up to `count` nodes to delete, best candidate first.

    `remaining_total` is the size the cluster shrinks to; zone shares are computed
    against it, from the zones of `counted` (default: `nodes`). A rollout chooses among
    its outdated nodes but counts every node: the zone that already holds a replacement
    is the one whose outdated node should go, or the rollout ends with the zones uneven.
    `keep` vetoes extra nodes (e.g. to protect availability in a rollout); it is asked
    about candidates in rank order until one is not vetoed, and a node it vetoed once
    must stay vetoed (the planner's availability budget only shrinks). Protected nodes
    are never chosen, so fewer than `count` may come back.

    Why groups and a heap: of the ranking's rules only the zone's overage changes as
    nodes are chosen, and only for the zone of the node just chosen. Re-sorting every
    candidate for every pick (as this did) was O(n² log n): 3.4 s of blocked event loop
    to plan a 4,000-node cluster down to 0. So the candidates are sorted once per group
    of equal (health, profile, zone), a heap holds each group's best with its zone's
    current overage, and a pick re-keys only the groups of its zone: O(n log n) overall.
    The order chosen is exactly the one the full re-sort gave.
    """
    if count <= 0:
        return []
    candidates = [n for n in nodes if not n.protected]
    by_criteria = criteria_key(criteria, current_hash, rng, candidates)
    zone_counts: Counter[str | None] = Counter(
        n.zone for n in (counted if counted is not None else nodes)
    )

    # Each group: its candidates best first (by the rules that never change), as a stack
    # popped from the end.
    groups: dict[tuple[int, int, str | None], list[NodeView]] = {}
    for n in candidates:
        groups.setdefault((health_rank(n), profile_rank(n, current_hash), n.zone), []).append(n)
    for members in groups.values():
        # By (criteria, name), in two stable sorts of plain keys (see criteria_key).
        members.sort(key=_name, reverse=True)
        members.sort(key=by_criteria, reverse=True)
    of_zone: dict[str | None, list[tuple[int, int, str | None]]] = {}
    for group in groups:
        of_zone.setdefault(group[2], []).append(group)

    ideal = ideal_shares(zones, remaining_total) if zones else {}

    def overage(zone: str | None) -> float:
        return overage_of(ideal, zone, zone_counts[zone], remaining_total)

    version: Counter[str | None] = Counter()
    heap: list[tuple[tuple[Any, ...], int, tuple[int, int, str | None]]] = []

    def push(group: tuple[int, int, str | None], zone_overage_now: float) -> None:
        members = groups[group]
        if members:
            head = members[-1]
            key = (group[0], group[1], -zone_overage_now, by_criteria(head), head.name)
            heapq.heappush(heap, (key, version[group[2]], group))

    for zone, zone_groups in of_zone.items():
        now_over = overage(zone)
        for group in zone_groups:
            push(group, now_over)

    chosen: list[NodeView] = []
    while len(chosen) < count and heap:
        _, seen, group = heapq.heappop(heap)
        zone = group[2]
        if seen != version[zone]:
            continue  # keyed with an overage its zone no longer has
        members = groups[group]
        head = members.pop()
        if keep(head):
            push(group, overage(zone))  # vetoed for good: its group's next in line
            continue
        chosen.append(head)
        zone_counts[zone] -= 1
        version[zone] += 1
        now_over = overage(zone)
        for other in of_zone[zone]:
            push(other, now_over)
    return chosen
