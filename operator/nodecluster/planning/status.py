"""Derive a NodeCluster's status from the world: state, counts and kstatus conditions.

Status is a pure function of (declared, observed, plan), computed fresh every reconcile,
so it can never drift from what exists. Conditions follow kstatus, which Flux, Argo CD
and `kubectl wait` understand:

- `Ready` is True only when the cluster has converged *for the current generation*;
- `Reconciling` is True while the operator is still making changes;
- `Stalled` is True when it cannot make progress without help (bad provider config,
  quota, capacity);
- `Degraded` is True when the cluster works but not fully (some nodes broken, or
  remediation short-circuited);
- `Suspended` (only while `spec.suspend` names a process) is True, and its reason says
  whether a suspended process holds back a change the declaration needs
  (`ChangesHeldBack`, the message says what) or not (`ProcessesSuspended`).

Why a condition of its own for suspension, not a reason of `Stalled`: Stalled means a
person must act, and brings a Warning Event and an alert; a suspended process is what
its owner asked for. Not only a reason of `Ready` either: a cluster can be suspended
and converged (nothing held back), and people (and scripts) want to see what is
suspended without reading the spec. And only while something is suspended, so a cluster
that never suspends anything writes exactly the status it always wrote. Held back, the
cluster is not Ready; when nothing but the suspension stands between it and converging,
Ready and Reconciling say `ChangesHeldBack` with the same message, as `paused` says
`Paused`.

A condition keeps its lastTransitionTime until its status actually changes.

Warm nodes (spec.warmPool, planning/warmpool.py) are outside all of this: the state,
the counts, the zones and the conditions above are the serving nodes'. The pool has its
own count (`warmNodes`) and condition (`WarmPool`), both only with spec.warmPool, so a
cluster without a pool writes exactly the status it always wrote; and the scale
selector excludes warm nodes then, so an HPA never counts them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from nodecluster.api.common import ABANDON_MACHINES_ANNOTATION
from nodecluster.api.nodecluster import ClusterState, NodeClusterSpec, NodeClusterStatus
from nodecluster.api.reasons import Reason
from nodecluster.api.warmpool import POOL_LABEL, WARM
from nodecluster.planning.conditions import condition
from nodecluster.planning.fallback import fallback_condition
from nodecluster.planning.model import CLUSTER_LABEL, Declared, NodeView, Observed
from nodecluster.planning.planner import Blocker, Hold, Plan, plan
from nodecluster.planning.warmpool import WARM_POOL_CONDITION

CONVERGED_STATES: frozenset[ClusterState | None] = frozenset(
    {"Deployed", "Stopped", "Empty", "Terminated"}
)
_NEVER_DEPLOYED: frozenset[ClusterState | None] = frozenset({None, "Init", "Deploying", "Error"})


def selector_for(cluster: str, spec: NodeClusterSpec | None = None) -> str:
    """The label selector of a cluster's serving ClusterNodes (status.selector, for `kubectl
    scale` and an HPA): with a warm pool, without the warm nodes."""
    if spec is not None and spec.warm_pool is not None:
        # `notin`, not `!=`: clients read the Scale's selector into a LabelSelector, which
        # has no `!=` (kubectl scale refused the whole Scale: "not a valid operator").
        return f"{CLUSTER_LABEL}={cluster},{POOL_LABEL} notin ({WARM})"
    return f"{CLUSTER_LABEL}={cluster}"


def serving(nodes: tuple[NodeView, ...]) -> list[NodeView]:
    """The nodes that count toward the target: all but the warm pool's."""
    return [n for n in nodes if not n.warm]


def _node_errors(nodes: list[NodeView]) -> Counter[Reason]:
    return Counter(n.error_reason for n in nodes if n.error_reason)


def derive_state(declared: Declared, observed: Observed, plan: Plan) -> tuple[ClusterState, str]:
    """The lifecycle state and a one-line message for people."""
    nodes = serving(observed.nodes)
    active = [n for n in nodes if not n.deleting]
    previous = observed.previous.state
    # A node held Stopped by an operation is where its owner wants it: it counts.
    ready = sum(
        1 for n in active if n.ready or (n.power_hold == "Stopped" and n.state == "Stopped")
    )
    desired = plan.desired
    errors = _node_errors(active)

    if plan.terminating:
        if nodes:
            return "Terminating", f"deleting {len(nodes)} nodes"
        return "Terminated", "every machine is gone"

    if observed.provider_problem is not None and not active:
        _reason, message = observed.provider_problem
        return ("Init" if desired == 0 or previous in (None, "Init") else "Error"), message

    if declared.spec.desired_state == "Stopped":
        stopped = sum(1 for n in active if n.state == "Stopped")
        # Nodes still being deleted keep it Stopping, as they keep a running cluster from
        # Deployed: status describes the world after the plan, where this reconcile's own
        # deletes are `deleting`, so counting only active nodes said Stopped (Ready) in the
        # very write that issued a scale-in's deletes, and `kubectl wait` returned early.
        going = len(nodes) - len(active)
        settled = not going and not plan.creates and not plan.deletes
        if settled and stopped == len(active) == desired:
            return "Stopped", f"{stopped} nodes stopped"
        if going:
            return "Stopping", f"{stopped} of {desired} nodes stopped, {going} being deleted"
        return "Stopping", f"{stopped} of {desired} nodes stopped"

    if desired == 0 and not nodes:
        return "Empty", "no nodes wanted, none exist"

    if plan.rolling:
        outdated = any(n.profile_hash != declared.profile_hash for n in active)
        what = [
            *(["built from an older profile"] if outdated else []),
            *(["past maxNodeLifetimeSeconds"] if plan.expired else []),
        ]
        return "Updating", f"replacing nodes {' and '.join(what)}"
    if plan.remediating:
        return "Recovering", f"remediating {len(plan.unhealthy)} unhealthy nodes"

    all_there = len(active) == desired and len(nodes) == len(active)
    if all_there and ready == desired:
        return "Deployed", f"{ready} nodes ready"
    if previous == "Recovering":
        # Replacements of remediated nodes are still coming up.
        return "Recovering", f"{ready} of {desired} nodes ready after remediation"

    if previous in ("Stopped", "Stopping", "Starting") and any(
        n.state in ("Stopped", "Starting", "Stopping") for n in active
    ):
        return "Starting", f"{ready} of {desired} nodes running"

    blocked = [b for b in plan.blockers if b.reason.stalls]
    if errors or blocked:
        detail = blocked[0].message if blocked else _error_summary(active)
        if ready == 0 and desired > 0:
            return "Error", detail
        return "PartlyDeployed", f"{ready} of {desired} nodes ready; {detail}"

    if previous in _NEVER_DEPLOYED:
        return "Deploying", f"{ready} of {desired} nodes ready"
    return "Scaling", f"{len(active)} nodes, {ready} ready, target {desired}"


def _error_summary(nodes: list[NodeView]) -> str:
    broken = [n for n in nodes if n.error_reason]
    if not broken:
        return "nodes are not ready"
    first = broken[0]
    more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
    return (
        f"node {first.name}: {first.error_reason}: {first.error_message or ''}".rstrip(": ") + more
    )


_SETTLING: frozenset[str | None] = frozenset(
    {None, "Pending", "Provisioning", "Starting", "Stopping", "Rebooting", "Deleting"}
)


def only_held(plan: Plan, nodes: list[NodeView]) -> bool:
    """Whether nothing but suspended processes stands between the cluster and converging:
    something is held back, the plan does nothing else, and no node is on its way
    anywhere (created, deleted, started, stopped, rebooted)."""
    return (
        bool(plan.held)
        and plan.empty
        and not any(n.deleting or n.state in _SETTLING for n in nodes)
    )


def holds_summary(holds: tuple[Hold, ...]) -> str:
    """What suspended processes hold back, in one line: `Launch: 2 nodes not created; ...`."""
    return "; ".join(f"{h.process}: {h.message}" for h in holds)


def provider_lost(declared: Declared, observed: Observed, plan: Plan) -> Blocker | None:
    """Why the cluster can change nothing, its deletion included, when its NodeProvider does
    not exist; None while it does (or while the cluster has nothing left to change).

    A provider deleted anyway (its finalizer removed by hand, or never created) leaves the
    cluster's machines out of reach: nothing scales, heals, stops or deletes them, and a
    deletion of the cluster waits for ever. So even a converged cluster is not Ready then,
    and says Stalled: a person must bring the provider back, or let the machines go. A
    cluster with nothing left of its own (Terminated, or deleting with no node left) needs
    no provider. A deleting one is told how to let them go (the abandon annotation).
    """
    problem = observed.provider_problem
    if problem is None or problem[0] is not Reason.PROVIDER_NOT_FOUND:
        return None
    nodes = len(observed.nodes)
    if plan.terminating and not nodes:
        return None
    if declared.deleting:
        return Blocker(
            problem[0],
            f"{problem[1]}: the machines of its nodes ({nodes}) cannot be deleted; create the "
            f"NodeProvider again, or annotate the NodeCluster {ABANDON_MACHINES_ANNOTATION}="
            '"true" to finish deleting it without deleting them',
        )
    return Blocker(*problem)


def derive_status(declared: Declared, observed: Observed, plan: Plan) -> NodeClusterStatus:
    """The whole status a reconcile writes."""
    nodes = serving(observed.nodes)
    active = [n for n in nodes if not n.deleting]
    state, message = derive_state(declared, observed, plan)
    generation = declared.generation
    prev = observed.previous.conditions
    now = observed.now

    # Converged but for what suspended processes hold back: not Ready (the owner's
    # declaration is not met), not Reconciling (nothing is being done about it).
    held_only = not plan.terminating and (
        (state in CONVERGED_STATES and plan.empty and bool(plan.held)) or only_held(plan, nodes)
    )
    converged = state in CONVERGED_STATES and plan.empty and not plan.held
    stall = next((b for b in plan.blockers if b.reason.stalls), None)
    lost = provider_lost(declared, observed, plan)
    if lost is not None:
        # Converged or not, nothing can be changed any more: not even its deletion.
        stall = lost
    elif stall is None and observed.provider_problem is not None:
        # A misconfigured provider that still exists stops only changes: a converged
        # cluster stays Ready meanwhile (its provider's own status says it is stalled).
        stall = None if converged else Blocker(*observed.provider_problem)
    node_errors = _node_errors(active)
    if stall is None and node_errors and state in ("Error", "PartlyDeployed"):
        reason = node_errors.most_common(1)[0][0]
        if reason.stalls:
            stall = Blocker(reason, _error_summary(active))
    paused = plan.paused

    held_message = holds_summary(plan.held)
    if plan.held and state not in CONVERGED_STATES:
        message = f"{message} (held back: {', '.join(sorted({h.process for h in plan.held}))})"
    ready_c = condition(
        prev,
        "Ready",
        converged and not paused and lost is None,
        lost.reason
        if lost
        else (
            Reason.CONVERGED
            if converged
            else Reason.CHANGES_HELD_BACK
            if held_only and stall is None
            else state
        ),
        lost.message if lost else held_message if held_only and stall is None else message,
        generation,
        now,
    )
    reconciling_c = condition(
        prev,
        "Reconciling",
        not converged and stall is None and not paused and not held_only,
        Reason.PAUSED
        if paused
        else Reason.CONVERGED
        if converged
        else Reason.CHANGES_HELD_BACK
        if held_only
        else state,
        "reconciliation paused by spec.paused"
        if paused
        else held_message
        if held_only
        else message,
        generation,
        now,
    )
    stalled_c = condition(
        prev,
        "Stalled",
        stall is not None,
        stall.reason if stall else Reason.PROGRESSING,
        stall.message if stall else "",
        generation,
        now,
    )
    degraded_reason = Reason.AS_EXPECTED
    degraded_msg = ""
    short = next((b for b in plan.blockers if b.reason == Reason.TOO_MANY_UNHEALTHY), None)
    if short is not None:
        degraded_reason, degraded_msg = short.reason, short.message
    elif plan.unhealthy:
        degraded_reason, degraded_msg = (
            Reason.UNHEALTHY_NODES,
            f"unhealthy: {', '.join(plan.unhealthy[:5])}",
        )
    elif node_errors and state not in ("Deploying",):
        degraded_reason = node_errors.most_common(1)[0][0]
        degraded_msg = _error_summary(active)
    degraded_c = condition(
        prev,
        "Degraded",
        degraded_reason != Reason.AS_EXPECTED,
        degraded_reason,
        degraded_msg,
        generation,
        now,
    )

    conditions = [ready_c, reconciling_c, stalled_c, degraded_c]
    suspended = declared.spec.suspend or []
    if suspended:
        names = ", ".join(suspended)
        conditions.append(
            condition(
                prev,
                "Suspended",
                True,
                Reason.CHANGES_HELD_BACK if plan.held else Reason.PROCESSES_SUSPENDED,
                f"{names} suspended; held back: {held_message}"
                if plan.held
                else f"{names} suspended; nothing held back",
                generation,
                now,
            )
        )

    pool = plan.pool
    if pool is not None:
        conditions.append(
            condition(
                prev, WARM_POOL_CONDITION, pool.full, pool.reason, pool.message, generation, now
            )
        )
    warm_nodes = None
    if declared.spec.warm_pool is not None:
        warm_nodes = sum(1 for n in observed.nodes if n.warm and not n.deleting)
    zones = Counter(n.zone for n in active if n.zone)
    return NodeClusterStatus(
        observed_generation=generation,
        state=state,
        message=message,
        current_nodes=len(active),
        ready_nodes=sum(1 for n in active if n.ready),
        stopped_nodes=sum(1 for n in active if n.state == "Stopped"),
        unhealthy_nodes=len(plan.unhealthy),
        updated_nodes=sum(
            1 for n in active if n.profile_hash == declared.profile_hash and not n.launching
        ),
        warm_nodes=warm_nodes,
        hook_waits=dict(sorted(Counter(n.hook for n in observed.nodes if n.hook).items())) or None,
        selector=selector_for(declared.name, declared.spec),
        profile_hash=declared.profile_hash,
        zones=dict(sorted(zones.items())) or None,
        last_scale_time=observed.previous.last_scale_time,
        conditions=[
            *conditions,
            *fallback_condition(declared.spec, plan.exhausted, prev, generation, now),
        ],
        exhausted_capacity=list(plan.exhausted) or None,
    )


def after(observed: Observed, done: Plan, profile_hash: str) -> Observed:
    """The world as it will be once a plan's writes land: deleted nodes are going,
    power changes are asked for, new nodes exist (with nothing running yet)."""
    gone = {d.name for d in done.deletes}
    power = {s.name: s.power_state for s in done.power}
    moves = {m.name: m for m in done.moves}
    nodes: list[NodeView] = []
    for n in observed.nodes:
        move = moves.get(n.name)
        if n.name in gone:
            nodes.append(replace(n, deleting=True))
        elif move is not None:
            nodes.append(replace(n, warm=move.warm, power_state=move.power_state))
        elif n.name in power:
            nodes.append(replace(n, power_state=power[n.name]))
        else:
            nodes.append(n)
    nodes += [
        NodeView(
            name=c.name,
            created_at=observed.now,
            zone=c.zone,
            power_state=c.power_state,
            profile_hash=profile_hash,
            machine_type=c.machine_type,
            capacity_type=c.capacity_type,
            warm=c.warm,
        )
        for c in done.creates
    ]
    headroom = None if observed.headroom is None else observed.headroom - len(done.creates)
    return replace(observed, nodes=tuple(nodes), headroom=headroom, exhausted=done.exhausted)


@dataclass(frozen=True)
class SizeChange:
    """A change of a cluster's size (not a replacement of broken or outdated nodes)."""

    before: int
    after: int


@dataclass(frozen=True)
class ClusterReport:
    """What a NodeCluster reconcile writes: its status, and a size change worth an Event."""

    status: NodeClusterStatus
    size_change: SizeChange | None = None


def cluster_status(
    declared: Declared, observed: Observed, done: Plan, machines_left: int = 0
) -> ClusterReport:
    """The status a reconcile writes after executing `done`, a plan made from `observed`.

    Status describes the world once the plan's writes land, and what the plan did: the
    plan made after it would not remediate again (its nodes are already going), but the
    cluster is still Recovering, and its unhealthy nodes are still named. A terminating
    cluster stays `Terminating` while nodes, orphan machines (`machines_left`, found by
    the sweep) or this plan's deletes remain. A change of size (nodes created or deleted
    toward another count, outside termination) stamps `lastScaleTime`.
    """
    final_view = after(observed, done, declared.profile_hash)
    plan_after = plan(declared, final_view)
    status_plan = replace(
        plan_after,
        remediating=done.remediating or plan_after.remediating,
        unhealthy=done.unhealthy or plan_after.unhealthy,
    )
    status = derive_status(declared, final_view, status_plan)
    nodes = observed.nodes
    if done.terminating and (nodes or machines_left or done.deletes):
        status = status.model_copy(update={"state": "Terminating"})
    before = sum(1 for n in nodes if not n.deleting and not n.warm)
    change = None
    resized = (
        any(not c.warm for c in done.creates)
        or any(d.reason != "WarmPool" for d in done.deletes)
        or bool(done.moves)
    )
    if before != done.desired and resized and not done.terminating:
        status = status.model_copy(update={"last_scale_time": observed.now})
        change = SizeChange(before, done.desired)
    return ClusterReport(status, change)


def progress_only(old: NodeClusterStatus, new: NodeClusterStatus) -> bool:
    """Whether a new status only moves counts and messages along: same state, same
    generation observed, same conditions (type, status, reason), same last scale."""

    def gist(s: NodeClusterStatus) -> tuple[object, ...]:
        conditions = tuple((c.type, c.status, c.reason) for c in s.conditions)
        # An exhausted offering is a record (its Event is posted with it), not progress.
        exhausted = tuple(repr(e.wire()) for e in s.exhausted_capacity or ())
        return (s.state, s.observed_generation, conditions, s.last_scale_time, exhausted)

    return gist(old) == gist(new)
