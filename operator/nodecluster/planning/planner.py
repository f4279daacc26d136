"""plan(declared, observed) -> Plan: which ClusterNodes to create, delete, power or reboot.

One pure function with the whole decision in it, so the controller only executes. Every
reconcile plans from scratch over what exists now (level-triggered): a plan that was
half executed before a crash is simply planned again, minus what already happened.

Order of concerns, each able to veto the next:
1. deletion of the cluster or `desiredState: Terminated` removes every node;
2. `paused` freezes everything else;
3. health remediation (bounded by `maxUnhealthy`), see below;
4. rollout of a changed profile, and of nodes past `maxNodeLifetimeSeconds` (within
   maxSurge/maxUnavailable), see below;
5. scaling toward the target (bounded by min/max and the provider's quota headroom),
   with zones from the placement policy and victims from the deletion policy, each new
   node made from the first choice of the capacity fallback policy not exhausted
   (planning/fallback.py, which also replaces nodes refused for capacity);
6. power state (Running/Stopped);
7. the warm pool (planning/warmpool.py): promotions take the place of creates in step 5,
   a scale-in may return nodes to the pool, and the pool is refilled after the serving
   nodes' creates, within the quota room they leave. Warm nodes are outside the target:
   steps 3 to 6 see the serving nodes only (health counts both for maxUnhealthy).

`spec.suspend` stops one kind of change at a time (api.nodecluster.SuspendableProcess
says what each holds back). The planner still works out what that process would do, and
returns it as a `Hold` instead of doing it: status says what waits, and a cluster held
back from a change it needs is not converged. Holds come after the vetoes above (what
`maxUnhealthy` or a quota forbids is said as their blocker, not as a hold), and
nothing is held at step 1: deleting the cluster is its owner's explicit act.

Node lifetime: a node older than `policies.rollout.maxNodeLifetimeSeconds` is expired and
replaced like a node of an older profile, through the same surge and unavailability
budget, oldest first (after nodes of an older profile, which the rollout ranks by the
deletion policy as before), whatever the strategy: OnDelete is about profile changes,
and a lifetime is asked for explicitly. The earliest expiry still to come joins the
health deadlines in `recheck_at`, so an idle cluster is looked at when its next node
expires and at no other time.

Health remediation follows `policies.health.recovery` (Recreate, Reboot or None) with one
exception: a node whose machine is missing (deleted at the provider behind the
operator's back, `MachineMissing`) is replaced whatever the recovery. A reboot cannot
bring back a machine that does not exist (asked anyway, it was never carried out and was
asked again on every reconcile, a spec-write loop), and `None` keeps the operator's hands
off machines that exist (for someone to look at, or to remediate by other means): a
missing one has nothing left to keep, and keeping its node only holds the cluster below
its target for good. Kubernetes treats a vanished instance the same way, with no policy
to turn it off: Karpenter garbage-collects a NodeClaim whose instance is gone, the cloud
node lifecycle controller deletes a Node whose instance is gone. `maxUnhealthy` still
bounds it, counting every unhealthy node: a provider that answers NotFound for every
machine (credentials for another account, say) must not get the whole cluster recreated.

A reboot is asked for once: a node whose requested reboot is not yet carried out
(`NodeView.reboot_pending`) is not asked again, so a reboot the provider refuses or
delays is retried by the node's controller, not rewritten into its spec every reconcile.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from nodecluster.api.clusternode import NodeState, PowerState
from nodecluster.api.fallback import CapacityType, ExhaustedCapacity
from nodecluster.api.nodecluster import HealthPolicy, NodeClusterSpec, SuspendableProcess
from nodecluster.api.reasons import Reason
from nodecluster.planning.fallback import assess, pick_choices
from nodecluster.planning.model import Declared, NodeView, Observed
from nodecluster.planning.placement import zones_for_new_nodes
from nodecluster.planning.ranking import rank_for_deletion
from nodecluster.planning.warmpool import (
    PoolMove,
    PoolReport,
    PoolView,
    assess_pool,
    choose_promotions,
    new_warm_power,
    pool_power,
    pool_report,
    returns_on_scale_in,
    surplus,
)

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""The alphabet Kubernetes uses for generated names: no vowels, so no accidental words."""

