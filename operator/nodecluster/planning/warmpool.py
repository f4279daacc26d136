"""The warm pool's part of the plan: which warm nodes to promote, return, power, delete, and
how many to create (api/warmpool.py says what a warm pool is).

Pure, like the rest of planning: the planner hands the warm nodes in as observed, and
this module says what happens to them. The rules, each why:

1. Warm nodes are outside the target. The planner's health, rollout, scale and power
   steps see the serving nodes only; a warm node enters them only by promotion.
2. A scale-out promotes before it creates: promotable warm nodes (below) fill the zones
   the placement wants for the new nodes, ready ones first (stopped and Stopped, or
   running and Ready), then those still launching or stopping, oldest first. With
   placement zones the spread holds: a zone without a warm node of its own gets a new
   node, as the capacity fallback keeps the spread (a warm node elsewhere would skew it,
   and the next scale-in would undo it). Promotion is not a launch: a suspended Launch
   does not hold it, and it needs no quota room (the machine exists and is counted).
3. Promotion and return are one write of the node: its `nodecluster.io/pool` label and
   its `spec.powerState` together (`PoolMove`), so a crash leaves it on one side.
4. Promotable: current profile, not past maxNodeLifetimeSeconds (which counts from the
   node's creation, time in the pool included), not unhealthy, not annotated
   `nodecluster.io/delete-node`. Warm nodes of an older profile or past their lifetime
   are deleted and made again (the refill) instead, whatever the rollout strategy: they
   serve nobody yet, so there is nothing for OnDelete to protect. A suspended Rollout, or
   Launch (no replacement could come), keeps them in the pool meanwhile, not promoted.
   Unhealthy warm nodes are deleted (never rebooted) unless Remediate is suspended or
   maxUnhealthy (counting serving and warm nodes) stops remediation.
5. With `reuseOnScaleIn`, the nodes a scale-in chose go back to the pool, healthy ones of
   the current profile not annotated for deletion, while it is below its size; the rest
   are deleted as before.
6. The refill: the pool's size minus its members (those held in it by a suspension
   count), created after the serving nodes' creates took their quota room, within what
   is left of it. It does not block the scale-out: the cluster is Deployed and Ready on
   its serving nodes, and the `WarmPool` condition follows the pool. A suspended Launch,
   a provider that gives no machines, or the quota's or cost limit's room holds it; the
   condition says which.
7. A new warm node is made at the pool's power state, except that with Launch hooks a
   Stopped pool's nodes are made Running, and stopped once launched (Ready, the hooks
   completed): a warm machine is a launched machine, and the hooks run on a running one.
   Members not at the pool's state are started or stopped (a suspended PowerChange holds it).
8. A pool larger than its size (lowered, or no pool any more) deletes the surplus, by the
   deletion policy's ranking; a suspended Terminate holds that.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from nodecluster.api.clusternode import PowerState
from nodecluster.api.nodecluster import NodeClusterSpec
from nodecluster.api.reasons import Reason
from nodecluster.api.warmpool import WarmPool
from nodecluster.planning.model import NodeView
from nodecluster.planning.ranking import rank_for_deletion

WARM_POOL_CONDITION = "WarmPool"
"""The NodeCluster condition of its pool (only with spec.warmPool): True when full."""


@dataclass(frozen=True)
class PoolMove:
    """Move a node into the pool (`warm`) or out of it, with the power state it gets there:
    one write of its label and its spec.powerState."""

    name: str
    warm: bool
    power_state: PowerState


@dataclass(frozen=True)
class PoolView:
    """The warm nodes as the planner found them, sorted into what becomes of each."""

    promotable: list[NodeView]
    """Members that may be promoted, best first (rule 2's order)."""
    members: list[NodeView]
    """Every warm node that stays in the pool: the promotable ones and those kept by a
    suspension (rule 4)."""
    retire: list[NodeView]
    """Warm nodes to delete now: older profile, past their lifetime, marked for deletion,
    or unhealthy (rule 4)."""
    held: list[str] = field(default_factory=list)
    """What suspended processes keep from happening to the pool, for its condition."""
    expires: list[datetime] = field(default_factory=list)
    """When members still to expire will: the cluster looks again then."""


def warm_ready(node: NodeView, state: PowerState) -> bool:
    """Whether a warm node is ready to be promoted at once: at the pool's power state."""
    if state == "Stopped":
        return node.power_state == "Stopped" and node.state == "Stopped"
    return node.state == "Running" and node.ready


def launched(node: NodeView) -> bool:
    """Whether a node's machine has run and its Launch hooks are over (safe to stop)."""
    return node.state == "Running" and node.ready and not node.launching


def assess_pool(
    spec: NodeClusterSpec,
    warm: Sequence[NodeView],
    profile_hash: str,
    now: datetime,
    unhealthy: set[str],
    remediate: bool,
) -> PoolView:
    """Sort the warm nodes (not deleting) by rule 4."""
    pool = spec.warm_pool
    state: PowerState = pool.state if pool is not None else "Stopped"
    lifetime = spec.policies.rollout.max_node_lifetime_seconds
    keep_stale = spec.suspends("Rollout") or spec.suspends("Launch")
    promotable: list[NodeView] = []
    members: list[NodeView] = []
    retire: list[NodeView] = []
    stale_held: list[str] = []
    broken_held: list[str] = []
    expires: list[datetime] = []
    for n in warm:
        ends = None if lifetime is None else n.created_at + timedelta(seconds=lifetime)
        expired = ends is not None and now >= ends
        if n.name in unhealthy:
            if remediate:
                retire.append(n)
            else:
                members.append(n)
                broken_held.append(n.name)
        elif n.marked_for_deletion:
            retire.append(n)
        elif n.profile_hash != profile_hash or expired:
            if keep_stale:
                members.append(n)
                stale_held.append(n.name)
            else:
                retire.append(n)
        else:
            if ends is not None:
                expires.append(ends)
            members.append(n)
            promotable.append(n)
    promotable.sort(key=lambda n: (not warm_ready(n, state), n.created_at, n.name))
    held = []
    if stale_held:
        held.append(
            f"{len(stale_held)} warm nodes of an older profile or past maxNodeLifetimeSeconds "
            "kept (Rollout or Launch suspended), not promoted"
        )
    if broken_held:
        held.append(f"{len(broken_held)} unhealthy warm nodes kept, not promoted")
    return PoolView(promotable, members, retire, held, expires)


def choose_promotions(
    candidates: Sequence[NodeView], zones: Sequence[str | None], spread: bool
) -> list[NodeView]:
    """Warm nodes for new nodes wanted in `zones` (rule 2): each zone takes its best
    candidate; with `spread` only a candidate of that zone, else any."""
    left = list(candidates)
    chosen: list[NodeView] = []
    for zone in zones:
        pick = next((n for n in left if not spread or n.zone == zone), None)
        if pick is not None:
            left.remove(pick)
            chosen.append(pick)
    return chosen


def reusable(node: NodeView, profile_hash: str, unhealthy: set[str]) -> bool:
    """Whether a node a scale-in chose may go back to the pool (rule 5)."""
    return (
        node.has_machine
        and node.name not in unhealthy
        and node.profile_hash == profile_hash
        and not node.marked_for_deletion
        and node.error_reason is None
        and node.state not in (None, "Pending", "Failed", "Unknown")
    )


def returns_on_scale_in(
    pool: WarmPool | None,
    victims: Iterable[NodeView],
    members: int,
    profile_hash: str,
    unhealthy: set[str],
    expired: set[str],
) -> list[NodeView]:
    """The scale-in's victims that go back to the pool instead of being deleted (rule 5):
    in the victims' order, while the pool (`members` strong) is below its size."""
    if pool is None or not pool.reuse_on_scale_in:
        return []
    room = pool.size - members
    back: list[NodeView] = []
    for v in victims:
        if len(back) >= room:
            break
        if v.name not in expired and reusable(v, profile_hash, unhealthy):
            back.append(v)
    return back


def new_warm_power(spec: NodeClusterSpec) -> PowerState:
    """The power state a new warm node is made with (rule 7)."""
    pool = spec.warm_pool
    if pool is None or pool.state == "Running":
        return "Running"
    hooks = spec.policies.lifecycle_hooks or ()
    return "Running" if any(h.transition == "Launch" for h in hooks) else "Stopped"


def pool_power(spec: NodeClusterSpec, members: Iterable[NodeView]) -> list[tuple[str, PowerState]]:
    """Members to start or stop to the pool's state (rule 7): a Stopped pool stops only
    launched machines (a node still launching finishes its hooks running)."""
    pool = spec.warm_pool
    if pool is None:
        return []
    out: list[tuple[str, PowerState]] = []
    for n in members:
        if n.power_hold is not None or n.power_state == pool.state:
            continue
        if pool.state == "Running" or launched(n):
            out.append((n.name, pool.state))
    return out


def surplus(
    spec: NodeClusterSpec,
    members: Sequence[NodeView],
    count: int,
    profile_hash: str,
    rng: random.Random,
) -> list[NodeView]:
    """Which members go when the pool holds `count` nodes more than its size (rule 8)."""
    size = spec.warm_pool.size if spec.warm_pool is not None else 0
    zones = spec.policies.placement.zones
    return rank_for_deletion(
        members, count, spec.policies.deletion.criteria, profile_hash, zones, size, rng
    )


@dataclass(frozen=True)
class PoolReport:
    """The pool's line in status: its WarmPool condition."""

    full: bool
    reason: Reason
    message: str


def pool_report(
    spec: NodeClusterSpec,
    members: Sequence[NodeView],
    short: tuple[Reason, str] | None,
    held: Sequence[str],
) -> PoolReport | None:
    """The WarmPool condition: True when `size` members are ready at the pool's state and
    nothing is held; else why not (`short`: why the refill made fewer than needed)."""
    pool = spec.warm_pool
    if pool is None:
        return None
    ready = sum(1 for n in members if warm_ready(n, pool.state))
    counts = f"{ready} of {pool.size} warm nodes ready ({len(members)} in the pool)"
    if short is not None:
        return PoolReport(False, short[0], f"{counts}: {short[1]}")
    if held:
        return PoolReport(False, Reason.CHANGES_HELD_BACK, f"{counts}; {'; '.join(held)}")
    if ready == pool.size == len(members):
        return PoolReport(True, Reason.WARM_POOL_FULL, counts)
    return PoolReport(False, Reason.WARM_POOL_FILLING, counts)
