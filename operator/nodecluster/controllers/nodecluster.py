"""NodeCluster controller: decides how many ClusterNodes exist and which.

One reconcile is a short list of phases over fresh reads:
read -> ensure finalizer -> observe (cache + provider) -> plan -> act -> report.
It never talks to a machine directly except to sweep orphans; machines belong to the
ClusterNode controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from nodecluster import API_VERSION
from nodecluster.api.clusternode import ClusterNodeSpec
from nodecluster.api.nodecluster import NodeCluster, NodeClusterStatus
from nodecluster.controllers.kubeapi import (
    CLUSTERNODES,
    NODECLUSTERS,
    KubeConflict,
    KubeNotFound,
    status_patch,
)
from nodecluster.controllers.workqueue import Backoff
from nodecluster.controllers.world import (
    CLUSTER_FINALIZER,
    CLUSTER_LABEL,
    NODE_FINALIZER,
    NsName,
    ProviderUnavailable,
    World,
    profile_hash,
)
from nodecluster.planning.model import Declared, NodeView, Observed
from nodecluster.planning.planner import CreateNode, Plan, plan
from nodecluster.planning.status import CONVERGED_STATES, derive_status
from nodecluster.providers.base import NotFound, ProviderError

log = logging.getLogger(__name__)

_TRANSITIONS_WORTH_AN_EVENT = {
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


def declared_of(nc: NodeCluster) -> Declared:
    """The planner's view of the declaration."""
    return Declared(
        name=nc.metadata.name,
        spec=nc.spec,
        generation=nc.metadata.generation,
        profile_hash=profile_hash(nc.spec.profile),
        deleting=nc.metadata.deletion_timestamp is not None,
    )


def child_body(nc: NodeCluster, create: CreateNode, phash: str) -> dict[str, Any]:
    """The ClusterNode to create: named, labelled, owned, and already finalized.

    The finalizer is part of the create so that no second write is needed to add it,
    and so the machine can never exist without something guarding it.
    """
    labels = dict(nc.spec.profile.labels)
    labels[CLUSTER_LABEL] = nc.metadata.name
    spec = ClusterNodeSpec(
        cluster_name=nc.metadata.name,
        provider_ref=nc.spec.provider_ref,
        profile=nc.spec.profile,
        profile_hash=phash,
        zone=create.zone,
        power_state="Stopped" if create.power_state == "Stopped" else "Running",
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
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec.wire(),
    }