_TRANSITIONAL: frozenset[NodeState | None] = frozenset(
    {"Stopping", "Stopped", "Starting", "Rebooting", "Deleting"}
)

DeletionCause = Literal[
    "Terminating", "Remediation", "Rollout", "Expired", "ScaleIn", "CapacityFallback", "WarmPool"
]
"""Why the planner deletes a node (remediation and expiry are worth an Event of their own;
`Expired` is a rollout's replacement of a node past maxNodeLifetimeSeconds,
`CapacityFallback` the replacement of a node refused for capacity, and `WarmPool` a warm
node the pool replaces or no longer holds: planning/warmpool.py)."""


@dataclass(frozen=True)
class CreateNode:
    """Create a ClusterNode (and so, a machine)."""

    name: str
    zone: str | None
    power_state: PowerState
    alternative: int = 0
    """Which choice of the capacity fallback it is made from: 0 the profile's, then the
    alternatives (1 the first)."""
    machine_type: str = ""
    """The machine type of that choice (empty: the profile's)."""
    capacity_type: CapacityType | None = None
    warm: bool = False
    """A warm node (the pool's refill), labelled nodecluster.io/pool=warm."""


@dataclass(frozen=True)
class DeleteNode:
    """Delete a ClusterNode (its finalizer deletes the machine)."""

    name: str
    reason: DeletionCause


@dataclass(frozen=True)
class SetPower:
    """Change a node's requested power state."""

    name: str
    power_state: PowerState


@dataclass(frozen=True)
class RebootNode:
    """Ask for one reboot of a node."""

    name: str


@dataclass(frozen=True)
class Blocker:
    """Why the plan does less than the declaration asks."""

    reason: Reason
    message: str


@dataclass(frozen=True)
class Hold:
    """A change the plan would make but does not, because its process is suspended."""

    process: SuspendableProcess
    message: str
    """What waits, for people: counts, and up to three node names."""


@dataclass(frozen=True)
class Plan:
    """The decision of one reconcile."""

    desired: int
    creates: tuple[CreateNode, ...] = ()
    deletes: tuple[DeleteNode, ...] = ()
    power: tuple[SetPower, ...] = ()
    reboots: tuple[RebootNode, ...] = ()
    blockers: tuple[Blocker, ...] = ()
    unhealthy: tuple[str, ...] = ()
    recheck_at: datetime | None = None
    """The earliest moment the plan changes if nothing else does: a node that is healthy
    now turns unhealthy (a health timeout running out), a node expires
    (maxNodeLifetimeSeconds), or an exhausted offering's back-off ends. The cluster looks
    again then."""
    remediating: bool = False
    rolling: bool = False
    paused: bool = False
    terminating: bool = False
    held: tuple[Hold, ...] = ()
    """Changes the declaration needs that suspended processes hold back."""
    expired: tuple[str, ...] = ()
    """Nodes past maxNodeLifetimeSeconds (replaced, or held back by a suspended Rollout)."""
    exhausted: tuple[ExhaustedCapacity, ...] = ()
    """The offerings exhausted for the capacity fallback, for status to remember."""
    moves: tuple[PoolMove, ...] = ()
    """Nodes promoted from the warm pool or returned to it (one write each)."""
    pool: PoolReport | None = None
    """The warm pool's condition (None without spec.warmPool)."""

    @property
    def empty(self) -> bool:
        """Whether nothing is to be done."""
        return not (self.creates or self.deletes or self.power or self.reboots or self.moves)


def desired_count(spec: NodeClusterSpec) -> int:
    """The target, clamped to [minNodes, maxNodes] (CEL forbids the rest; this is defence)."""
    target = spec.target_nodes
    if spec.min_nodes is not None:
        target = max(target, spec.min_nodes)
    if spec.max_nodes is not None:
        target = min(target, spec.max_nodes)
    return max(target, 0)


