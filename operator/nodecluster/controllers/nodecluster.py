"""NodeCluster controller: decides how many ClusterNodes exist and which.

A reconcile is a short list of phases over one `ClusterScope`, as Cluster API's are:

    read -> ensure_finalizer -> observe -> decide -> act
         -> abandon_machines (a cluster deleted with nodecluster.io/abandon-machines)
         -> sweep_orphans -> report
         -> release (a deleted cluster whose machines are all gone) -> next_look

Each phase is a small function that reads and fills the scope, and may end the reconcile
early by returning `Stop(when to look again)`. The decisions are pure (`planning/`):
`plan` says what to change, `cluster_status` what the status says afterwards; the phases
only read, write and remember. The controller never talks to a machine directly except to
sweep orphans; machines belong to the ClusterNode controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nodecluster import API_VERSION
from nodecluster.api.clusternode import ClusterNodeSpec, PowerState
from nodecluster.api.common import ABANDON_MACHINES_ANNOTATION, Condition, annotated_true
from nodecluster.api.nodecluster import ClusterState, NodeCluster, NodeClusterStatus
from nodecluster.api.reasons import Reason
from nodecluster.api.warmpool import POOL_LABEL, WARM
from nodecluster.clock import rfc3339
from nodecluster.controllers.accounting import cluster_usage, remember, retire_cluster
from nodecluster.controllers.announcements import event_name, post_once
from nodecluster.controllers.expectations import NsName
from nodecluster.controllers.fallback import announce_exhaustion
from nodecluster.controllers.kubeapi import (
    CLUSTERNODES,
    NODECLUSTERS,
    REFUSED,
    KubeConflict,
    KubeError,
    KubeNotFound,
    status_patch,
)
from nodecluster.controllers.metrics import creation_reasons, summarize, unhealthy_reason
from nodecluster.controllers.phases import CONFLICT_RETRY_SECONDS, Phase, Stop, run_phases
from nodecluster.controllers.planinput import declared_of, listed_nodes, observed_of
from nodecluster.controllers.quota import cluster_headroom
from nodecluster.controllers.takeover import adopting_operation
from nodecluster.controllers.world import (
    CLUSTER_FINALIZER,
    NODE_FINALIZER,
    PROVIDER_REFRESH_SECONDS,
    IndexedNode,
    ProviderUnavailable,
    World,
)
from nodecluster.planning.adopt import hold_for_adoption
from nodecluster.planning.fallback import made_from
from nodecluster.planning.model import CLUSTER_LABEL, Declared, NodeView, Observed
from nodecluster.planning.planner import CreateNode, DeleteNode, Plan, plan
from nodecluster.planning.status import (
    CONVERGED_STATES,
    ClusterReport,
    cluster_status,
    progress_only,
)
from nodecluster.planning.usage import refresh_due_in
from nodecluster.planning.warmpool import PoolMove
from nodecluster.providers.base import NotFound, ProviderError
from nodecluster.providers.identity import collected_by, node_of

log = logging.getLogger(__name__)

TRANSITIONS_WORTH_AN_EVENT: dict[ClusterState, tuple[str, str]] = {
    "Deployed": ("Normal", "Deployed"),
    "Stopped": ("Normal", "Stopped"),
    "Terminated": ("Normal", "Terminated"),
    "Empty": ("Normal", "Empty"),
    "Error": ("Warning", "Error"),
    "PartlyDeployed": ("Warning", "PartlyDeployed"),
    "Updating": ("Normal", "Updating"),
    "Recovering": ("Warning", "Recovering"),
    "Stopping": ("Normal", "Stopping"),
    "Starting": ("Normal", "Starting"),
    "Terminating": ("Normal", "Terminating"),
}
"""State transitions a person watching `kubectl describe` wants to see, as Events."""

NODE_EXPIRED = "NodeExpired"
"""The reason of the Event naming nodes replaced for passing maxNodeLifetimeSeconds."""
WARM_NODES_PROMOTED = "WarmNodesPromoted"
"""The reason of the Event naming the warm nodes a scale-out promoted (api/warmpool.py)."""
ABANDONING_MACHINES = "AbandoningMachines"
"""The reason of the Event saying which nodes of a deleted cluster leave their machines."""
LISTED_NODES = 10
"""How many nodes an Event names (the count is always whole)."""
HEALTH_RECHECK_MARGIN = 1.0
"""Seconds after a health timeout runs out that the cluster looks (times are whole
seconds: a look at the very moment would find it not yet run out)."""
SAFETY_NET_SECONDS = 30.0
"""How soon a cluster still changing is looked at without an event (child events
normally come first)."""


@dataclass
class ClusterScope:
    """One reconcile of one NodeCluster: what was read, observed, decided and written."""

    key: NsName
    body: dict[str, Any]
    cluster: NodeCluster
    now: datetime
    declared: Declared = field(init=False)
    nodes: list[NodeView] = field(default_factory=list)
    observed: Observed | None = None
    plan: Plan | None = None
    machines_left: int = 0
    """Orphan machines still at the provider after this reconcile's sweep."""
    report: ClusterReport | None = None
    deferred: float | None = None
    """Seconds until progress held back from this status write is due."""
    status: NodeClusterStatus | None = None
    """The status this reconcile wrote (or found written): the report's, with the usage."""

    def __post_init__(self) -> None:
        self.declared = declared_of(self.cluster)

    @property
    def deleting(self) -> bool:
        """Whether the NodeCluster itself is being deleted."""
        return self.declared.deleting

    @property
    def abandons(self) -> bool:
        """Whether it is being deleted with `nodecluster.io/abandon-machines`: its machines
        are left, not deleted (clusternode.abandon_machine)."""
        return self.deleting and annotated_true(
            self.cluster.metadata.annotations, ABANDON_MACHINES_ANNOTATION
        )

    @property
    def cache_key(self) -> tuple[str, str, str]:
        """The cluster's key in the body cache."""
        return ("NodeCluster", *self.key)

    def decided(self) -> Plan:
        """The plan of this reconcile (after the decide phase)."""
        assert self.plan is not None, "decide runs before this phase"
        return self.plan


