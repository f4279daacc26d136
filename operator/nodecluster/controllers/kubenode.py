"""The ClusterNode controller's phases for the machine's Kubernetes Node (`run --nodes`).

Each is a no-op without Node integration (`world.node_links` is None): no call, no write.
With it, a machine's Node is found by provider id in the watch's index (never read from
the API), and:

- `sync_node`, after the status is written: the profile's Node labels and taints are put
  on the Node with one merge patch, only when they differ;
- `drain_node`, before a deleting node's machine goes: cordon, evict, wait, bounded by
  `deletionPolicy.drainTimeoutSeconds`. Its progress lives in `status.drain`, written
  before the first eviction: a restart in the middle goes on with the same start (so the
  timeout is the one the user set, not reset by every restart), and what was said in an
  Event (Draining, DrainBlocked) is not said again, because the status shows it was;
- `delete_kube_node`, once the machine is gone at the provider and before the finalizer
  goes: the Node object is deleted (a crash in between deletes it at the next look).

The link itself (nodeRef, NodeReady) is part of the node's status report
(clusternode.report, through planning.kubenode.with_node), in the same write.

The pods of a Node being drained are listed on every look (field selector spec.nodeName,
all namespaces) rather than watched: a drain is short and rare next to the life of a
fleet, and a pod watch would cost the operator every pod event of the cluster.
"""

from __future__ import annotations

import asyncio
import logging

from nodecluster.api.clusternode import DrainOutcome, DrainStatus
from nodecluster.api.nodecluster import DeletionPolicy, NodeCluster
from nodecluster.controllers.kubeapi import (
    NODECLUSTERS,
    NODES,
    PODS,
    KubeConflict,
    KubeDisruptionBlocked,
    KubeError,
    KubeNotFound,
)
from nodecluster.controllers.nodescope import (
    NodeScope,
    machine_missing,
    owned_elsewhere,
    write_status,
)
from nodecluster.controllers.phases import CONFLICT_RETRY_SECONDS, Stop
from nodecluster.controllers.world import World
from nodecluster.planning.kubenode import (
    NodeFacts,
    PodFacts,
    drain_work,
    pod_facts,
    sync_patch,
)
from nodecluster.planning.nodestatus import status_draining

log = logging.getLogger(__name__)

DRAIN_POLL_SECONDS = 5.0
"""How often a Node being drained is looked at (kubectl drain's retry interval)."""
EVICTED_RECHECK_SECONDS = 1.0
"""How soon a drain whose evictions all went through looks again: most pods go quickly."""


async def sync_node(world: World, scope: NodeScope) -> Stop | None:
    """Keep the profile's Node labels and taints on the machine's Node."""
    links, machine = world.node_links, scope.machine
    if links is None or machine is None:
        return None
    facts = links.node_of(machine.provider_id)
    if facts is None or facts.deleting:
        return None
    profile = scope.node.spec.profile
    patch = sync_patch(profile.node_labels or {}, profile.node_taints or (), facts)
    if patch is None:
        return None
    try:
        await world.api.patch(NODES, None, facts.name, patch)
    except KubeConflict:
        return Stop(CONFLICT_RETRY_SECONDS)  # the Node moved on: patch the newer one
    except KubeNotFound:
        pass  # gone meanwhile: its DELETED event wakes the node
    return None


async def deletion_policy(world: World, scope: NodeScope) -> DeletionPolicy:
    """The deletion policy of the node's NodeCluster (the defaults if it is gone)."""
    node = scope.node
    key = ("NodeCluster", node.metadata.namespace or "", node.spec.cluster_name)
    try:
        body = await world.body(NODECLUSTERS, key)
    except KubeNotFound:
        return DeletionPolicy()
    return NodeCluster.model_validate(body).spec.policies.deletion


