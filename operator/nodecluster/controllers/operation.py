"""NodeClusterOperation controller: one-off actions, one at a time per cluster.

Operations of a cluster run strictly in creation order: the key of the work queue is
the cluster, and each run advances only the oldest unfinished operation. An operation
is refused (Failed, nothing changed) when its cluster or the nodes it names do not exist;
otherwise it records a result per node and its start and completion times, so the
object is the audit trail.

Changes to nodes are made under the cluster's lock, so the cluster's own reconcile sees
an operation's deletes and its target change together and never "repairs" half of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from nodecluster.api.clusternode import ClusterNode
from nodecluster.api.nodecluster import NodeCluster
from nodecluster.api.operation import NodeClusterOperation, NodeClusterOperationStatus, NodeResult
from nodecluster.controllers.kubeapi import (
    CLUSTERNODES,
    NODECLUSTERS,
    OPERATIONS,
    KubeNotFound,
    status_patch,
)
from nodecluster.controllers.world import CLUSTER_LABEL, NsName, ProviderUnavailable, World
from nodecluster.planning.model import POWER_HOLD_ANNOTATION
from nodecluster.planning.operations import (
    NodeFacts,
    OperationRefused,
    cooldown_left,
    new_target,
    select_nodes,
)
from nodecluster.providers.base import NotFound, ProviderError

log = logging.getLogger(__name__)

WAIT_POLL_SECONDS = 5.0
"""Safety-net requeue while an operation waits for nodes; events usually come first."""


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def reconcile_operations(world: World, key: NsName) -> float | None:
    """Advance the oldest unfinished operation of one cluster."""
    namespace, cluster = key
    raw = await world.client.list(OPERATIONS, namespace)
    ops = [NodeClusterOperation.model_validate(o) for o in raw]
    ops = [o for o in ops if o.spec.cluster_name == cluster]
    ops.sort(
        key=lambda o: (
            o.metadata.creation_timestamp or datetime.min.replace(tzinfo=UTC),
            o.metadata.name,
        )
    )
    active = [o for o in ops if o.status.phase not in ("Succeeded", "Failed")]
    if not active:
        world.pending_operations.discard(key)
        return None
    world.pending_operations.add(key)
    op = active[0]
    again = await _advance(world, op)
    if again is None:
        return 0.0 if len(active) > 1 else None
    return again


class _Finished(Exception):
    def __init__(self, phase: str, message: str, nodes: list[NodeResult] | None = None) -> None:
        super().__init__(message)
        self.phase = phase
        self.message = message
        self.nodes = nodes


async def _advance(world: World, op: NodeClusterOperation) -> float | None:
    now = world.now()
    status = op.status.model_copy(deep=True)
    if status.phase in (None, "Pending"):
        status.start_time = status.start_time or now
    try:
        again = await _run(world, op, status, now)
    except (_Finished, OperationRefused) as done:
        if isinstance(done, OperationRefused):
            status.phase, status.message = "Failed", str(done)
        else:
            status.phase, status.message = done.phase, done.message  # type: ignore[assignment]
            if done.nodes is not None:
                status.nodes = done.nodes
        status.completion_time = now
        again = None
    await _write(world, op, status)
    if status.phase in ("Succeeded", "Failed") and op.status.phase != status.phase:
        etype = "Normal" if status.phase == "Succeeded" else "Warning"
        body = op.model_dump(by_alias=True, mode="json")
        await world.client.event(
            body, etype, f"Operation{status.phase}", f"{op.spec.action}: {status.message}"
        )
        cluster_body = {
            "apiVersion": op.api_version,
            "kind": "NodeCluster",
            "metadata": {"name": op.spec.cluster_name, "namespace": op.metadata.namespace},
        }
        await world.client.event(
            cluster_body,
            etype,
            f"Operation{status.phase}",
            f"{op.metadata.name} ({op.spec.action}): {status.message}",
        )
    return again


async def _write(
    world: World, op: NodeClusterOperation, status: NodeClusterOperationStatus
) -> None:
    old, new = op.status.wire(), status.wire()
    if old != new:
        with contextlib.suppress(KubeNotFound):
            await world.client.patch(
                OPERATIONS,
                op.metadata.namespace,
                op.metadata.name,
                status_patch(old, new),
                status=True,
            )


async def _cluster(world: World, op: NodeClusterOperation) -> NodeCluster:
    try:
        body = await world.client.get(NODECLUSTERS, op.metadata.namespace, op.spec.cluster_name)
    except KubeNotFound as err:
        raise OperationRefused(f"NodeCluster {op.spec.cluster_name!r} does not exist") from err
    return NodeCluster.model_validate(body)


async def _nodes(world: World, op: NodeClusterOperation) -> list[ClusterNode]:
    raw = await world.client.list(
        CLUSTERNODES, op.metadata.namespace, f"{CLUSTER_LABEL}={op.spec.cluster_name}"
    )
    return [
        ClusterNode.model_validate(n) for n in raw if not n["metadata"].get("deletionTimestamp")
    ]


def _facts(node: ClusterNode) -> NodeFacts:
    return NodeFacts(
        name=node.metadata.name,
        labels=dict(node.metadata.labels),
        provider_id=node.status.provider_id,
        addresses=tuple(a.address for a in node.status.addresses),
    )


def _chosen(op: NodeClusterOperation, nodes: list[ClusterNode], require: bool) -> list[ClusterNode]:
    names = {f.name for f in select_nodes([_facts(n) for n in nodes], op.spec.nodes)}
    chosen = [n for n in nodes if n.metadata.name in names]
    if require and not chosen:
        raise OperationRefused("no node of the cluster matches spec.nodes")
    return chosen


async def _run(
    world: World, op: NodeClusterOperation, status: NodeClusterOperationStatus, now: datetime
) -> float | None:
    action = op.spec.action
    ns = op.metadata.namespace or "default"
    key = (ns, op.spec.cluster_name)
    nc = await _cluster(world, op)
    if nc.spec.desired_state == "Terminated" or nc.metadata.deletion_timestamp is not None:
        raise OperationRefused(f"NodeCluster {op.spec.cluster_name!r} is terminating")

    if action in ("ScaleOut", "ScaleIn"):
        return await _scale(world, op, nc, status, now)

    nodes = await _nodes(world, op)
    if action == "Check":
        chosen = _chosen(op, nodes, require=False)
        results = await asyncio.gather(*(_check(world, n) for n in chosen))
        bad = sum(1 for r in results if r.result == "Error")
        if world.node_queue is not None:
            for n in chosen:
                world.node_queue.add((ns, n.metadata.name))
        raise _Finished(
            "Succeeded", f"checked {len(results)} nodes, {bad} unhealthy", list(results)
        )

    if status.phase == "Running" and action in ("StopNodes", "StartNodes", "RebootNodes"):
        return _await_power(op, nodes, status, now)

    if action == "Recover":
        chosen = _chosen(op, nodes, require=False)
        # Ask the provider, not the cache: a Recover right after a failure must not
        # wait for the next health poll to notice it.
        checks = await asyncio.gather(*(_check(world, n) for n in chosen))
        broken = [
            n for n, c in zip(chosen, checks, strict=True) if c.result == "Error" or not _healthy(n)
        ]
        recovery = nc.spec.policies.health.recovery
        if broken and recovery == "None":
            raise OperationRefused("the health policy's recovery is None: nothing may be done")
        async with world.lock(key):
            for n in broken:
                if recovery == "Recreate":
                    await _delete_node(world, key, n)
                else:
                    await _patch_node(world, n, {"spec": {"rebootRequestedAt": _stamp(now)}})
        verb = "recreated" if recovery == "Recreate" else "rebooted"
        results = [
            NodeResult(name=n.metadata.name, result="OK", message=f"{verb}: was {n.status.state}")
            for n in broken
        ]
        results += [
            NodeResult(name=n.metadata.name, result="OK", message="healthy")
            for n in chosen
            if n not in broken
        ]
        _wake(world, key)
        raise _Finished("Succeeded", f"recovered {len(broken)} of {len(chosen)} nodes", results)

    chosen = _chosen(op, nodes, require=True)
    if action == "RemoveNodes":
        target = nc.spec.target_nodes - len(chosen)
        low = nc.spec.min_nodes or 0
        if target < low:
            raise OperationRefused(
                f"removing {len(chosen)} nodes would leave {target}, below minNodes ({low})"
            )
        async with world.lock(key):
            await world.client.patch(
                NODECLUSTERS, ns, nc.metadata.name, {"spec": {"targetNodes": target}}
            )
            for n in chosen:
                await _delete_node(world, key, n)
        _wake(world, key)
        raise _Finished(
            "Succeeded",
            f"removed {len(chosen)} nodes; target {nc.spec.target_nodes} -> {target}",
            [NodeResult(name=n.metadata.name, result="OK", message="removed") for n in chosen],
        )
    if action == "ReplaceNodes":
        async with world.lock(key):
            for n in chosen:
                await _delete_node(world, key, n)
        _wake(world, key)
        raise _Finished(
            "Succeeded",
            f"replacing {len(chosen)} nodes",
            [
                NodeResult(
                    name=n.metadata.name, result="OK", message="deleted; a new node replaces it"
                )
                for n in chosen
            ],
        )

    # Power actions: issue, then wait (phase Running) until every node reports it.
    for n in chosen:
        if action == "StopNodes":
            patch: dict[str, Any] = {
                "metadata": {"annotations": {POWER_HOLD_ANNOTATION: "Stopped"}},
                "spec": {"powerState": "Stopped"},
            }
        elif action == "StartNodes":
            patch = {
                "metadata": {"annotations": {POWER_HOLD_ANNOTATION: None}},
                "spec": {"powerState": "Running"},
            }
        else:
            patch = {"spec": {"rebootRequestedAt": _stamp(now)}}
        await _patch_node(world, n, patch)
    status.phase = "Running"
    status.nodes = [
        NodeResult(name=n.metadata.name, result="Pending", message="requested") for n in chosen
    ]
    status.message = f"{action}: waiting for {len(chosen)} nodes"
    return WAIT_POLL_SECONDS


def _await_power(
    op: NodeClusterOperation,
    nodes: list[ClusterNode],
    status: NodeClusterOperationStatus,
    now: datetime,
) -> float | None:
    by_name = {n.metadata.name: n for n in nodes}
    results: list[NodeResult] = []
    for r in status.nodes:
        node = by_name.get(r.name)
        if node is None:
            results.append(NodeResult(name=r.name, result="Error", message="node disappeared"))
        elif node.status.message and node.status.observed_generation == node.metadata.generation:
            results.append(NodeResult(name=r.name, result="Error", message=node.status.message))
        elif _power_done(op.spec.action, node, status.start_time):
            results.append(
                NodeResult(name=r.name, result="OK", message=f"machine is {node.status.state}")
            )
        else:
            results.append(
                NodeResult(name=r.name, result="Pending", message=f"machine is {node.status.state}")
            )
    status.nodes = results
    pending = sum(1 for r in results if r.result == "Pending")
    if pending:
        status.message = f"{op.spec.action}: waiting for {pending} of {len(results)} nodes"
        return WAIT_POLL_SECONDS
    errors = sum(1 for r in results if r.result == "Error")
    raise _Finished(
        "Failed" if errors else "Succeeded",
        f"{op.spec.action}: {len(results) - errors} OK, {errors} failed",
        results,
    )


def _power_done(action: str, node: ClusterNode, started: datetime | None) -> bool:
    if action == "StopNodes":
        return node.status.state == "Stopped"
    if action == "StartNodes":
        return node.status.state == "Running" and bool(node.status.ready)
    last = node.status.last_reboot_time
    return (
        node.status.state == "Running" and last is not None and (started is None or last >= started)
    )


def _healthy(node: ClusterNode) -> bool:
    wanted = node.spec.power_state
    return (node.status.state == "Running" and bool(node.status.ready)) or (
        wanted == "Stopped" and node.status.state == "Stopped"
    )


async def _check(world: World, node: ClusterNode) -> NodeResult:
    """Ask the provider itself (not the cache) how the machine is."""
    name = node.metadata.name
    try:
        driver = await world.driver(node.spec.provider_ref.name)
        machine = await driver.get(name)
    except NotFound:
        return NodeResult(
            name=name, result="Error", message="machine does not exist at the provider"
        )
    except (ProviderUnavailable, ProviderError) as err:
        return NodeResult(name=name, result="Error", message=str(err))
    ok = machine.state == node.spec.power_state
    return NodeResult(
        name=name, result="OK" if ok else "Error", message=f"machine is {machine.state}"
    )


async def _patch_node(world: World, node: ClusterNode, patch: dict[str, Any]) -> None:
    with contextlib.suppress(KubeNotFound):
        await world.client.patch(CLUSTERNODES, node.metadata.namespace, node.metadata.name, patch)


async def _delete_node(world: World, key: NsName, node: ClusterNode) -> None:
    """Delete a node the cluster's cache must already count as going (call under its lock)."""
    world.expectations.expect_delete(key, node.metadata.name)
    await world.client.delete(CLUSTERNODES, key[0], node.metadata.name)