def listed(names: list[str]) -> str:
    """Node names for an Event: the first LISTED_NODES, and how many more."""
    more = len(names) - LISTED_NODES
    return ", ".join(names[:LISTED_NODES]) + (f" and {more} more" if more > 0 else "")


async def reconcile_cluster(world: World, key: NsName) -> float | None:
    """Bring one NodeCluster's nodes toward its declaration; return when to look again."""
    async with world.book.lock(key):
        scope = await read(world, key)
        if scope is not None:
            return await run_phases(world, scope, PHASES)
    # Gone. A child's last events wake a cluster deleted meanwhile: its lock, made again
    # for this reconcile, would otherwise be kept for good.
    lock = world.book.locks.get(key)
    if lock is not None and not lock.locked():
        del world.book.locks[key]
    return None


async def read(world: World, key: NsName) -> ClusterScope | None:
    """The NodeCluster as newest known, parsed once; None if it is gone."""
    cache_key = ("NodeCluster", *key)
    try:
        body = await world.body(NODECLUSTERS, cache_key)
    except KubeNotFound:
        world.expectations.forget(key)
        world.bodies.forget(cache_key)
        world.metrics.drop_cluster(key)
        return None
    return ClusterScope(
        key=key, body=body, cluster=NodeCluster.model_validate(body), now=world.now()
    )


