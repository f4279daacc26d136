"""Capacity fallback (`spec.policies.capacityFallback`): which choice each new node is made
from, which choices are exhausted, and for how long. Pure: the planner calls it with the
exhausted choices read back from status (`Observed.exhausted`) and gets them back updated.

A choice is what a machine is asked for: a machine type, a capacity type and a zone.
Choice 0 is the profile's (the zone the placement policy picks), then the alternatives in
order (api/fallback.py). Exhaustion is remembered per offering, (machine type, capacity
type, zone), as a cloud runs out of Spot in one zone and not in the next, and Karpenter's
unavailable-offerings cache keys them.

The rules, in order:
1. A node whose create the provider refused for capacity (CapacityExceeded, no machine) is
   replaced: its offering is exhausted, and the node is deleted (it has no machine) for
   one made from the next choice. Without the policy nothing changes: the node retries its
   own choice with backoff, as before.
2. An exhausted offering is not used again until its `retryTime`: 1 minute after the first
   refusal, doubling with each refusal in a row, up to 10 minutes (`backoff`). Karpenter
   waits 3 minutes flat; a Spot pool often refills within minutes, so the first wait is
   short, while doubling keeps a shortage that lasts from costing a failed create (a node
   written, a provider call, a node deleted) every minute per zone; the cap bounds how
   long a cluster keeps making nodes of a later choice after the preferred one is back.
3. From its retryTime, an offering is tried again by one node at a time (a probe): while a
   probe has no machine yet, other new nodes use the next choice, so a lasting shortage
   costs one refused node per back-off, not one per node wanted.
4. A refusal counts (doubling the back-off) only for a node made at or after the
   offering's retryTime: nodes made before the offering was known exhausted (a scale-out
   of five, all refused) are one refusal, not five.
5. A node of the offering that gets a machine, made since the last refusal, ends the
   exhaustion; an offering not tried for `FORGET_SECONDS` after its retryTime is
   forgotten (no node was wanted meanwhile; the next refusal starts again at 1 minute).
6. Zones: with placement zones listed, the spread chooses the zone of every new node and
   only the choices allowed there (no zone, or that zone) are tried; a node whose zone has
   no choice left is not created (spread holds), and the cluster says which are exhausted
   (Stalled, CapacityExceeded) until one's retryTime.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from nodecluster.api.common import Condition
from nodecluster.api.fallback import CapacityType, ExhaustedCapacity
from nodecluster.api.nodecluster import NodeClusterSpec, NodeProfile
from nodecluster.api.reasons import Reason
from nodecluster.planning.conditions import condition
from nodecluster.planning.model import NodeView

BACKOFF_SECONDS = 60
"""Wait after the first refusal of an offering before it is tried again."""
MAX_BACKOFF_SECONDS = 600
"""The longest wait, reached after the fifth refusal in a row."""
FORGET_SECONDS = MAX_BACKOFF_SECONDS
"""How long after its retryTime an offering nobody tried is remembered."""

Offering = tuple[str, CapacityType | None, str | None]
"""(machine type, capacity type, zone): what the provider has room for, or not."""


def backoff(refusals: int) -> timedelta:
    """How long an offering refused `refusals` times in a row is left alone."""
    seconds = BACKOFF_SECONDS * 2 ** min(max(refusals - 1, 0), 10)
    return timedelta(seconds=min(seconds, MAX_BACKOFF_SECONDS))


@dataclass(frozen=True)
class Choice:
    """One thing a node may be made of: 0 the profile's, then each alternative's."""

    index: int
    machine_type: str
    capacity_type: CapacityType | None
    zone: str | None
    """The alternative's zone; None: wherever the placement puts the node."""


@dataclass(frozen=True)
class Pick:
    """The choice one new node is made from, and its zone."""

    zone: str | None
    alternative: int = 0
    machine_type: str = ""
    capacity_type: CapacityType | None = None


@dataclass(frozen=True)
class Capacity:
    """What the fallback policy makes of the world this reconcile."""

    exhausted: tuple[ExhaustedCapacity, ...] = ()
    """The exhausted offerings, updated by this reconcile's refusals and successes."""
    refused: tuple[str, ...] = ()
    """Nodes refused for capacity, to be replaced by a node of another choice."""
    recheck_at: datetime | None = None
    """When an offering's retryTime (or forgetting) comes: the cluster looks again then."""


