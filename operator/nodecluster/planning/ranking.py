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

import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from nodecluster.api.nodecluster import DeletionCriteria, ZoneWeight
from nodecluster.planning.model import NodeView
from nodecluster.planning.placement import zone_overage

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
) -> Callable[[NodeView], Any]:
    """The sort key of the deletion policy's criteria."""
    if criteria == "OldestFirst":
        return lambda n: n.created_at
    if criteria == "YoungestFirst":
        return lambda n: -n.created_at.timestamp()
    if criteria == "OldestProfileFirst":
        return lambda n: (profile_rank(n, current_hash), n.created_at)
    # Random: one draw per node, in name order, so the same seed gives the same choice.
    draws = {n.name: rng.random() for n in sorted(nodes, key=lambda n: n.name)}
    return lambda n: draws[n.name]


def rank_for_deletion(
    nodes: Sequence[NodeView],
    count: int,
    criteria: DeletionCriteria,
    current_hash: str,
    zones: Sequence[ZoneWeight],
    remaining_total: int,
    rng: random.Random,
    keep: Callable[[NodeView], bool] = lambda _n: False,
) -> list[NodeView]:
    """Choose up to `count` nodes to delete, best candidate first.

    `remaining_total` is the size the cluster shrinks to; zone shares are computed
    against it. `keep` vetoes extra nodes (e.g. to protect availability in a rollout).
    Protected nodes are never chosen, so fewer than `count` may come back.
    """
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