async def ensure_finalizer(world: World, scope: ClusterScope) -> Stop | None:
    """Add the finalizer first, so no machine can exist without it guarding them."""
    meta = scope.cluster.metadata
    if CLUSTER_FINALIZER in meta.finalizers:
        return None
    if scope.deleting:
        # Deleting, and released already: nothing of ours is left to guard.
        world.bodies.drop(scope.cache_key)
        return Stop(None)
    try:
        patched = await world.api.patch(
            NODECLUSTERS,
            scope.key[0],
            scope.key[1],
            {
                "metadata": {
                    "finalizers": [*meta.finalizers, CLUSTER_FINALIZER],
                    "resourceVersion": meta.resource_version,
                }
            },
        )
    except KubeConflict:
        world.bodies.drop(scope.cache_key)
        return Stop(CONFLICT_RETRY_SECONDS)  # someone else wrote in between: read again
    except KubeNotFound:
        return Stop(None)
    world.bodies.wrote(scope.cache_key, patched)
    return None


async def observe(world: World, scope: ClusterScope) -> Stop | None:
    """The nodes (cache corrected by in-flight changes), quota headroom and provider."""
    nc = scope.cluster
    scope.now = world.now()  # after the finalizer write, which may have taken a while
    if world.expectations.overdue(scope.key):
        # The watch is far behind our own writes: read the truth once instead of
        # trusting a cache that may not show them yet (or dropping what we expect).
        listed = await world.api.list(CLUSTERNODES, scope.key[0])
        scope.nodes = world.expectations.confirm(scope.key, listed_nodes(listed, scope.key[1]))
    else:
        scope.nodes = world.nodes_of(scope.key)
    headroom = None if scope.deleting else cluster_headroom(world, nc)
    scope.observed = observed_of(
        nc,
        scope.nodes,
        scope.now,
        headroom=headroom,
        provider_problem=world.providers.problem(nc.spec.provider_ref.name),
        no_new_machines=world.providers.refuses_new_machines(nc.spec.provider_ref.name),
        seed=random.getrandbits(32),
        watching_nodes=world.node_links is not None,
    )
    return None


async def decide(world: World, scope: ClusterScope) -> Stop | None:
    """Plan the changes (pure); no new node while an Adopt operation makes its own."""
    assert scope.observed is not None
    adopting = await adopting_operation(world, scope.cluster)
    scope.plan = hold_for_adoption(await planned(scope.declared, scope.observed), adopting)
    return None


OFF_LOOP_PLAN_NODES = 2_000
"""From how many nodes a cluster is planned in a worker thread instead of on the loop."""


async def planned(declared: Declared, observed: Observed) -> Plan:
    """The plan, computed off the event loop for a large cluster.

    Planning is O(n log n) but not free: ~30 ms for 10,000 nodes, ~0.75 s for 100,000.
    On the loop, that long, every watch, every other cluster's reconcile and the liveness
    probe would wait. In a thread the loop still runs: the interpreter hands it the GIL
    every few milliseconds (sys.getswitchinterval). The plan's inputs are frozen views,
    never changed while it runs, so the thread reads them safely. Small clusters, nearly
    all of them, are planned inline: a thread hop costs more than their plan.
    """
    if len(observed.nodes) < OFF_LOOP_PLAN_NODES:
        return plan(declared, observed)
    return await asyncio.to_thread(plan, declared, observed)