def resolve_int_or_percent(value: int | str | None, total: int, round_up: bool) -> int:
    """A count or 'N%' of total, rounded as Kubernetes rounds them.

    maxSurge rounds up, maxUnavailable (and maxUnhealthy) round down.
    """
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    pct = int(value.rstrip("%"))
    exact = total * pct / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def is_unhealthy(
    node: NodeView, now: datetime, health: HealthPolicy, watching_nodes: bool = False
) -> bool:
    """Whether a node needs remediation under the health policy: a failed or missing
    machine at once, others once their timeouts run out."""
    deadline = unhealthy_at(node, health, watching_nodes)
    return deadline is not None and now > deadline


def unhealthy_at(
    node: NodeView, health: HealthPolicy, watching_nodes: bool = False
) -> datetime | None:
    """When the node counts as unhealthy if nothing changes (in the past: it does now);
    None: not as things are. The cluster looks again at the earliest of these, so a
    timeout running out is noticed without an event (a Node silently not Ready).

    With `healthPolicy.nodeNotReadyTimeoutSeconds` set and the operator following Nodes,
    a running machine is unhealthy once its Node has been not Ready that long, or once it
    still has no Node `nodeStartupTimeoutSeconds` after its ClusterNode was created.

    Only a machine meant to run is judged by its Node: one asked to stop (its status not
    yet written since) has its Node go NotReady on purpose. And a Node not Ready since
    before its machine came up again (started after a stop, rebooted) is a kubelet still
    starting, not one that fell over: it gets `nodeStartupTimeoutSeconds` from the
    restart, as a new machine's does; counting the stop as time not Ready would have a
    machine started after a long stop replaced at once, before its kubelet could report."""
    if node.deleting or (node.error_reason is not None and not node.error_reason.machine_fault):
        return None
    if node.state == "Failed" or node.machine_missing:
        return datetime.min.replace(tzinfo=UTC)  # at once
    if node.state in _TRANSITIONAL or node.launching:
        return None  # (a Launch hook's wait is bounded by its own timeout: planning.hooks)
    if not node.has_machine or node.state in (None, "Pending", "Provisioning"):
        return _after(node.created_at, health.node_startup_timeout_seconds)
    if node.ready:
        timeout = health.node_not_ready_timeout_seconds
        if timeout is None or not watching_nodes or node.node is None or node.node == "Ready":
            return None
        if node.power_state != "Running":
            return None
        booted = node.restarted_at or node.created_at
        # Status times are whole seconds: a Node not Ready since the second of the restart
        # went down with it.
        if node.node == "NotRegistered" or node.node_since is None or node.node_since <= booted:
            return _after(booted, health.node_startup_timeout_seconds)
        return _after(node.node_since, timeout)
    return _after(node.unhealthy_since or node.created_at, health.unhealthy_timeout_seconds)


def _after(since: datetime, seconds: int) -> datetime | None:
    """`seconds` after `since` (None past the end of time: a node without a creation time
    counts as brand new, world.UNKNOWN_CREATION)."""
    try:
        return since + timedelta(seconds=seconds)
    except OverflowError:
        return None


def expires_at(node: NodeView, lifetime: int | None) -> datetime | None:
    """When the node passes its maximum lifetime; None: never (no lifetime set)."""
    return None if lifetime is None else _after(node.created_at, lifetime)


def _some(names: list[str]) -> str:
    """Up to three names, and how many more: enough to find them, short enough to read."""
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return ", ".join(names[:3]) + more


