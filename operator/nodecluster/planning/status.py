"""Derive a NodeCluster's status from the world: state, counts and kstatus conditions.

Status is a pure function of (declared, observed, plan), computed fresh every reconcile,
so it can never drift from what exists. Conditions follow kstatus, which Flux, Argo CD
and `kubectl wait` understand:

- `Ready` is True only when the cluster has converged *for the current generation*;
- `Reconciling` is True while the operator is still making changes;
- `Stalled` is True when it cannot make progress without help (bad provider config,
  quota, capacity);
- `Degraded` is True when the cluster works but not fully (some nodes broken, or
  remediation short-circuited).

A condition keeps its lastTransitionTime until its status actually changes.
"""

from __future__ import annotations

from collections import Counter

from nodecluster.api.nodecluster import ClusterState, NodeClusterStatus
from nodecluster.planning.conditions import condition
from nodecluster.planning.model import Declared, NodeView, Observed
from nodecluster.planning.planner import Blocker, Plan

CONVERGED_STATES: frozenset[str] = frozenset({"Deployed", "Stopped", "Empty", "Terminated"})
_STALL_REASONS = (
    "InvalidProviderConfig",
    "ProviderNotFound",
    "ProviderNotReady",
    "QuotaExceeded",
    "CapacityExceeded",
    "ProtectedFromScaleIn",
)
_NEVER_DEPLOYED: frozenset[str | None] = frozenset({None, "Init", "Deploying", "Error"})


def selector_for(cluster: str) -> str:
    """The label selector of a cluster's ClusterNodes (status.selector, for `kubectl scale`)."""
    return f"nodecluster.io/cluster={cluster}"


def _node_errors(nodes: list[NodeView]) -> Counter[str]:
    return Counter(n.error_reason for n in nodes if n.error_reason)


def derive_state(declared: Declared, observed: Observed, plan: Plan) -> tuple[ClusterState, str]:
    """The lifecycle state and a one-line message for people."""
    nodes = list(observed.nodes)
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
        if stopped == len(active) == desired and not plan.creates and not plan.deletes:
            return "Stopped", f"{stopped} nodes stopped"
        return "Stopping", f"{stopped} of {desired} nodes stopped"

    if desired == 0 and not nodes:
        return "Empty", "no nodes wanted, none exist"

    if plan.rolling:
        return "Updating", "replacing nodes built from an older profile"
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

    blocked = [b for b in plan.blockers if b.reason in _STALL_REASONS]
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


def derive_status(declared: Declared, observed: Observed, plan: Plan) -> NodeClusterStatus:
    """The whole status a reconcile writes."""
    nodes = list(observed.nodes)
    active = [n for n in nodes if not n.deleting]
    state, message = derive_state(declared, observed, plan)
    generation = declared.generation
    prev = observed.previous.conditions
    now = observed.now

    converged = state in CONVERGED_STATES and plan.empty
    stall = next((b for b in plan.blockers if b.reason in _STALL_REASONS), None)
    if stall is None and observed.provider_problem is not None:
        stall = None if converged else Blocker(*observed.provider_problem)
    node_errors = _node_errors(active)
    if stall is None and node_errors and state in ("Error", "PartlyDeployed"):
        reason = node_errors.most_common(1)[0][0]
        if reason in _STALL_REASONS:
            stall = Blocker(reason, _error_summary(active))
    paused = plan.paused

    ready_c = condition(
        prev,
        "Ready",
        converged and not paused,
        "Converged" if converged else state,
        message,
        generation,
        now,
    )
    reconciling_c = condition(
        prev,
        "Reconciling",
        not converged and stall is None and not paused,
        "Paused" if paused else ("Converged" if converged else state),
        "reconciliation paused by spec.paused" if paused else message,
        generation,
        now,
    )
    stalled_c = condition(
        prev,
        "Stalled",
        stall is not None,
        stall.reason if stall else "Progressing",
        stall.message if stall else "",
        generation,
        now,
    )
    degraded_reason = "AsExpected"
    degraded_msg = ""
    short = next((b for b in plan.blockers if b.reason == "TooManyUnhealthy"), None)
    if short is not None:
        degraded_reason, degraded_msg = short.reason, short.message
    elif plan.unhealthy:
        degraded_reason, degraded_msg = (
            "UnhealthyNodes",
            f"unhealthy: {', '.join(plan.unhealthy[:5])}",
        )
    elif node_errors and state not in ("Deploying",):
        degraded_reason = node_errors.most_common(1)[0][0]
        degraded_msg = _error_summary(active)
    degraded_c = condition(
        prev,
        "Degraded",
        degraded_reason != "AsExpected",
        degraded_reason,
        degraded_msg,
        generation,
        now,
    )

    zones = Counter(n.zone for n in active if n.zone)
    return NodeClusterStatus(
        observed_generation=generation,
        state=state,
        message=message,
        current_nodes=len(active),
        ready_nodes=sum(1 for n in active if n.ready),
        stopped_nodes=sum(1 for n in active if n.state == "Stopped"),
        unhealthy_nodes=len(plan.unhealthy),
        updated_nodes=sum(1 for n in active if n.profile_hash == declared.profile_hash),
        selector=selector_for(declared.name),
        profile_hash=declared.profile_hash,
        zones=dict(sorted(zones.items())) or None,
        last_scale_time=observed.previous.last_scale_time,
        conditions=[ready_c, reconciling_c, stalled_c, degraded_c],
    )