async def drain_node(world: World, scope: NodeScope) -> Stop | None:
    """A deleting node's Node is drained before its machine is deleted; see the module."""
    links = world.node_links
    node = scope.node
    if links is None or not scope.deleting or node.status.provider_id is None:
        return None
    if owned_elsewhere(node) or machine_missing(node):
        return None  # no machine of ours runs: nothing to drain
    drain = node.status.drain
    if drain is not None and drain.finished_at is not None:
        return None
    facts = links.node_of(node.status.provider_id)
    now = world.now()
    if drain is None:
        timeout = (await deletion_policy(world, scope)).drain_timeout_seconds
        if facts is None or timeout == 0:
            return None  # no Node (or no drain wanted): the machine goes as it is
        drain = DrainStatus(started_at=now)
        await write_status(world, scope, status_draining(node, drain, facts.name))
        await world.api.event(
            scope.body,
            "Normal",
            "Draining",
            f"draining Node {facts.name} before its machine is deleted: cordoned, its pods "
            f"evicted as their PodDisruptionBudgets allow, for at most {timeout}s",
        )
    if facts is None:
        return await finish(world, scope, drain, "NodeGone", 0, "its Node is gone")
    if not facts.unschedulable:
        try:
            await world.api.patch(NODES, None, facts.name, {"spec": {"unschedulable": True}})
        except KubeNotFound:
            return await finish(world, scope, drain, "NodeGone", 0, "its Node is gone")
    listed = await world.api.list(PODS, None, fields=f"spec.nodeName={facts.name}")
    work = drain_work((pod_facts(p) for p in listed), node_ready=facts.ready == "True")
    if work.left == 0:
        return await finish(world, scope, drain, "Drained", 0, f"Node {facts.name} drained")
    timeout = (await deletion_policy(world, scope)).drain_timeout_seconds
    elapsed = (now - drain.started_at).total_seconds()
    if elapsed >= timeout:
        message = (
            f"the drain of Node {facts.name} ran out of time ({timeout}s, "
            f"deletionPolicy.drainTimeoutSeconds) with {work.left} pods left; deleting the "
            "machine anyway"
        )
        await world.api.event(scope.body, "Warning", "DrainTimedOut", message)
        return await finish(world, scope, drain, "TimedOut", work.left, message)
    refusals = await asyncio.gather(*(evict(world, pod) for pod in work.evict))
    blocked = next((r for r in refusals if r is not None), None)
    progress = drain.model_copy(update={"pods": work.left, "blocked": blocked})
    await write_status(world, scope, status_draining(scope.node, progress, facts.name))
    if blocked is not None and drain.blocked is None:
        # Once per blocking, not per retry: the status shows it was said.
        await world.api.event(
            scope.body,
            "Warning",
            "DrainBlocked",
            f"evicting pods from Node {facts.name} is refused: {blocked}; retrying until "
            f"the budget allows it or {timeout}s pass (deletionPolicy.drainTimeoutSeconds)",
        )
    soon = DRAIN_POLL_SECONDS if blocked is not None or work.waiting else EVICTED_RECHECK_SECONDS
    return Stop(min(soon, max(timeout - elapsed, 0.0)) or EVICTED_RECHECK_SECONDS)


async def evict(world: World, pod: PodFacts) -> str | None:
    """Evict one pod; why it was refused (None: evicted, or gone already).

    A 429 is a refusal for now (a PodDisruptionBudget, or the server still counting one),
    as is a 500 (two budgets select the pod: the server cannot decide); both are retried
    on the next look. Anything else (403: no RBAC for pods/eviction) fails the reconcile,
    to be reported on the node and retried with backoff."""
    try:
        await world.api.evict(pod.namespace, pod.name)
    except KubeNotFound:
        return None
    except KubeDisruptionBlocked as err:
        return f"pod {pod.namespace}/{pod.name}: {err.message}"
    except KubeError as err:
        if err.status not in (429, 500):
            raise
        return f"pod {pod.namespace}/{pod.name}: {err.message}"
    return None


async def finish(
    world: World,
    scope: NodeScope,
    drain: DrainStatus,
    outcome: DrainOutcome,
    left: int,
    message: str,
) -> Stop | None:
    """Record the end of the drain; the machine's deletion follows in this reconcile."""
    done = drain.model_copy(update={"finished_at": world.now(), "outcome": outcome, "pods": left})
    await write_status(world, scope, status_draining(scope.node, done, message=message))
    return None


async def delete_kube_node(world: World, scope: NodeScope) -> None:
    """The machine is gone: delete its Node object (the kubelet that kept it is gone too).
    Before the finalizer goes, so that a crash in between leaves it for the next look."""
    links = world.node_links
    if links is None:
        return
    facts: NodeFacts | None = links.node_of(scope.node.status.provider_id)
    if facts is not None and not facts.deleting:
        await world.api.delete(NODES, None, facts.name)