async def act(world: World, scope: ClusterScope) -> Stop | None:
    """Execute the plan: create, delete, power and reboot ClusterNodes, concurrently."""
    p = scope.decided()
    nc = scope.cluster
    namespace = nc.metadata.namespace or "default"
    phash = scope.declared.profile_hash
    api = world.api

    metrics = world.metrics

    async def create(c: CreateNode, reason: str) -> None:
        try:
            await api.create(CLUSTERNODES, namespace, child_body(nc, c, phash))
        except KubeConflict:
            pass  # an earlier attempt created it (and was counted): exactly what we wanted
        except KubeError as err:
            if err.status in REFUSED:
                world.expectations.refused(scope.key, c.name)
            raise
        else:
            metrics.machine_event(scope.key, "created", reason)

    async def delete(d: DeleteNode) -> None:
        world.expectations.expect_delete(scope.key, d.name)
        try:
            await api.delete(CLUSTERNODES, namespace, d.name)
        except KubeError as err:
            if err.status in REFUSED:
                world.expectations.refused(scope.key, d.name)
            raise
        metrics.machine_event(scope.key, "deleted", d.reason)
        if d.reason == "Remediation":
            metrics.machine_event(scope.key, "remediated", why_unhealthy(d.name))

    async def reboot(name: str) -> None:
        with contextlib.suppress(KubeNotFound):
            await api.patch(
                CLUSTERNODES, namespace, name, {"spec": {"rebootRequestedAt": rfc3339(scope.now)}}
            )
            # The planner asks for reboots only to remediate (a Reboot recovery).
            metrics.machine_event(scope.key, "remediated", why_unhealthy(name))

    def why_unhealthy(name: str) -> str:
        node = nodes.get(name)  # (always there: the plan is of these nodes)
        return unhealthy_reason(node) if node is not None else "Unknown"

    async def set_power(name: str, power: PowerState) -> None:
        with contextlib.suppress(KubeNotFound):
            await api.patch(CLUSTERNODES, namespace, name, {"spec": {"powerState": power}})

    async def move(m: PoolMove) -> None:
        # One write: the label and the power state land together or not at all, so a
        # crash leaves the node warm or serving, never half (api/warmpool.py).
        label = WARM if m.warm else None
        patch = {"metadata": {"labels": {POOL_LABEL: label}}, "spec": {"powerState": m.power_state}}
        world.expectations.expect_move(scope.key, m.name, m.warm, m.power_state)
        try:
            await api.patch(CLUSTERNODES, namespace, m.name, patch)
        except KubeNotFound:
            world.expectations.move_failed(scope.key, m.name)
        except KubeError as err:
            # Refused, it did not happen. Without an answer (a timeout, a 5xx) it may have:
            # the move stays expected until the cache shows it or it is overdue and read
            # back (expectations.py), as a create or delete does, or the next reconcile
            # would promote another warm node for the same place.
            if err.status in REFUSED:
                world.expectations.move_failed(scope.key, m.name)
            raise

    # Every create is expected before any is sent (no await in between): the quota of
    # the provider counts them at once, so another cluster reconciling meanwhile cannot
    # take the same room (quota.py).
    for c in p.creates:
        world.expectations.expect_create(
            scope.key,
            IndexedNode(
                name=c.name,
                created_at=scope.now,
                zone=c.zone,
                power_state=c.power_state,
                profile_hash=phash,
                provider=nc.spec.provider_ref.name,
                machine_type=c.machine_type or nc.spec.profile.machine_type,
                capacity_type=c.capacity_type,
                warm=c.warm,
            ),
        )
    if not metrics.knows(scope.key):
        # Its first look in this process: known from now on (as it was read), so that its
        # nodes' first failures count before its report phase (metrics.knows).
        metrics.cluster_seen(
            scope.key, summarize(nc.spec.provider_ref.name, nc.spec.target_nodes, nc.status)
        )
    nodes = {n.name: n for n in scope.nodes} if p.deletes or p.reboots else {}
    jobs = [create(c, why) for c, why in zip(p.creates, creation_reasons(p), strict=True)]
    jobs += [delete(d) for d in p.deletes]
    jobs += [set_power(s.name, s.power_state) for s in p.power]
    jobs += [reboot(r.name) for r in p.reboots]
    jobs += [move(m) for m in p.moves]
    if not jobs:
        return None
    results = await asyncio.gather(*jobs, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for d in p.deletes:
        if d.reason == "Remediation":
            await api.event(
                scope.body,
                "Warning",
                "NodeRemediated",
                f"node {d.name} is unhealthy; recreating it",
            )
    promoted = [m.name for m in p.moves if not m.warm]
    if promoted:
        # Which machines a scale-out took from the pool (the Scaling Event says how many).
        await api.event(
            scope.body,
            "Normal",
            WARM_NODES_PROMOTED,
            f"promoted {len(promoted)} warm node(s) from the pool: {listed(promoted)}",
        )
    expired = [d.name for d in p.deletes if d.reason == "Expired"]
    if expired:
        # One Event per reconcile, naming them all: a rollout budget of several replaces
        # as many at once, and they share their reason.
        lifetime = nc.spec.policies.rollout.max_node_lifetime_seconds
        await api.event(
            scope.body,
            "Normal",
            NODE_EXPIRED,
            f"replacing {len(expired)} node(s) older than maxNodeLifetimeSeconds "
            f"({lifetime}s): {listed(expired)}",
        )
    if failures:
        log.info(
            "NodeCluster %s/%s: %d of %d writes failed: %s",
            *scope.key,
            len(failures),
            len(jobs),
            failures[0],
        )
        # The first failure, as it is: the queue's reporting (failures.py) writes it on
        # the cluster (Stalled when the API refused it, Degraded else) and in one Event.
        raise failures[0]
    if p.creates or p.deletes:
        # The provider's usage figures changed; refresh them once things settle.
        world.queues.provider.add(nc.spec.provider_ref.name, delay=PROVIDER_REFRESH_SECONDS)
    return None


async def abandon_machines(world: World, scope: ClusterScope) -> Stop | None:
    """A cluster deleted with `nodecluster.io/abandon-machines`: its nodes let go of their
    machines without deleting them (clusternode.abandon_machine). They are woken (one
    waiting on a provider that is gone retries only with backoff), and the cluster says
    once which nodes leave their machines; each node's Event names its machine.

    Once: under a name of the cluster's uid (announcements.py), so a restarted operator's
    post of it is none; and remembered, so this process does not post it on every look.
    It is posted before the cluster can let go (release comes after this phase): a post
    that fails in passing fails the reconcile, which is retried."""
    if not scope.abandons:
        return None
    names = sorted(n.name for n in scope.nodes)
    for name in names:
        world.queues.node.add((scope.key[0], name))
    if names and scope.key not in world.book.abandoning:
        shown = listed(names)
        meta = scope.cluster.metadata
        await post_once(
            world.api,
            event_name(meta.name, meta.uid, ABANDONING_MACHINES),
            scope.body,
            "Warning",
            ABANDONING_MACHINES,
            f"deleted with {ABANDON_MACHINES_ANNOTATION}: the machines of {len(names)} nodes "
            f"are left at NodeProvider {scope.cluster.spec.provider_ref.name!r}, not deleted "
            f"({shown}); each node's MachineAbandoned Event names its machine",
        )
        world.book.abandoning.add(scope.key)
    return None


async def sweep_orphans(world: World, scope: ClusterScope) -> Stop | None:
    """Keep the provider's health poll at the cluster's interval; delete orphan machines
    when the poll suspects some, and before a terminating cluster lets go (unless it
    abandons its machines: then none is deleted)."""
    nc = scope.cluster
    interval = float(nc.spec.policies.health.poll_interval_seconds)
    if world.book.poll_intervals.get(scope.key) != interval:
        world.book.poll_intervals[scope.key] = interval
        world.queues.provider.add(nc.spec.provider_ref.name, delay=interval)
    if scope.abandons:
        return None
    final = scope.decided().terminating and not scope.nodes
    if final or scope.key in world.book.orphans_suspected:
        world.book.orphans_suspected.discard(scope.key)
        scope.machines_left = await delete_orphans(world, scope, final=final)
    return None


async def report(world: World, scope: ClusterScope) -> Stop | None:
    """Write the status the planner derives, and the Events worth a person's attention."""
    assert scope.observed is not None
    scope.report = cluster_status(
        scope.declared, scope.observed, scope.decided(), scope.machines_left
    )
    change = scope.report.size_change
    if change is not None:
        await world.api.event(
            scope.body, "Normal", "Scaling", f"scaling from {change.before} to {change.after} nodes"
        )
    # Usage is folded in only when due (accounting.py), so an idle look writes nothing.
    usage = cluster_usage(world, scope.key, scope.cluster, scope.nodes, scope.now)
    remember(world, scope.key, scope.cluster, usage)
    scope.status = scope.report.status.model_copy(update={"usage": usage})
    scope.deferred = await write_status(world, scope, scope.status)
    return None


async def release(world: World, scope: ClusterScope) -> Stop | None:
    """A deleted cluster whose machines are all gone lets go: its finalizer is removed."""
    p = scope.decided()
    if not (scope.deleting and p.terminating and not scope.nodes and not scope.machines_left):
        return None
    nc = scope.cluster
    # Its hours stay in its provider's totals: folded in (once) before it lets go.
    assert scope.status is not None
    if not await retire_cluster(world, nc, scope.status.usage):
        return Stop(CONFLICT_RETRY_SECONDS)
    finalizers = [f for f in nc.metadata.finalizers if f != CLUSTER_FINALIZER]
    # The version this reconcile last wrote (its status), else the one it read.
    newest = world.bodies.get(scope.cache_key) or {}
    version = newest.get("metadata", {}).get("resourceVersion") or nc.metadata.resource_version
    try:
        await world.api.patch(
            NODECLUSTERS,
            *scope.key,
            {"metadata": {"finalizers": finalizers, "resourceVersion": version}},
        )
    except KubeConflict:
        world.bodies.drop(scope.cache_key)
        return Stop(CONFLICT_RETRY_SECONDS)
    except KubeNotFound:
        pass
    world.expectations.forget(scope.key)
    world.book.poll_intervals.pop(scope.key, None)
    world.book.settle(scope.key)
    world.bodies.drop(scope.cache_key)
    world.metrics.drop_cluster(scope.key)
    return Stop(None)


async def next_look(world: World, scope: ClusterScope) -> Stop | None:
    """When to look again: soon while changing, else only on events (or the slow resync),
    and in any case when a health timeout runs out (a Node silently not Ready sends no
    event when its time is up)."""
    if scope.deferred is not None:
        return Stop(scope.deferred)  # write the progress held back
    p = scope.decided()
    assert scope.report is not None
    recheck = None
    if p.recheck_at is not None:
        recheck = max((p.recheck_at - scope.now).total_seconds(), 0.0) + HEALTH_RECHECK_MARGIN
    status = scope.report.status
    if not p.empty or (status.state not in CONVERGED_STATES and not held_back(status)):
        # Progress is driven by child events; this is only the safety net.
        return Stop(min(SAFETY_NET_SECONDS, recheck or SAFETY_NET_SECONDS))
    # Converged, or held where it is by suspended processes (only a change of its spec
    # lets them go, and that is an event): nothing to do until an event, the provider's
    # health poll, or the slow safety-net resync. No per-cluster timers tick in an idle
    # fleet, and no body is kept.
    world.bodies.drop(scope.cache_key)
    world.book.settle(scope.key)
    assert scope.status is not None
    # Machines billing: their hours are folded into status.usage about hourly.
    due = refresh_due_in(scope.status.usage, scope.now, world.settings.usage_refresh_seconds)
    fold = math.inf if due is None else max(due, 1.0)
    return Stop(min(world.settings.idle_resync_seconds, recheck or math.inf, fold))


def held_back(status: NodeClusterStatus) -> bool:
    """Whether the status says nothing but suspended processes keeps the cluster from
    converging (planning/status.py): nothing is on its way, so nothing to watch for."""
    reconciling = next((c for c in status.conditions if c.type == "Reconciling"), None)
    return reconciling is not None and reconciling.reason == Reason.CHANGES_HELD_BACK


PHASES: tuple[Phase[ClusterScope], ...] = (
    ensure_finalizer,
    observe,
    decide,
    act,
    abandon_machines,
    sweep_orphans,
    report,
    release,
    next_look,
)


def child_body(nc: NodeCluster, create: CreateNode, phash: str) -> dict[str, Any]:
    """The ClusterNode to create: named, labelled, owned, and already finalized.

    The finalizer is part of the create so that no second write is needed to add it,
    and so the machine can never exist without something guarding it.
    """
    labels = dict(nc.spec.profile.labels)
    labels[CLUSTER_LABEL] = nc.metadata.name
    if create.warm:
        labels[POOL_LABEL] = WARM
    # A node made from an alternative carries the profile with its machine and capacity
    # type, and the cluster's profile hash: it is not outdated (planning/fallback.py).
    spec = ClusterNodeSpec(
        cluster_name=nc.metadata.name,
        provider_ref=nc.spec.provider_ref,
        profile=made_from(
            nc.spec.profile, create.alternative, create.machine_type, create.capacity_type
        ),
        profile_hash=phash,
        zone=create.zone,
        alternative=create.alternative or None,
        power_state=create.power_state,
    )
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterNode",
        "metadata": {
            "name": create.name,
            "namespace": nc.metadata.namespace,
            "labels": labels,
            "finalizers": [NODE_FINALIZER],
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "NodeCluster",
                    "name": nc.metadata.name,
                    "uid": nc.metadata.uid,
                    "controller": True,
                    # No blockOwnerDeletion: where OwnerReferencesPermissionEnforcement is on
                    # (OpenShift and others) it needs `update` on nodeclusters/finalizers, and
                    # it would buy nothing. The NodeCluster keeps its own finalizer until every
                    # ClusterNode and machine is gone, so foreground deletion's wait is already
                    # there; the garbage collector deletes orphaned children of a controller
                    # reference with or without it.
                }
            ],
        },
        "spec": spec.wire(),
    }