def new_names(cluster: str, taken: set[str], count: int, rng: random.Random) -> list[str]:
    """`count` fresh child names, `<cluster>-<5 chars>`, none in `taken`."""
    names: list[str] = []
    while len(names) < count:
        suffix = "".join(rng.choice(NAME_ALPHABET) for _ in range(5))
        name = f"{cluster}-{suffix}"
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def plan(declared: Declared, observed: Observed) -> Plan:
    """Decide what to change so that the nodes match the declaration."""
    spec = declared.spec
    rng = random.Random(observed.seed)
    active = [n for n in observed.nodes if not n.deleting]

    if declared.deleting or spec.desired_state == "Terminated":
        return Plan(
            desired=0,
            deletes=tuple(DeleteNode(n.name, "Terminating") for n in active),
            terminating=True,
        )

    desired = desired_count(spec)
    warm = [n for n in active if n.warm]
    if warm:
        active = [n for n in active if not n.warm]
    if spec.paused:
        return Plan(
            desired=desired,
            paused=True,
            blockers=(Blocker(Reason.PAUSED, "spec.paused is true: nothing is changed"),),
            exhausted=observed.exhausted,
        )

    blockers: list[Blocker] = []
    deletes: list[DeleteNode] = []
    reboots: list[RebootNode] = []

    # 3. Health remediation, short-circuited when too much is broken at once.
    health = spec.policies.health
    deadlines = [(n, unhealthy_at(n, health, observed.watching_nodes)) for n in (*active, *warm)]
    unhealthy_all = [n for n, at in deadlines if at is not None and observed.now > at]
    unhealthy = [n for n in unhealthy_all if not n.warm] if warm else unhealthy_all
    upcoming = [at for _, at in deadlines if at is not None and at >= observed.now]
    recheck_at = min(upcoming, default=None)
    # Machines gone at the provider are replaced whatever the recovery (see the top).
    to_replace = (
        unhealthy if health.recovery == "Recreate" else [n for n in unhealthy if n.machine_missing]
    )
    to_reboot = [n for n in unhealthy if health.recovery == "Reboot" and not n.machine_missing]
    remediating = False
    held: list[Hold] = []
    warm_broken = {n.name for n in unhealthy_all if n.warm}
    remediate_warm = bool(warm_broken) and not spec.suspends("Remediate")
    if to_replace or to_reboot or warm_broken:
        limit = resolve_int_or_percent(health.max_unhealthy, max(desired, 1), round_up=False)
        if health.max_unhealthy is not None and len(unhealthy_all) > limit:
            remediate_warm = False
            blockers.append(
                Blocker(
                    Reason.TOO_MANY_UNHEALTHY,
                    f"{len(unhealthy_all)} nodes are unhealthy, more than maxUnhealthy "
                    f"({health.max_unhealthy}); remediation is paused until fewer are",
                )
            )
        elif not (to_replace or to_reboot):
            pass  # only warm nodes: the pool replaces them (below)
        elif spec.suspends("Remediate"):
            waiting = [n.name for n in to_replace + to_reboot]
            held.append(
                Hold(
                    "Remediate", f"{len(waiting)} unhealthy nodes not remediated ({_some(waiting)})"
                )
            )
        else:
            deletes += [DeleteNode(n.name, "Remediation") for n in to_replace]
            # Rebooting, or asked to and not yet: asking again would only rewrite the spec.
            reboots += [
                RebootNode(n.name)
                for n in to_reboot
                if n.state != "Rebooting" and not n.reboot_pending
            ]
            remediating = True

    # Nodes the provider refused for capacity make way for one of another choice; not
    # while Launch is suspended (the replacement is a new node: the refused one, kept,
    # retries its own choice as it would without the policy).
    capacity = assess(spec, active, observed.exhausted, observed.now)
    if not spec.suspends("Launch"):
        deletes += [DeleteNode(name, "CapacityFallback") for name in capacity.refused]
    if capacity.recheck_at is not None:
        upcoming.append(capacity.recheck_at)

    gone = {d.name for d in deletes}
    survivors = [n for n in active if n.name not in gone]
    rollout = spec.policies.rollout
    lifetime = rollout.max_node_lifetime_seconds
    expiries = [(n, expires_at(n, lifetime)) for n in survivors]
    expired = [n for n, at in expiries if at is not None and observed.now >= at]
    upcoming += [at for _, at in expiries if at is not None and at > observed.now]
    recheck_at = min(upcoming, default=None)
    outdated = [
        n
        for n in survivors
        if n.profile_hash != declared.profile_hash and rollout.strategy == "RollingUpdate"
    ]
    stale = {n.name for n in outdated}
    # Expired nodes of the current profile go after those of an older one, oldest first.
    expired_current = sorted(
        (n for n in expired if n.name not in stale), key=lambda n: (n.created_at, n.name)
    )
    to_roll = outdated + expired_current

    # 4. Rollout of a changed profile, and of expired nodes.
    rolling = bool(to_roll)
    holding = [p for p in ("Rollout", "Launch") if spec.suspends(p)]
    if rolling and holding:
        kinds = []
        if outdated:
            kinds.append(f"{len(outdated)} built from an older profile")
        if expired_current:
            kinds.append(f"{len(expired_current)} past maxNodeLifetimeSeconds")
        which = _some([n.name for n in to_roll])
        what = f"{len(to_roll)} nodes not replaced: {', '.join(kinds)} ({which})"
        held.append(
            Hold("Rollout", what)
            if holding[0] == "Rollout"
            else Hold("Launch", f"{what}; a replacement needs a new node")
        )
        rolling = False
    surge = 0
    floor = 0
    budget = {"ready": sum(1 for n in survivors if n.ready)}

    def keeps_availability(n: NodeView) -> bool:
        return rolling and n.ready and budget["ready"] - 1 < floor

    if rolling:
        surge = resolve_int_or_percent(rollout.max_surge, desired, round_up=True)
        unavailable = resolve_int_or_percent(rollout.max_unavailable, desired, round_up=False)
        if surge == 0 and unavailable == 0:
            surge = 1
        floor = max(0, desired - unavailable)

        victims = rank_for_deletion(
            outdated,
            len(outdated),
            spec.policies.deletion.criteria,
            declared.profile_hash,
            spec.policies.placement.zones,
            desired,
            rng,
            counted=survivors,
        )
        expired_names = {n.name for n in expired}
        for victim in [*victims, *(n for n in expired_current if not n.protected)]:
            if keeps_availability(victim):
                continue
            if victim.ready:
                budget["ready"] -= 1
            cause: DeletionCause = "Expired" if victim.name in expired_names else "Rollout"
            deletes.append(DeleteNode(victim.name, cause))
        gone = {d.name for d in deletes}
        survivors = [n for n in survivors if n.name not in gone]
        stuck = [n.name for n in to_roll if n.protected]
        if stuck:
            blockers.append(
                Blocker(
                    Reason.PROTECTED_FROM_SCALE_IN,
                    f"{len(stuck)} nodes built from an older profile or expired are annotated "
                    "nodecluster.io/protect-from-scale-in and are not replaced "
                    f"({', '.join(stuck[:3])}); remove the annotation or delete them by hand",
                )
            )

    # 7 (first part). The warm pool's members, and which of them may be promoted.
    pool = spec.warm_pool
    view = None
    if pool is not None or warm:
        view = assess_pool(
            spec, warm, declared.profile_hash, observed.now, warm_broken, remediate_warm
        )
        upcoming += [at for at in view.expires if at > observed.now]
        recheck_at = min(upcoming, default=None)
    moves: list[PoolMove] = []
    returned: list[NodeView] = []
    members = len(view.members) if view is not None else 0
    expired_names = {n.name for n in expired}

    # 5. Scaling toward the target.
    count = len(survivors)
    ceiling = desired + surge
    if count > ceiling and spec.suspends("Terminate"):
        held.append(
            Hold(
                "Terminate",
                f"{count - ceiling} nodes above the target of {desired} not removed "
                f"({count} exist)",
            )
        )
    elif count > ceiling:
        excess = count - ceiling

        def vetoed(n: NodeView) -> bool:
            # Mid-rollout, a scale-in must not take availability below the floor either;
            # the rest of the excess goes once the new nodes are ready.
            if keeps_availability(n):
                return True
            if n.ready:
                budget["ready"] -= 1
            return False

        victims = rank_for_deletion(
            survivors,
            excess,
            spec.policies.deletion.criteria,
            declared.profile_hash,
            spec.policies.placement.zones,
            ceiling,
            rng,
            keep=vetoed,
        )
        back = returns_on_scale_in(
            pool,
            victims,
            members,
            declared.profile_hash,
            {n.name for n in unhealthy},
            expired_names,
        )
        if back:
            pool_state: PowerState = pool.state if pool is not None else "Stopped"
            moves += [PoolMove(v.name, True, pool_state) for v in back]
            returned = back
            members += len(back)
            going_back = {v.name for v in back}
            victims = [v for v in victims if v.name not in going_back]
        deletes += [DeleteNode(v.name, "ScaleIn") for v in victims]
        unprotected = sum(1 for n in survivors if not n.protected)
        if unprotected < excess:
            blockers.append(
                Blocker(
                    Reason.PROTECTED_FROM_SCALE_IN,
                    f"{excess - unprotected} more nodes should go, but the rest are annotated "
                    "nodecluster.io/protect-from-scale-in",
                )
            )
        gone = {d.name for d in deletes} | {m.name for m in moves}
        survivors = [n for n in survivors if n.name not in gone]
        count = len(survivors)

    creates_needed = max(0, desired - count)
    replaced: set[str] = set()
    if rolling:
        replaced = {n.name for n in to_roll}
        staying = sum(1 for n in survivors if n.name not in replaced)
        room = ceiling - count
        creates_needed = max(creates_needed, min(room, desired - staying))

    def new_zones(needed: int) -> list[str | None]:
        # Mid-rollout the new nodes replace the outdated ones, which all go: they are
        # placed by the nodes that stay, toward the spread of the cluster the rollout ends
        # with (a warm node promoted counts as a new node here).
        placed_among = [n for n in survivors if n.name not in replaced]
        return zones_for_new_nodes(
            spec.policies.placement.zones,
            (n.zone for n in placed_among),
            needed,
            desired if rolling else max(desired, count + needed),
        )

    promoted: list[NodeView] = []
    if creates_needed and view is not None and view.promotable:
        # Warm nodes first, in the zones the new nodes would go to (warmpool.py rule 2).
        wanted = new_zones(creates_needed)
        promoted = choose_promotions(view.promotable, wanted, bool(spec.policies.placement.zones))
        power_now: PowerState = "Stopped" if spec.desired_state == "Stopped" else "Running"
        moves += [PoolMove(n.name, False, power_now) for n in promoted]
        members -= len(promoted)
        creates_needed -= len(promoted)
        survivors = [*survivors, *promoted]
        count = len(survivors)
    if creates_needed and spec.suspends("Launch"):
        held.append(
            Hold("Launch", f"{creates_needed} nodes not created ({count} of {desired} exist)")
        )
        creates_needed = 0

    refused = observed.provider_problem or observed.no_new_machines
    if creates_needed and refused is not None:
        blockers.append(Blocker(*refused))
        creates_needed = 0
    # Compare with the clamped headroom: a quota lowered below usage (negative headroom)
    # blocks only when something is actually needed.
    if observed.headroom is not None and creates_needed > max(observed.headroom, 0):
        reason, message = observed.headroom_limit or (
            Reason.QUOTA_EXCEEDED,
            "the NodeProvider's quota allows {room} more nodes, {needed} are needed",
        )
        blockers.append(
            Blocker(reason, message.format(room=max(observed.headroom, 0), needed=creates_needed))
        )
        creates_needed = max(observed.headroom, 0)

    power_state: PowerState = "Stopped" if spec.desired_state == "Stopped" else "Running"
    zones = new_zones(creates_needed)
    picks, short = pick_choices(spec, capacity, zones, survivors, observed.now)
    if short is not None:
        blockers.append(Blocker(*short))
    taken = {n.name for n in observed.nodes}
    names = new_names(declared.name, taken, len(picks), rng)
    creates = tuple(
        CreateNode(name, p.zone, power_state, p.alternative, p.machine_type, p.capacity_type)
        for name, p in zip(names, picks, strict=True)
    )

    # 6. Power state of the nodes that stay (a promotion's write powers its node).
    moved = {m.name for m in moves}
    power = tuple(
        SetPower(n.name, power_state)
        for n in survivors
        if n.power_hold is None and n.power_state != power_state and n.name not in moved
    )
    if power and spec.suspends("PowerChange"):
        verb = "stopped" if power_state == "Stopped" else "started"
        waiting = [s.name for s in power]
        held.append(Hold("PowerChange", f"{len(waiting)} nodes not {verb} ({_some(waiting)})"))
        power = ()

    # 7. The warm pool: its retirements and surplus go, and it is refilled with the quota
    # room the serving nodes' creates left.
    report = None
    if view is not None:
        left = None if observed.headroom is None else max(observed.headroom, 0) - len(creates)
        refill = _plan_pool(
            declared,
            observed,
            view,
            promoted,
            returned,
            left,
            refused,
            rng,
            taken,
        )
        creates += refill.creates
        deletes += refill.deletes
        power += refill.power
        report = refill.report

    return Plan(
        desired=desired,
        creates=creates,
        deletes=tuple(deletes),
        power=power,
        reboots=tuple(reboots),
        blockers=tuple(blockers),
        unhealthy=tuple(n.name for n in unhealthy_all),
        recheck_at=recheck_at,
        remediating=remediating,
        rolling=rolling,
        held=tuple(held),
        expired=tuple(n.name for n in expired),
        exhausted=capacity.exhausted,
        moves=tuple(moves),
        pool=report,
    )