def _headroom(world: World, nc: NodeCluster) -> int | None:
    """How many more nodes the NodeProvider's quotas allow."""
    np = world.providers.get(nc.spec.provider_ref.name)
    if np is None:
        return None
    quotas = np.spec.quotas
    if quotas.max_nodes is None and quotas.max_cores is None:
        return None  # no quota: do not count every node of the provider
    nodes, cores = world.provider_usage(np.metadata.name)
    limits: list[int] = []
    if quotas.max_nodes is not None:
        limits.append(quotas.max_nodes - nodes)
    if quotas.max_cores is not None:
        per_node = world.cores_by_type(np.metadata.name).get(nc.spec.profile.machine_type, 1)
        limits.append((quotas.max_cores - cores) // max(per_node, 1))
    return max(0, min(limits)) if limits else None


def _provider_problem(world: World, nc: NodeCluster) -> tuple[str, str] | None:
    name = nc.spec.provider_ref.name
    if name not in world.providers:
        return ("ProviderNotFound", f"NodeProvider {name!r} does not exist")
    return world.provider_errors.get(name)


def after(observed: Observed, p: Plan, now: datetime, phash: str) -> Observed:
    """The world as it will be once the plan's writes land (for the status written now)."""
    gone = {d.name for d in p.deletes}
    power = {s.name: s.power_state for s in p.power}
    nodes: list[NodeView] = []
    for n in observed.nodes:
        if n.name in gone:
            nodes.append(replace(n, deleting=True))
        elif n.name in power:
            nodes.append(replace(n, power_state=power[n.name]))
        else:
            nodes.append(n)
    nodes += [
        NodeView(
            name=c.name, created_at=now, zone=c.zone, power_state=c.power_state, profile_hash=phash
        )
        for c in p.creates
    ]
    return Observed(
        nodes=tuple(nodes),
        now=now,
        previous=observed.previous,
        headroom=None if observed.headroom is None else observed.headroom - len(p.creates),
        provider_problem=observed.provider_problem,
        seed=observed.seed,
    )


async def reconcile_cluster(world: World, key: NsName) -> float | None:
    """Bring one NodeCluster's nodes toward its declaration; return when to look again."""
    async with world.lock(key):
        return await _reconcile_cluster(world, key)


async def _reconcile_cluster(world: World, key: NsName) -> float | None:
    namespace, name = key
    cache_key = ("NodeCluster", namespace, name)
    try:
        body = await world.body(NODECLUSTERS, cache_key)
    except KubeNotFound:
        world.expectations.forget(key)
        world.bodies.forget(cache_key)
        return None
    nc = NodeCluster.model_validate(body)
    meta = nc.metadata
    deleting = meta.deletion_timestamp is not None

    if deleting and CLUSTER_FINALIZER not in meta.finalizers:
        world.bodies.drop(cache_key)
        return None
    if not deleting and CLUSTER_FINALIZER not in meta.finalizers:
        try:
            patched = await world.client.patch(
                NODECLUSTERS,
                namespace,
                name,
                {
                    "metadata": {
                        "finalizers": [*meta.finalizers, CLUSTER_FINALIZER],
                        "resourceVersion": meta.resource_version,
                    }
                },
            )
        except KubeConflict:
            world.bodies.drop(cache_key)
            return 0.1  # someone else wrote in between: read again
        except KubeNotFound:
            return None
        world.bodies.wrote(cache_key, patched)

    now = world.now()
    declared = declared_of(nc)
    problem = _provider_problem(world, nc)
    nodes = world.nodes_of(key)
    observed = Observed(
        nodes=tuple(nodes),
        now=now,
        previous=nc.status,
        headroom=_headroom(world, nc) if not deleting else None,
        provider_problem=problem,
        seed=random.getrandbits(32),
    )
    p = plan(declared, observed)

    await _execute(world, body, nc, p, now)
    if (p.creates or p.deletes) and world.provider_queue is not None:
        # The provider's usage figures changed; refresh them once things settle.
        world.provider_queue.add(nc.spec.provider_ref.name, delay=5.0)
    swept = 0
    final = p.terminating and not nodes
    interval = float(nc.spec.policies.health.poll_interval_seconds)
    if world.poll_intervals.get(key) != interval:
        world.poll_intervals[key] = interval
        if world.provider_queue is not None:
            world.provider_queue.add(nc.spec.provider_ref.name, delay=interval)
    if final or key in world.orphans_suspected:
        world.orphans_suspected.discard(key)
        swept = await _sweep_orphans(world, nc, nodes, final=final)

    final_view = after(observed, p, now, declared.profile_hash)
    # Status describes the world once this plan's writes land, and what this plan did.
    plan_after = plan(declared, final_view)
    status_plan = replace(
        plan_after,
        remediating=p.remediating or plan_after.remediating,
        unhealthy=p.unhealthy or plan_after.unhealthy,
    )
    status = derive_status(declared, final_view, status_plan)
    if p.terminating and (nodes or swept or p.deletes):
        status = status.model_copy(update={"state": "Terminating"})
    before = sum(1 for n in nodes if not n.deleting)
    if before != p.desired and (p.creates or p.deletes) and not p.terminating:
        # A change of size (not a replacement of broken or outdated nodes).
        status = status.model_copy(update={"last_scale_time": now})
        await world.client.event(
            body, "Normal", "Scaling", f"scaling from {before} to {p.desired} nodes"
        )

    deferred = await _report(world, body, nc, status)

    if deleting and p.terminating and not nodes and not swept:
        if not await _release(world, nc):
            return 0.1
        world.expectations.forget(key)
        world.poll_intervals.pop(key, None)
        world.bodies.drop(cache_key)
        world.progress_written.pop(key, None)
        return None
    if deferred is not None:
        return deferred  # write the progress held back
    if (
        p.deletes
        or p.creates
        or p.power
        or p.reboots
        or status.state not in ("Deployed", "Stopped", "Empty", "Terminated")
    ):
        # Progress is driven by child events; this is only the safety net.
        return 30.0
    # Converged: nothing to do until an event, the provider's health poll, or the
    # slow safety-net resync. No per-cluster timers tick in an idle fleet, and no body
    # is kept for it.
    world.bodies.drop(cache_key)
    world.progress_written.pop(key, None)
    return world.settings.idle_resync_seconds


async def _execute(
    world: World, body: dict[str, Any], nc: NodeCluster, p: Plan, now: datetime
) -> None:
    namespace, key = (
        nc.metadata.namespace or "default",
        (nc.metadata.namespace or "default", nc.metadata.name),
    )
    phash = profile_hash(nc.spec.profile)
    client = world.client

    async def create(c: CreateNode) -> None:
        world.expectations.expect_create(
            key,
            NodeView(
                name=c.name,
                created_at=now,
                zone=c.zone,
                power_state=c.power_state,
                profile_hash=phash,
            ),
        )
        # A conflict means an earlier attempt created it: exactly what we wanted.
        with contextlib.suppress(KubeConflict):
            await client.create(CLUSTERNODES, namespace, child_body(nc, c, phash))

    async def delete(name: str) -> None:
        world.expectations.expect_delete(key, name)
        await client.delete(CLUSTERNODES, namespace, name)

    async def set_power(name: str, power: str) -> None:
        with contextlib.suppress(KubeNotFound):
            await client.patch(CLUSTERNODES, namespace, name, {"spec": {"powerState": power}})

    async def reboot(name: str) -> None:
        stamp = now.astimezone(UTC).isoformat().replace("+00:00", "Z")
        with contextlib.suppress(KubeNotFound):
            await client.patch(
                CLUSTERNODES, namespace, name, {"spec": {"rebootRequestedAt": stamp}}
            )

    jobs = [create(c) for c in p.creates]
    jobs += [delete(d.name) for d in p.deletes]
    jobs += [set_power(s.name, s.power_state) for s in p.power]
    jobs += [reboot(r.name) for r in p.reboots]
    if not jobs:
        return
    results = await asyncio.gather(*jobs, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for d in p.deletes:
        if d.reason == "Remediation":
            await client.event(
                body,
                "Warning",
                "NodeRemediated",
                f"node {d.name} is unhealthy; recreating it",
            )
    if failures:
        log.warning(
            "NodeCluster %s/%s: %d of %d writes failed: %s",
            namespace,
            nc.metadata.name,
            len(failures),
            len(jobs),
            failures[0],
        )
        raise Backoff(f"{len(failures)} writes failed")


async def _sweep_orphans(world: World, nc: NodeCluster, nodes: list[NodeView], final: bool) -> int:
    """Delete machines tagged with this cluster that no ClusterNode owns.

    Such machines appear when a ClusterNode is force-removed (finalizer stripped by
    hand) or a crash struck between a machine's create and its ClusterNode's delete.
    Runs when the provider's health poll suspects orphans, and before a terminating
    cluster lets go. A machine is only deleted once a direct read confirms it has no
    ClusterNode, so a stale cache can never make us delete a live node. Returns the
    machines still there.
    """
    try:
        driver = await world.driver(nc.spec.provider_ref.name)
        machines = await driver.list(f"{nc.metadata.namespace}/{nc.metadata.name}")
    except ProviderUnavailable as err:
        # The provider is gone or misconfigured, so nothing can be listed. Every machine
        # this operator made was deleted through its ClusterNode's finalizer, so only
        # machines whose ClusterNode someone force-removed could remain: let go, say so.
        if final:
            log.warning(
                "NodeCluster %s/%s: releasing without an orphan sweep: %s",
                nc.metadata.namespace,
                nc.metadata.name,
                err.message,
            )
        return 0
    except ProviderError as err:
        if final:
            # A passing fault: letting go now could leak machines we cannot see.
            log.info(
                "NodeCluster %s/%s: cannot list machines before release: %s",
                nc.metadata.namespace,
                nc.metadata.name,
                err,
            )
            return 1
        return 0
    known = {n.name for n in nodes}
    now = datetime.now(UTC)
    remaining = 0
    for m in machines:
        if m.name in known:
            continue
        if not final and (now - m.created_at).total_seconds() < world.settings.orphan_grace_seconds:
            continue
        try:
            await world.client.get(CLUSTERNODES, nc.metadata.namespace, m.name)
            continue  # it does have a ClusterNode: the cache was behind
        except KubeNotFound:
            pass
        log.info(
            "NodeCluster %s/%s: deleting orphan machine %s",
            nc.metadata.namespace,
            nc.metadata.name,
            m.name,
        )
        try:
            await driver.delete(m.name)
            remaining += 1
        except NotFound:
            pass
        except ProviderError:
            remaining += 1
    return remaining


def _progress_only(old: NodeClusterStatus, new: NodeClusterStatus) -> bool:
    """Whether a new status only moves counts and messages along: same state, same
    generation observed, same conditions (type, status, reason), same last scale."""

    def gist(s: NodeClusterStatus) -> tuple[Any, ...]:
        conditions = tuple((c.type, c.status, c.reason) for c in s.conditions)
        return (s.state, s.observed_generation, conditions, s.last_scale_time)

    return gist(old) == gist(new)


async def _report(
    world: World, body: dict[str, Any], nc: NodeCluster, status: NodeClusterStatus
) -> float | None:
    """One status patch, only when something changed, plus an Event on state transitions.

    Progress (counts moving while the state stays) is written at most every
    `status_progress_seconds` per cluster: while a thousand nodes come up, a write per
    debounce window per cluster would be most of the API's load. Transitions, a new
    generation and converged states are written at once. Returns the seconds until held
    back progress is due, if it was held back.
    """
    old = nc.status.wire()
    new = status.wire()
    if old == new:
        return None
    key = (nc.metadata.namespace or "", nc.metadata.name)
    now = time.monotonic()
    if status.state not in CONVERGED_STATES and _progress_only(nc.status, status):
        due = world.progress_written.get(key, 0.0) + world.settings.status_progress_seconds
        if now < due:
            return due - now
    world.progress_written[key] = now
    try:
        patched = await world.client.patch(
            NODECLUSTERS,
            nc.metadata.namespace,
            nc.metadata.name,
            status_patch(old, new),
            status=True,
        )
    except KubeNotFound:
        return None
    world.bodies.wrote(("NodeCluster", *key), patched)
    if nc.status.state != status.state and status.state in _TRANSITIONS_WORTH_AN_EVENT:
        etype, reason = _TRANSITIONS_WORTH_AN_EVENT[status.state]
        await world.client.event(body, etype, reason, status.message or status.state)
    return None


async def _release(world: World, nc: NodeCluster) -> bool:
    """Remove the finalizer once every machine is gone; False if the object changed
    meanwhile (read it again and retry)."""
    finalizers = [f for f in nc.metadata.finalizers if f != CLUSTER_FINALIZER]
    cache_key = ("NodeCluster", nc.metadata.namespace or "", nc.metadata.name)
    # The version this reconcile last wrote (its status), else the one it read.
    newest = world.bodies.get(cache_key) or {}
    version = newest.get("metadata", {}).get("resourceVersion") or nc.metadata.resource_version
    try:
        await world.client.patch(
            NODECLUSTERS,
            nc.metadata.namespace,
            nc.metadata.name,
            {"metadata": {"finalizers": finalizers, "resourceVersion": version}},
        )
    except KubeNotFound:
        return True
    except KubeConflict:
        world.bodies.drop(cache_key)
        return False
    return True