async def delete_orphans(world: World, scope: ClusterScope, final: bool) -> int:
    """Delete machines tagged with this cluster that no ClusterNode owns.

    Such machines appear when a ClusterNode is force-removed (finalizer stripped by
    hand) or a crash struck between a machine's create and its ClusterNode's delete.
    Runs when the provider's health poll suspects orphans, and before a terminating
    cluster lets go. A machine is only deleted once a direct read confirms it has no
    ClusterNode, so a stale cache can never make us delete a live node. Returns the
    machines still there.
    """
    nc = scope.cluster
    namespace, name = scope.key
    try:
        driver = await world.providers.driver(nc.spec.provider_ref.name)
        machines = await driver.list(f"{namespace}/{name}")
    except ProviderUnavailable as err:
        # The provider is gone or misconfigured, so nothing can be listed. Every machine
        # this operator made was deleted through its ClusterNode's finalizer, so only
        # machines whose ClusterNode someone force-removed could remain: let go, say so.
        if final:
            log.warning(
                "NodeCluster %s/%s: releasing without an orphan sweep: %s",
                namespace,
                name,
                err.message,
            )
        return 0
    except ProviderError as err:
        if final:
            # A passing fault: letting go now could leak machines we cannot see.
            log.info(
                "NodeCluster %s/%s: cannot list machines before release: %s", namespace, name, err
            )
            return 1
        return 0
    known = {n.name for n in scope.nodes}
    now = world.clock.now()
    remaining = 0
    settings = world.settings
    for m in machines:
        # Only this installation's machines (or an earlier version's) are ever collected.
        if not collected_by(settings.installation_id, settings.serves, m):
            continue
        node = node_of(m.name, m.tags)
        if node in known:
            continue
        if not final and (now - m.created_at).total_seconds() < world.settings.orphan_grace_seconds:
            continue
        try:
            await world.api.get(CLUSTERNODES, namespace, node)
            continue  # it does have a ClusterNode: the cache was behind
        except KubeNotFound:
            pass
        log.info("NodeCluster %s/%s: deleting orphan machine %s", namespace, name, m.name)
        try:
            await driver.delete(m.name)
            remaining += 1
            world.metrics.machine_event(scope.key, "deleted", "Orphan")
        except NotFound:
            pass
        except ProviderError:
            remaining += 1
    return remaining