def _wake(world: World, key: NsName) -> None:
    if world.cluster_queue is not None:
        world.cluster_queue.add(key)


async def _scale(
    world: World,
    op: NodeClusterOperation,
    nc: NodeCluster,
    status: NodeClusterOperationStatus,
    now: datetime,
) -> float | None:
    ns = op.metadata.namespace or "default"
    key = (ns, nc.metadata.name)
    if status.phase != "Running":
        left = cooldown_left(nc.spec, nc.status.last_scale_time, now)
        if left > 0:
            status.phase = "Pending"
            status.message = f"waiting {left:.0f}s for the scaling cooldown"
            return left
        direction = 1 if op.spec.action == "ScaleOut" else -1
        target = new_target(nc.spec, direction, op.spec.count)
        async with world.lock(key):
            patched = await world.client.patch(
                NODECLUSTERS, ns, nc.metadata.name, {"spec": {"targetNodes": target}}
            )
        status.phase = "Running"
        status.previous_target = nc.spec.target_nodes
        status.new_target = target
        status.cluster_generation = int(patched["metadata"]["generation"])
        status.message = f"target {nc.spec.target_nodes} -> {target}"
        _wake(world, key)
        return WAIT_POLL_SECONDS
    observed = nc.status.observed_generation or 0
    if observed < (status.cluster_generation or 0):
        return WAIT_POLL_SECONDS
    stalled = next(
        (c for c in nc.status.conditions if c.type == "Stalled" and c.status == "True"), None
    )
    if stalled is not None:
        raise _Finished("Failed", f"the cluster is stalled: {stalled.reason}: {stalled.message}")
    ready = next((c for c in nc.status.conditions if c.type == "Ready"), None)
    if ready is not None and ready.status == "True":
        raise _Finished(
            "Succeeded",
            f"target {status.previous_target} -> {status.new_target}; "
            f"{nc.status.ready_nodes} nodes ready",
        )
    return WAIT_POLL_SECONDS