def choices(spec: NodeClusterSpec) -> list[Choice]:
    """The profile's choice, then each alternative, filled in from the profile."""
    profile = spec.profile
    out = [Choice(0, profile.machine_type, profile.capacity_type, None)]
    policy = spec.policies.capacity_fallback
    for i, alt in enumerate(policy.alternatives if policy else (), start=1):
        out.append(
            Choice(
                i,
                alt.machine_type or profile.machine_type,
                alt.capacity_type or profile.capacity_type,
                alt.zone,
            )
        )
    return out


def key_of(e: ExhaustedCapacity) -> Offering:
    """The offering an exhausted entry is about."""
    return (e.machine_type, e.capacity_type, e.zone)


def node_offering(n: NodeView) -> Offering:
    """What a node's machine was asked for."""
    return (n.machine_type, n.capacity_type, n.zone)


def describe(offering: Offering) -> str:
    """An offering in words: `m5.large Spot in zone-a`."""
    machine_type, capacity_type, zone = offering
    words = f"{machine_type} {capacity_type or 'default capacity'}"
    return f"{words} in {zone}" if zone else words


def _same(a: Offering, b: Offering) -> bool:
    # An entry without a zone (the provider chose it) is ended by a machine in any zone.
    return a[:2] == b[:2] and (a[2] is None or a[2] == b[2])


def assess(
    spec: NodeClusterSpec,
    nodes: Iterable[NodeView],
    exhausted: Sequence[ExhaustedCapacity],
    now: datetime,
) -> Capacity:
    """Rules 1, 2, 4 and 5: the offerings exhausted after this reconcile's refusals and
    successes, and the refused nodes to replace."""
    if spec.policies.capacity_fallback is None:
        return Capacity()
    entries = {key_of(e): e for e in exhausted}
    active = [n for n in nodes if not n.deleting]
    refused: list[str] = []
    renewed: set[Offering] = set()
    for n in active:
        if n.has_machine or n.error_reason is not Reason.CAPACITY_EXCEEDED:
            continue
        refused.append(n.name)
        key = node_offering(n)
        old = entries.get(key)
        if key in renewed or (old is not None and n.created_at < old.retry_time):
            continue  # made before the offering was known exhausted: the same refusal
        refusals = 1 if old is None else old.refusals + 1
        entries[key] = ExhaustedCapacity(
            machine_type=key[0],
            capacity_type=key[1],
            zone=key[2],
            refusals=refusals,
            last_refusal_time=now,
            retry_time=now + backoff(refusals),
        )
        renewed.add(key)
    for key, e in list(entries.items()):
        if key in renewed:
            continue
        if any(
            n.has_machine and n.created_at >= e.last_refusal_time and _same(key, node_offering(n))
            for n in active
        ):
            del entries[key]  # rule 5: it has room again
        elif now >= e.retry_time + timedelta(seconds=FORGET_SECONDS) and not _probing(
            key, e, active
        ):
            del entries[key]  # nobody tried it again: the next refusal starts afresh
    kept = tuple(sorted(entries.values(), key=_order))
    # Only times to come: one passed while a probe is out would have the cluster look again
    # every second until the probe is answered (its node's events wake it anyway).
    forget = timedelta(seconds=FORGET_SECONDS)
    upcoming = [t for e in kept for t in (e.retry_time, e.retry_time + forget) if t > now]
    return Capacity(kept, tuple(refused), min(upcoming, default=None))


def _order(e: ExhaustedCapacity) -> tuple[datetime, str, str, str]:
    # A total order: status written again with the same entries must not reorder them.
    return (e.retry_time, e.machine_type, e.capacity_type or "", e.zone or "")


def _probing(key: Offering, e: ExhaustedCapacity, active: Iterable[NodeView]) -> bool:
    """Whether a node made from `key` since its retryTime still waits for its machine."""
    return any(
        not n.has_machine
        and n.error_reason is None
        and n.created_at >= e.retry_time
        and node_offering(n) == key
        for n in active
    )