async def write_status(
    world: World, scope: ClusterScope, status: NodeClusterStatus
) -> float | None:
    """One status patch, only when something changed, plus an Event on state transitions
    and one (exactly) when the cluster stalls.

    Progress (counts moving while the state stays) is written at most every
    `status_progress_seconds` per cluster: while a thousand nodes come up, a write per
    debounce window per cluster would be most of the API's load. Transitions, a new
    generation and converged states are written at once. Returns the seconds until held
    back progress is due, if it was held back.
    """
    nc = scope.cluster
    # What the gauges say, whether written now, held back or unchanged (a restarted
    # operator exports every cluster after its first look, which writes nothing).
    world.metrics.cluster_seen(
        scope.key, summarize(nc.spec.provider_ref.name, nc.spec.target_nodes, status)
    )
    old = nc.status.wire()
    new = status.wire()
    if old == new:
        return None
    now = world.clock.monotonic()
    if status.state not in CONVERGED_STATES and progress_only(nc.status, status):
        due = (
            world.book.progress_written.get(scope.key, 0.0) + world.settings.status_progress_seconds
        )
        if now < due:
            return due - now
    world.book.progress_written[scope.key] = now
    transition: tuple[str, str] | None = None
    if status.state is not None and nc.status.state != status.state:
        transition = TRANSITIONS_WORTH_AN_EVENT.get(status.state)
    await announce_exhaustion(world, scope.body, nc, status)
    stalled = newly_stalled(nc.status, status)
    if stalled is not None and (transition is None or transition[0] != "Warning"):
        # Stalled with no change of state to say so (a converged cluster whose provider
        # was deleted): a person must act, so it is said where people look. Before the
        # status that remembers it is written, under a name of this stall (announcements.py):
        # neither a kill nor a lost answer in between loses it, and a retry's post is none.
        await post_once(
            world.api,
            stalled_event_name(nc, status),
            scope.body,
            "Warning",
            stalled.reason,
            stalled.message,
        )
    try:
        patched = await world.api.patch(
            NODECLUSTERS, *scope.key, status_patch(old, new), status=True
        )
    except KubeNotFound:
        return None
    world.bodies.wrote(scope.cache_key, patched)
    if transition is not None:
        etype, reason = transition
        await world.api.event(scope.body, etype, reason, status.message or reason)
    return None


def stalled_event_name(nc: NodeCluster, new: NodeClusterStatus) -> str:
    """The name of the Event saying that a cluster stalled: one per stall. A stall is told
    from the next by the Stalled condition it replaces (its status, reason and transition
    time), which a retry of the same write finds unchanged, and which every stall after
    this one (once it cleared, or for another reason) finds changed."""
    after = next(c for c in new.conditions if c.type == "Stalled")
    before = next((c for c in nc.status.conditions if c.type == "Stalled"), None)
    replaced: tuple[str, ...] = ()
    if before is not None:
        since = before.last_transition_time
        replaced = (before.status, before.reason, since.isoformat() if since else "")
    return event_name(nc.metadata.name, nc.metadata.uid, "Stalled", after.reason, *replaced)


def newly_stalled(old: NodeClusterStatus, new: NodeClusterStatus) -> Condition | None:
    """The Stalled condition of `new` if it turned True (or changed its reason) since `old`."""
    after = next((c for c in new.conditions if c.type == "Stalled"), None)
    before = next((c for c in old.conditions if c.type == "Stalled"), None)
    if after is None or after.status != "True":
        return None
    if before is not None and before.status == "True" and before.reason == after.reason:
        return None
    return after