@dataclass(frozen=True)
class _PoolPlan:
    creates: tuple[CreateNode, ...]
    deletes: tuple[DeleteNode, ...]
    power: tuple[SetPower, ...]
    report: PoolReport | None


def _plan_pool(
    declared: Declared,
    observed: Observed,
    view: PoolView,
    promoted: list[NodeView],
    returned: list[NodeView],
    left: int | None,
    refused: tuple[Reason, str] | None,
    rng: random.Random,
    taken: set[str],
) -> _PoolPlan:
    """Step 7 after the scale (warmpool.py rules 6 to 8): retire, trim, refill, power.
    `left` is the quota room the serving creates left (None: no quota); `returned` the
    nodes a scale-in moved into the pool."""
    spec = declared.spec
    pool = spec.warm_pool
    size = pool.size if pool is not None else 0
    gone = {n.name for n in promoted}
    staying = [n for n in view.members if n.name not in gone]
    deletes = [DeleteNode(n.name, "WarmPool") for n in view.retire]
    held = list(view.held)
    count = len(staying) + len(returned)
    if count > size:
        if spec.suspends("Terminate"):
            held.append(f"{count - size} warm nodes above the pool's size of {size} not removed")
        else:
            trimmed = surplus(spec, staying, count - size, declared.profile_hash, rng)
            deletes += [DeleteNode(n.name, "WarmPool") for n in trimmed]
            cut = {n.name for n in trimmed}
            staying = [n for n in staying if n.name not in cut]
            count = len(staying) + len(returned)
    needed = max(0, size - count)
    short: tuple[Reason, str] | None = None
    if needed and spec.suspends("Launch"):
        held.append(f"{needed} warm nodes not created (Launch suspended)")
        needed = 0
    elif needed and refused is not None:
        short, needed = refused, 0
    elif needed and left is not None and needed > left:
        reason, message = observed.headroom_limit or (
            Reason.QUOTA_EXCEEDED,
            "the NodeProvider's quota allows {room} more nodes, {needed} are needed",
        )
        short = (reason, message.format(room=max(left, 0), needed=needed))
        needed = max(left, 0)
    creates: tuple[CreateNode, ...] = ()
    if needed:
        zones = zones_for_new_nodes(
            spec.policies.placement.zones,
            (n.zone for n in (*staying, *returned)),
            needed,
            size,
        )
        names = new_names(declared.name, taken, needed, rng)
        power_state = new_warm_power(spec)
        creates = tuple(
            CreateNode(name, zone, power_state, warm=True)
            for name, zone in zip(names, zones, strict=True)
        )
    power = tuple(SetPower(name, state) for name, state in pool_power(spec, staying))
    if power and spec.suspends("PowerChange"):
        held.append(f"{len(power)} warm nodes not powered to the pool's state")
        power = ()
    members = [*staying, *returned]
    return _PoolPlan(creates, tuple(deletes), power, pool_report(spec, members, short, held))