def pick_choices(
    spec: NodeClusterSpec,
    capacity: Capacity,
    zones: Sequence[str | None],
    nodes: Iterable[NodeView],
    now: datetime,
) -> tuple[list[Pick], tuple[Reason, str] | None]:
    """Rules 3 and 6: the choice of each new node (placed in `zones` by the spread), and
    why some are not made, if any: every choice allowed in their zone is exhausted."""
    profile = spec.profile
    if spec.policies.capacity_fallback is None:
        return [Pick(zone, 0, profile.machine_type, profile.capacity_type) for zone in zones], None
    spread = bool(spec.policies.placement.zones)
    entries = {key_of(e): e for e in capacity.exhausted}
    active = [n for n in nodes if not n.deleting]
    probing = {k for k, e in entries.items() if e.retry_time <= now and _probing(k, e, active)}

    def allowed(zone: str | None) -> list[tuple[Choice, Offering]]:
        # Spread holds: the placement chose the zone, and only choices for it apply.
        return [
            (c, (c.machine_type, c.capacity_type, zone if spread else c.zone))
            for c in choices(spec)
            if not spread or c.zone is None or c.zone == zone
        ]

    picks: list[Pick] = []
    short: dict[str | None, list[ExhaustedCapacity]] = {}
    for zone in zones:
        options = allowed(zone)
        for choice, key in options:
            entry = entries.get(key)
            if entry is not None:
                if entry.retry_time > now or key in probing:
                    continue
                probing.add(key)  # rule 3: this node is the probe
            picks.append(Pick(key[2], choice.index, choice.machine_type, choice.capacity_type))
            break
        else:
            short[zone] = [entries[key] for _, key in options if key in entries]
    if not short:
        return picks, None
    parts = []
    for zone, exhausted in short.items():
        named = ", ".join(
            f"{describe(key_of(e))} until {e.retry_time:%H:%M:%SZ}" for e in exhausted
        )
        parts.append(f"in {zone}: {named}" if spread and zone else named)
    return picks, (
        Reason.CAPACITY_EXCEEDED,
        f"{len(zones) - len(picks)} nodes wait for capacity: every choice of "
        f"policies.capacityFallback is exhausted ({'; '.join(parts)})",
    )


def exhausted_now(capacity: Sequence[ExhaustedCapacity], now: datetime) -> list[ExhaustedCapacity]:
    """The offerings still in their back-off."""
    return [e for e in capacity if e.retry_time > now]


CAPACITY_FALLBACK = "CapacityFallback"
"""The condition saying whether new nodes fall back from exhausted choices."""


def fallback_condition(
    spec: NodeClusterSpec,
    exhausted: Sequence[ExhaustedCapacity],
    previous: Sequence[Condition],
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """The CapacityFallback condition of a cluster with the policy (or with exhausted
    offerings still remembered): True while an offering is in its back-off, naming each
    and when it is tried again; False otherwise. Absent for other clusters, whose status
    stays as it was before the policy existed (no write for them)."""
    if spec.policies.capacity_fallback is None and not exhausted:
        return []
    waiting = exhausted_now(exhausted, now)
    if waiting:
        named = ", ".join(
            f"{describe(key_of(e))} (refused {e.refusals}x, tried again from "
            f"{e.retry_time:%H:%M:%SZ})"
            for e in waiting
        )
        message = f"no capacity for {named}: new nodes are made from the next choice"
        reason = Reason.CAPACITY_EXHAUSTED
    else:
        message, reason = "", Reason.AS_EXPECTED
    return [condition(previous, CAPACITY_FALLBACK, bool(waiting), reason, message, generation, now)]


def made_from(
    profile: NodeProfile, alternative: int, machine_type: str, capacity_type: CapacityType | None
) -> NodeProfile:
    """The profile a node made from a choice carries, so that its machine is what it says
    (quota, usage and billing read the machine type from it): the cluster's own for choice
    0, else with the alternative's machine type and capacity type."""
    if alternative == 0:
        return profile
    return profile.model_copy(update={"machine_type": machine_type, "capacity_type": capacity_type})
