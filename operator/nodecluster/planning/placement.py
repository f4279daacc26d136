"""Zone placement: weighted spread for new nodes, and which zone should lose one.

Senlin's zone placement with weights; with equal (or no) weights it is an even spread.
The rule is the same in both directions: move toward each zone's ideal share
`total * weight / sum(weights)`, choosing the zone furthest from it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from nodecluster.api.nodecluster import ZoneWeight


def ideal_shares(zones: Sequence[ZoneWeight], total: int) -> dict[str, float]:
    """Each zone's ideal (fractional) number of nodes out of total."""
    weight_sum = sum(z.weight for z in zones)
    return {z.name: total * z.weight / weight_sum for z in zones}


def zones_for_new_nodes(
    zones: Sequence[ZoneWeight], existing: Iterable[str | None], count: int, total: int
) -> list[str | None]:
    """Zones for `count` new nodes so the cluster of `total` nodes is as close to its shares.

    Ties go to the zone listed first, so the result is deterministic.
    """
    if not zones:
        return [None] * count
    counts = Counter(z for z in existing if z is not None)
    ideal = ideal_shares(zones, total)
    order = {z.name: i for i, z in enumerate(zones)}
    chosen: list[str | None] = []
    for _ in range(count):
        best = max(zones, key=lambda z: (ideal[z.name] - counts[z.name], -order[z.name]))
        counts[best.name] += 1
        chosen.append(best.name)
    return chosen


def zone_overage(
    zones: Sequence[ZoneWeight], counts: Counter[str | None], total: int
) -> dict[str | None, float]:
    """How far above its share each zone is (unknown zones count as fully over)."""
    if not zones:
        return {}
    ideal = ideal_shares(zones, total)
    return {zone: overage_of(ideal, zone, n, total) for zone, n in counts.items()}


def overage_of(ideal: Mapping[str, float], zone: str | None, count: int, total: int) -> float:
    """How far above its share one zone of `count` nodes is, given the shares of
    `ideal_shares` (none: no placement policy, so no zone is over). A zone depends on its
    own count only, which is what lets the deletion ranking re-key one zone per pick."""
    if not ideal:
        return 0.0
    share = ideal.get(zone) if zone is not None else None
    if share is None:
        return float(count) + total
    return count - share
