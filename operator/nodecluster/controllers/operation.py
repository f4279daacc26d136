"""NodeClusterOperation controller: one-off actions, one at a time per cluster.

Operations of a cluster run strictly in creation order: the key of the work queue is
the cluster, and each run advances only the oldest unfinished operation. An operation
is refused (Failed, nothing changed) when its cluster or the nodes it names do not exist;
otherwise it records a result per node and its start and completion times, so the
object is the audit trail.

Each action is one function in `ACTIONS` (a dispatch table), given an `OperationScope`
(the operation, its cluster, its nodes, the status being built) and returning an outcome:
`Finished` (Succeeded or Failed, with a message and per-node results) or `Waiting` (look
again later). A refusal is the one exception (`OperationRefused`, from the pure rules in
`planning/operations.py`).

Changes to nodes are made under the cluster's lock, so the cluster's own reconcile sees
an operation's deletes and its target change together and never "repairs" half of it.

Every operation ends, because one that never did would block every later operation of its
cluster. An action that cannot succeed is refused before it changes anything: StartNodes
and RebootNodes on a cluster whose desiredState is Stopped (the cluster powers its nodes
off again; a reboot needs a running machine), RebootNodes of nodes held stopped, power
actions on a driver without power control, and any change of a paused cluster (it acts on
nothing, so a scale would wait for it forever). Whatever else keeps an operation waiting
ends at `spec.timeoutSeconds` after its start: at that deadline it fails, saying what it
was still waiting for, without taking another step; a wait is never set to end after the
deadline. A scaling cooldown counts as part of the operation, and one that outlasts the
deadline is refused at once rather than waited out only to time out.

A step that fails (an API call refused or failing, a bug) changes no phase: it is written on
the operation (Stalled or Degraded, and its message: `failures.report_operation_failure`)
and retried until the timeout. How an operation ended is announced exactly once, by Events
posted before its end is recorded, under names of its own (`announce`); once announced, that
end is the one recorded, whatever a retry would find (`Ending`, `announced_before`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from nodecluster.api.clusternode import ClusterNode
from nodecluster.api.nodecluster import NodeCluster
from nodecluster.api.operation import (
    DEFAULT_TIMEOUT_SECONDS,
    NodeClusterOperation,
    NodeClusterOperationStatus,
    NodeResult,
    OperationAction,
)
from nodecluster.api.reasons import reason_of
from nodecluster.api.warmpool import POOL_LABEL, WARM
from nodecluster.clock import rfc3339
from nodecluster.controllers.announcements import event_name, post_once
from nodecluster.controllers.clusternode import identity_of, machine_name_of
from nodecluster.controllers.expectations import NsName
from nodecluster.controllers.failures import (
    cleared,
    forget_operation_failure,
    report_operation_failure,
)
from nodecluster.controllers.kubeapi import (
    CLUSTERNODES,
    EVENT_MESSAGE_LIMIT,
    NODECLUSTERS,
    OPERATIONS,
    REFUSED,
    KubeConflict,
    KubeError,
    KubeNotFound,
    status_patch,
)
from nodecluster.controllers.metrics import unhealthy_reason
from nodecluster.controllers.workqueue import Backoff
from nodecluster.controllers.world import ProviderUnavailable, World, node_view
from nodecluster.planning.model import CLUSTER_LABEL, POWER_HOLD_ANNOTATION
from nodecluster.planning.nodestatus import SETTLING_STATES
from nodecluster.planning.operations import (
    NodeFacts,
    OperationRefused,
    chooses_nodes,
    cooldown_left,
    new_target,
    select_nodes,
)
from nodecluster.providers.base import (
    CapacityExceeded,
    CostLimitExceeded,
    NotFound,
    PowerControl,
    ProviderDriver,
    ProviderError,
    QuotaExceeded,
    Retryable,
    Unauthorized,
)
from nodecluster.providers.identity import ownership_problem

log = logging.getLogger(__name__)

WAIT_POLL_SECONDS = 5.0
"""Safety-net requeue while an operation waits for nodes; events usually come first."""
CONFLICT_ATTEMPTS = 5
"""Writes of a target met by 409 (someone else wrote the cluster) before backing off."""


@dataclass(frozen=True)
class Finished:
    """The operation is over: Succeeded or Failed, with why and a result per node."""

    phase: Literal["Succeeded", "Failed"]
    message: str
    nodes: list[NodeResult] | None = None


@dataclass(frozen=True)
class Waiting:
    """The operation goes on (its status says at what): look again after `again` seconds
    (sooner if its deadline comes first)."""

    again: float


Outcome = Finished | Waiting


@dataclass
class OperationScope:
    """One step of one operation."""

    op: NodeClusterOperation
    cluster: NodeCluster
    status: NodeClusterOperationStatus
    """The status being built (a copy of the one read)."""
    now: datetime
    deadline: datetime
    """startTime + the timeout: the operation fails if it has not ended by then."""

    @property
    def key(self) -> NsName:
        """(namespace, cluster) of the operation."""
        return (self.op.metadata.namespace or "default", self.op.spec.cluster_name)

    @property
    def action(self) -> OperationAction:
        """What the operation asks for."""
        return self.op.spec.action

    @property
    def time_left(self) -> float:
        """Seconds until the deadline."""
        return (self.deadline - self.now).total_seconds()


Action = Callable[[World, OperationScope], Awaitable[Outcome]]


async def reconcile_operations(world: World, key: NsName) -> float | None:
    """Advance the oldest unfinished operation of one cluster."""
    namespace, cluster = key
    raw = await world.api.list(OPERATIONS, namespace)
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
        world.book.pending_operations.discard(key)
        world.book.endings.pop(key, None)  # its operation was deleted before it was recorded
        return None
    world.book.pending_operations.add(key)
    again = await advance(world, active[0])
    if again is None:
        return 0.0 if len(active) > 1 else None
    return again


async def advance(world: World, op: NodeClusterOperation) -> float | None:
    """Take one step of an operation and record it; None once it is over.

    Past its deadline an operation takes no step: it fails with what its last step was
    waiting for (that step looked at most a poll interval ago, as a wait never ends after
    the deadline). A step that fails (an API call refused or failing, a bug) is reported
    on the operation and retried with backoff (failures.py); its phase stays as it was.

    An end once decided is the end: it is announced (`announce`) before it is recorded, and
    until it is recorded every retry records that end, taking no step and minding no
    deadline (`Ending`), so the operation never says two different things of how it
    ended, and its final phase is the one it announced."""
    now = world.now()
    status = op.status.model_copy(deep=True)
    if status.phase in (None, "Pending"):
        status.start_time = status.start_time or now
    timeout = timeout_seconds(op)
    deadline = (status.start_time or now) + timedelta(seconds=timeout)
    key: NsName = (op.metadata.namespace or "default", op.spec.cluster_name)
    ending = remembered_ending(world, key, op)
    scope: OperationScope | None = None
    try:
        try:
            if ending is not None:
                outcome: Outcome = ending.outcome
            elif now >= deadline:
                outcome = timed_out(op.spec.action, status, timeout)
            else:
                cluster = await read_cluster(world, op)
                scope = OperationScope(
                    op=op, cluster=cluster, status=status, now=now, deadline=deadline
                )
                outcome = await ACTIONS[op.spec.action](world, scope)
        except OperationRefused as refused:
            outcome = Finished("Failed", str(refused))
        recorded = scope.op if scope is not None else op
        again: float | None = None
        status.conditions = cleared(status.conditions, op.metadata.generation, now)
        if isinstance(outcome, Finished):
            if ending is None or not ending.announced:
                # Remembered before it is announced: a retry after a failed post posts the
                # same end again, whatever the deadline or the nodes say by then.
                at = ending.at if ending is not None else now
                world.book.endings[key] = Ending(recorded.metadata.uid, outcome, at)
                cluster_read = scope.cluster if scope is not None else None
                outcome = await announce(world, recorded, outcome, cluster_read)
                ending = Ending(recorded.metadata.uid, outcome, at, announced=True)
                world.book.endings[key] = ending
            status.phase, status.message = outcome.phase, outcome.message
            if outcome.nodes is not None:
                status.nodes = outcome.nodes
            status.completion_time = ending.at
        else:
            again = max(0.0, min(outcome.again, (deadline - now).total_seconds()))
        await write_status(world, recorded, status)
    except Exception as err:
        recorded = scope.op if scope is not None else op
        raise Backoff(
            await report_operation_failure(world, recorded, status.start_time, err)
        ) from err
    if isinstance(outcome, Finished):
        world.book.endings.pop(key, None)
    forget_operation_failure(world, op)
    return again


@dataclass(frozen=True)
class Ending:
    """How the active operation of a cluster ends, decided but not yet recorded (the write
    failed, or has not been made yet): kept by this process until it is recorded.

    Without it a retry would take the step again and could end differently: past the
    deadline it times out, nodes may have moved meanwhile (a stopped node started again),
    and an operation that announced Succeeded would record Failed. A restarted process has
    no memory of it; the Event it announced is the record then (`announced_before`)."""

    uid: str | None
    """The operation's (a cluster runs one at a time: any other's ending is stale)."""
    outcome: Finished
    at: datetime
    """When it was decided: the operation's completionTime."""
    announced: bool = False
    """Whether both Events say it (a retry then only records it)."""


def remembered_ending(world: World, key: NsName, op: NodeClusterOperation) -> Ending | None:
    """The end decided for `op` and not yet recorded, if this process decided one."""
    ending = world.book.endings.get(key)
    if not isinstance(ending, Ending):
        return None
    if ending.uid != op.metadata.uid:
        del world.book.endings[key]  # another operation's, deleted before it was recorded
        return None
    return ending


def timeout_seconds(op: NodeClusterOperation) -> int:
    """How long the operation may take from its start."""
    return op.spec.timeout_seconds or DEFAULT_TIMEOUT_SECONDS


POWER_VERBS: dict[OperationAction, str] = {
    "StopNodes": "stop",
    "StartNodes": "start",
    "RebootNodes": "reboot",
}


def timed_out(
    action: OperationAction, status: NodeClusterOperationStatus, timeout: int
) -> Finished:
    """The end of an operation past its deadline: what it was waiting for, from its last
    recorded status; nodes still pending are failed."""
    pending = [r for r in status.nodes if r.result == "Pending"]
    if status.phase == "Running" and action in POWER_VERBS:
        what = f" waiting for {len(pending)} of {len(status.nodes)} nodes to {POWER_VERBS[action]}"
    elif status.phase == "Running" and action in ("ScaleOut", "ScaleIn"):
        what = (
            f" waiting for the cluster to be Ready with {status.new_target} nodes "
            f"(target {status.previous_target} -> {status.new_target})"
        )
    elif status.message:
        what = f"; {status.message}"
    else:
        what = " before its first step was done"
    nodes = [
        NodeResult(name=r.name, result="Error", message=f"timed out; {r.message}")
        if r.result == "Pending"
        else r
        for r in status.nodes
    ]
    return Finished("Failed", f"timed out after {timeout}s{what}", nodes)


async def cluster_driver(world: World, scope: OperationScope) -> ProviderDriver | Waiting:
    """The driver of the cluster's NodeProvider, or Waiting (the operation Pending, saying
    why) while the provider is unavailable: perhaps for a moment (a Secret being rotated, a
    NodeProvider being fixed); the operation's timeout bounds the wait."""
    try:
        return await world.providers.driver(scope.cluster.spec.provider_ref.name)
    except ProviderUnavailable as err:
        scope.status.phase = "Pending"
        scope.status.message = f"waiting for the NodeProvider: {err}"
        return Waiting(WAIT_POLL_SECONDS)


def refuse_if_paused(scope: OperationScope) -> None:
    """A paused cluster acts on nothing: refuse a change that would wait for it."""
    if scope.cluster.spec.paused:
        raise OperationRefused(
            f"NodeCluster {scope.key[1]!r} is paused (spec.paused): it acts on nothing "
            "until it is unpaused"
        )


async def record_intent(world: World, scope: OperationScope) -> None:
    """Write the step about to be taken before taking it (the target it sets, the nodes
    it removes): a retry after any failure, a lost answer or a restart finds the step
    and recognises what of it already happened, instead of doing it again."""
    version = await write_status(world, scope.op, scope.status)
    # The operation as recorded now: a failure later in this step is written on this
    # version of it (failures.report_operation_failure).
    meta = scope.op.metadata.model_copy(update={"resource_version": version})
    scope.op = scope.op.model_copy(
        update={"status": scope.status.model_copy(deep=True), "metadata": meta}
    )


async def apply_target(world: World, scope: OperationScope, previous: int, new: int) -> int:
    """Move spec.targetNodes from `previous` to `new` exactly once; the generation of the
    cluster with it applied.

    The write carries the resourceVersion read (a concurrent `kubectl scale` or HPA write
    is never lost: a 409 reads the cluster again). A target that already says `new` was
    set by this operation's earlier attempt; one that says neither was changed by someone
    else meanwhile, and the operation refuses to add its change on top of that.
    """
    for _ in range(CONFLICT_ATTEMPTS):
        nc = scope.cluster
        current = nc.spec.target_nodes
        if current == new:
            return nc.metadata.generation
        if current != previous:
            raise OperationRefused(
                f"spec.targetNodes is {current}, neither {previous} (before this operation) "
                f"nor {new} (what it sets): it was changed meanwhile, and this operation "
                "does not apply its change on top of another"
            )
        try:
            patched = await world.api.patch(
                NODECLUSTERS,
                scope.key[0],
                nc.metadata.name,
                {
                    "metadata": {"resourceVersion": nc.metadata.resource_version},
                    "spec": {"targetNodes": new},
                },
            )
        except KubeConflict:
            scope.cluster = await read_cluster(world, scope.op)
            continue
        return int(patched["metadata"]["generation"])
    raise KubeConflict(409, f"spec.targetNodes of {scope.key[1]!r} kept changing; trying again")


async def read_cluster(world: World, op: NodeClusterOperation) -> NodeCluster:
    """The operation's cluster, read afresh; refused if it is gone or going."""
    try:
        body = await world.api.get(NODECLUSTERS, op.metadata.namespace, op.spec.cluster_name)
    except KubeNotFound as err:
        raise OperationRefused(f"NodeCluster {op.spec.cluster_name!r} does not exist") from err
    nc = NodeCluster.model_validate(body)
    if nc.spec.desired_state == "Terminated" or nc.metadata.deletion_timestamp is not None:
        raise OperationRefused(f"NodeCluster {op.spec.cluster_name!r} is terminating")
    return nc


async def check_nodes(world: World, scope: OperationScope) -> Outcome:
    """Check: ask the provider about every chosen node; wake the broken ones' controllers."""
    chosen = choose(scope.op, await list_nodes(world, scope.op), require=False)
    looks = await asyncio.gather(*(ask_provider(world, n) for n in chosen))
    results = [look.result for look in looks]
    bad = sum(1 for r in results if r.result == "Error")
    for n in chosen:
        world.queues.node.add((scope.key[0], n.metadata.name))
    return Finished("Succeeded", f"checked {len(results)} nodes, {bad} unhealthy", list(results))


async def recover_nodes(world: World, scope: OperationScope) -> Outcome:
    """Recover: apply the health policy's recovery to the chosen nodes that are broken.

    Only to nodes the provider was asked about and answered for: a node whose machine
    could not be looked at is not known to be broken. When the provider fails to answer
    for a passing reason, every node is asked again (the operation waits, within its
    timeout); when it cannot answer at all (the NodeProvider is gone or misconfigured),
    the operation fails having recovered none. A node still being created, or whose
    machine is settling (provisioning, starting, rebooting), is not broken either: it is
    left to finish (the health policy's startup timeout watches it)."""
    refuse_if_paused(scope)
    chosen = choose(scope.op, await list_nodes(world, scope.op), require=False)
    # Ask the provider, not the cache: a Recover right after a failure must not wait for
    # the next health poll to notice it.
    looks = await asyncio.gather(*(ask_provider(world, n) for n in chosen))
    unknowable = [(n, look) for n, look in zip(chosen, looks, strict=True) if look.unknowable]
    if unknowable:
        raise OperationRefused(
            f"could not check the nodes, so none was recovered: {unknowable[0][1].result.message}"
        )
    unknown = [(n, look) for n, look in zip(chosen, looks, strict=True) if look.unknown]
    if unknown:
        first, look = unknown[0]
        scope.status.phase = "Pending"
        scope.status.message = (
            f"could not check {len(unknown)} of {len(chosen)} nodes "
            f"({first.metadata.name}: {look.result.message}); asking again"
        )
        return Waiting(WAIT_POLL_SECONDS)
    settling = {
        n.metadata.name: why
        for n, look in zip(chosen, looks, strict=True)
        if (why := settling_because(n, look)) is not None
    }
    broken = [
        n
        for n, look in zip(chosen, looks, strict=True)
        if n.metadata.name not in settling and (look.result.result == "Error" or not healthy(n))
    ]
    recovery = scope.cluster.spec.policies.health.recovery
    if broken and recovery == "None":
        raise OperationRefused("the health policy's recovery is None: nothing may be done")
    if recovery == "Reboot" and rebooted_this_second(broken, scope.now):
        # A request of this second would be no newer than that reboot (request_reboots).
        scope.status.phase = "Pending"
        scope.status.message = "waiting for the second of the nodes' last reboot to pass"
        return Waiting(1.0)
    async with world.book.lock(scope.key):
        for n in broken:
            if recovery == "Recreate":
                await delete_node(world, scope.key, n)
                world.metrics.machine_event(scope.key, "deleted", scope.op.spec.action)
            else:
                await patch_node(world, n, {"spec": {"rebootRequestedAt": rfc3339(scope.now)}})
            world.metrics.machine_event(scope.key, "remediated", unhealthy_reason(node_view(n)))
    verb = "recreated" if recovery == "Recreate" else "rebooted"
    results = [
        NodeResult(name=n.metadata.name, result="OK", message=f"{verb}: was {n.status.state}")
        for n in broken
    ]
    results += [
        NodeResult(
            name=n.metadata.name,
            result="OK",
            message=settling.get(n.metadata.name, "healthy"),
        )
        for n in chosen
        if n not in broken
    ]
    world.queues.cluster.add(scope.key)
    return Finished("Succeeded", f"recovered {len(broken)} of {len(chosen)} nodes", results)


async def remove_nodes(world: World, scope: OperationScope) -> Outcome:
    """RemoveNodes: delete the chosen nodes and lower the target by as many, once.

    The chosen nodes and both targets are recorded first; a retry removes exactly those
    (deleting a node already gone is fine) and sets the target only if not set yet.
    """
    nc, status = scope.cluster, scope.status
    if status.new_target is None or status.previous_target is None:
        refuse_if_paused(scope)
        chosen = choose(scope.op, await list_nodes(world, scope.op), require=True)
        target = nc.spec.target_nodes - len(chosen)
        low = nc.spec.min_nodes or 0
        if target < low:
            raise OperationRefused(
                f"removing {len(chosen)} nodes would leave {target}, below minNodes ({low})"
            )
        status.phase = "Running"
        status.previous_target, status.new_target = nc.spec.target_nodes, target
        status.nodes = [
            NodeResult(name=n.metadata.name, result="Pending", message="to be removed")
            for n in chosen
        ]
        status.message = f"removing {len(chosen)} nodes; target {nc.spec.target_nodes} -> {target}"
        await record_intent(world, scope)
    previous, target = status.previous_target, status.new_target
    names = [r.name for r in status.nodes]
    async with world.book.lock(scope.key):
        await apply_target(world, scope, previous, target)
        for name in names:
            world.expectations.expect_delete(scope.key, name)
            await world.api.delete(CLUSTERNODES, scope.key[0], name)
            world.metrics.machine_event(scope.key, "deleted", scope.op.spec.action)
    world.queues.cluster.add(scope.key)
    return Finished(
        "Succeeded",
        f"removed {len(names)} nodes; target {previous} -> {target}",
        [NodeResult(name=name, result="OK", message="removed") for name in names],
    )


async def replace_nodes(world: World, scope: OperationScope) -> Outcome:
    """ReplaceNodes: delete the chosen nodes; the cluster creates fresh ones."""
    refuse_if_paused(scope)
    chosen = choose(scope.op, await list_nodes(world, scope.op), require=True)
    async with world.book.lock(scope.key):
        for n in chosen:
            await delete_node(world, scope.key, n)
            world.metrics.machine_event(scope.key, "deleted", scope.op.spec.action)
    world.queues.cluster.add(scope.key)
    return Finished(
        "Succeeded",
        f"replacing {len(chosen)} nodes",
        [
            NodeResult(name=n.metadata.name, result="OK", message="deleted; a new node replaces it")
            for n in chosen
        ],
    )


def power_patch(action: OperationAction) -> dict[str, Any]:
    """What StopNodes or StartNodes writes on each chosen node (a new dict each time: the
    API client may keep or change what it is given). RebootNodes: `request_reboots`."""
    if action == "StopNodes":
        return {
            "metadata": {"annotations": {POWER_HOLD_ANNOTATION: "Stopped"}},
            "spec": {"powerState": "Stopped"},
        }
    if action == "StartNodes":
        return {
            "metadata": {"annotations": {POWER_HOLD_ANNOTATION: None}},
            "spec": {"powerState": "Running"},
        }
    raise ValueError(f"{action} is no power state")


async def power_nodes(world: World, scope: OperationScope) -> Outcome:
    """StopNodes / StartNodes / RebootNodes: ask each chosen node, then wait (phase
    Running) until every one reports it done.

    Refused first if it could never be done. StartNodes on a Stopped cluster is refused
    rather than made to stick (a hold of Running on the node would keep the planner off
    it, but the cluster would then stay Stopping, never Ready, for as long as the node
    runs): a Stopped cluster is one whose nodes are all off, and starting them is a
    change of desiredState, which the spec shows, not an exception an operation hides."""
    nodes = await list_nodes(world, scope.op)
    status = scope.status
    if status.phase == "Running":
        if scope.action == "RebootNodes":
            await ask_to_reboot(world, nodes, status)
        return await_power(scope.action, nodes, status)
    refuse_unpowerable(scope)
    chosen = choose(scope.op, nodes, require=True)
    if scope.action == "RebootNodes":
        held = [n.metadata.name for n in chosen if n.spec.power_state == "Stopped"]
        if held:
            raise OperationRefused(
                "only a running machine can be rebooted, and these nodes are held stopped: "
                f"{', '.join(held)} (StartNodes starts them)"
            )
    provider = scope.cluster.spec.provider_ref.name
    driver = await cluster_driver(world, scope)
    if isinstance(driver, Waiting):
        return driver
    if not isinstance(driver, PowerControl):
        raise OperationRefused(
            f"the driver of NodeProvider {provider!r} has no power control: it cannot stop, "
            "start or reboot machines"
        )
    if scope.action == "RebootNodes":
        return await request_reboots(world, scope, chosen)
    for n in chosen:
        await patch_node(world, n, power_patch(scope.action))
    status.phase = "Running"
    status.nodes = [
        NodeResult(name=n.metadata.name, result="Pending", message="requested") for n in chosen
    ]
    status.message = f"{scope.action}: waiting for {len(chosen)} nodes"
    return Waiting(WAIT_POLL_SECONDS)


async def request_reboots(
    world: World, scope: OperationScope, chosen: list[ClusterNode]
) -> Outcome:
    """RebootNodes: record the request, then write it on each chosen node.

    A node reboots when its `spec.rebootRequestedAt` is newer than its last reboot
    (`status.lastRebootTime`), and these have whole seconds: a request written in the
    second of the node's last reboot would be no newer, and neither carried out nor told
    apart from that reboot. So a request is made only in a second after every chosen
    node's last reboot (the operation waits for the clock to turn), and it is recorded
    (`status.rebootRequestedAt`) before it is written on the nodes: an attempt that fails
    after asking some nodes, or a restart, finds it and asks the rest with the same
    request, instead of a newer one that would reboot the nodes asked already once more.
    """
    status = scope.status
    if rebooted_this_second(chosen, scope.now):
        status.phase = "Pending"
        status.message = "waiting for the second of the nodes' last reboot to pass"
        return Waiting(1.0)
    status.phase = "Running"
    status.reboot_requested_at = scope.now
    status.nodes = [
        NodeResult(name=n.metadata.name, result="Pending", message="requested") for n in chosen
    ]
    status.message = f"{scope.action}: waiting for {len(chosen)} nodes"
    await record_intent(world, scope)
    await ask_to_reboot(world, chosen, status)
    return Waiting(WAIT_POLL_SECONDS)


def rebooted_this_second(nodes: list[ClusterNode], now: datetime) -> bool:
    """Whether any of the nodes was last rebooted in this second (or later)."""
    return any(n.status.last_reboot_time and n.status.last_reboot_time >= now for n in nodes)


async def ask_to_reboot(
    world: World, nodes: list[ClusterNode], status: NodeClusterOperationStatus
) -> None:
    """Write the recorded reboot request on each of the operation's nodes not asked yet
    (none, once they all were: no write)."""
    requested = status.reboot_requested_at
    if requested is None:
        return  # recorded by an earlier version, which asked the nodes before recording
    pending = {r.name for r in status.nodes if r.result == "Pending"}
    for n in nodes:
        asked = n.spec.reboot_requested_at
        if n.metadata.name in pending and (asked is None or asked < requested):
            await patch_node(world, n, {"spec": {"rebootRequestedAt": rfc3339(requested)}})


def refuse_unpowerable(scope: OperationScope) -> None:
    """Refuse to start or reboot the nodes of a cluster that keeps them off."""
    if scope.cluster.spec.desired_state != "Stopped":
        return
    name = scope.key[1]
    if scope.action == "StartNodes":
        raise OperationRefused(
            f"NodeCluster {name!r} has desiredState Stopped: it would power the nodes off "
            "again; set desiredState to Running to start them"
        )
    if scope.action == "RebootNodes":
        raise OperationRefused(
            f"NodeCluster {name!r} has desiredState Stopped: its nodes are off, and only a "
            "running machine can be rebooted"
        )


def await_power(
    action: OperationAction, nodes: list[ClusterNode], status: NodeClusterOperationStatus
) -> Outcome:
    """How far a power action has come, node by node."""
    by_name = {n.metadata.name: n for n in nodes}
    results: list[NodeResult] = []
    for r in status.nodes:
        node = by_name.get(r.name)
        if node is None:
            results.append(NodeResult(name=r.name, result="Error", message="node disappeared"))
        elif node.status.message and node.status.observed_generation == node.metadata.generation:
            if retried(node):
                message = f"retrying: {node.status.message}"
                results.append(NodeResult(name=r.name, result="Pending", message=message))
            else:
                message = node.status.message
                results.append(NodeResult(name=r.name, result="Error", message=message))
        elif power_done(action, node, status.reboot_requested_at or status.start_time):
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
        status.message = f"{action}: waiting for {pending} of {len(results)} nodes"
        return Waiting(WAIT_POLL_SECONDS)
    errors = sum(1 for r in results if r.result == "Error")
    return Finished(
        "Failed" if errors else "Succeeded",
        f"{action}: {len(results) - errors} OK, {errors} failed",
        results,
    )


RETRIED_REASONS = frozenset(
    error.reason
    for error in (Retryable, Unauthorized, CapacityExceeded, QuotaExceeded, CostLimitExceeded)
)
"""The reasons of the provider errors that are retryable (`providers/base.py`): a node
reporting one is retried by its controller with backoff, and gets there a moment later
(a throttled API, a rotated key, capacity back), so a power action waits for it (within
its timeout) instead of failing it."""


def retried(node: ClusterNode) -> bool:
    """Whether the error a node reports is one its controller retries (see above)."""
    ready = next((c for c in node.status.conditions if c.type == "Ready"), None)
    return ready is not None and reason_of(ready.reason) in RETRIED_REASONS


def power_done(action: OperationAction, node: ClusterNode, requested: datetime | None) -> bool:
    """Whether a node has done what a power action asked of it (a reboot: one carried out
    at or after the operation's request)."""
    if action == "StopNodes":
        return node.status.state == "Stopped"
    if action == "StartNodes":
        return node.status.state == "Running" and bool(node.status.ready)
    last = node.status.last_reboot_time
    return (
        node.status.state == "Running"
        and last is not None
        and (requested is None or last >= requested)
    )


async def scale(world: World, scope: OperationScope) -> Outcome:
    """ScaleOut / ScaleIn: change the target by the scaling policy (after its cooldown),
    then wait until the cluster is Ready for it, or fail if it stalls.

    The cooldown is waited out within the operation's time: one that ends at or after
    the deadline is refused at once (waiting it out could only end in a timeout)."""
    nc, status = scope.cluster, scope.status
    if status.phase != "Running":
        if status.new_target is None or status.previous_target is None:
            refuse_if_paused(scope)
            left = cooldown_left(nc.spec, nc.status.last_scale_time, scope.now)
            if left > 0 and left >= scope.time_left:
                raise OperationRefused(
                    f"the scaling cooldown ends in {left:.0f}s, after this operation's timeout "
                    f"({timeout_seconds(scope.op)}s): create it once the cooldown is over, "
                    "or with a longer spec.timeoutSeconds"
                )
            if left > 0:
                status.phase = "Pending"
                status.message = f"waiting {left:.0f}s for the scaling cooldown"
                return Waiting(left)
            direction = 1 if scope.action == "ScaleOut" else -1
            target = new_target(nc.spec, direction, scope.op.spec.count)
            status.phase = "Pending"
            status.previous_target, status.new_target = nc.spec.target_nodes, target
            status.message = f"setting the target {nc.spec.target_nodes} -> {target}"
            await record_intent(world, scope)
        previous, target = status.previous_target, status.new_target
        async with world.book.lock(scope.key):
            generation = await apply_target(world, scope, previous, target)
        status.phase = "Running"
        status.cluster_generation = generation
        status.message = f"target {previous} -> {target}"
        world.queues.cluster.add(scope.key)
        return Waiting(WAIT_POLL_SECONDS)
    # Said again on every look (a write only if it changed): after a failed step, whose
    # message said the failure, this says what the operation waits for once more.
    status.message = f"target {status.previous_target} -> {status.new_target}"
    if (nc.status.observed_generation or 0) < (status.cluster_generation or 0):
        return Waiting(WAIT_POLL_SECONDS)
    stalled = next(
        (c for c in nc.status.conditions if c.type == "Stalled" and c.status == "True"), None
    )
    if stalled is not None:
        return Finished("Failed", f"the cluster is stalled: {stalled.reason}: {stalled.message}")
    ready = next((c for c in nc.status.conditions if c.type == "Ready"), None)
    if ready is not None and ready.status == "True":
        return Finished(
            "Succeeded",
            f"target {status.previous_target} -> {status.new_target}; "
            f"{nc.status.ready_nodes} nodes ready",
        )
    return Waiting(WAIT_POLL_SECONDS)


async def adopt(world: World, scope: OperationScope) -> Outcome:
    """Adopt: controllers/adopt.py (imported here, as it builds on this module)."""
    from nodecluster.controllers.adopt import adopt_machines

    return await adopt_machines(world, scope)


ACTIONS: dict[OperationAction, Action] = {
    "Check": check_nodes,
    "Recover": recover_nodes,
    "ScaleOut": scale,
    "ScaleIn": scale,
    "RemoveNodes": remove_nodes,
    "ReplaceNodes": replace_nodes,
    "StopNodes": power_nodes,
    "StartNodes": power_nodes,
    "RebootNodes": power_nodes,
    "Adopt": adopt,
}
"""The handler of every action. mypy checks the keys against `OperationAction`; a unit
test checks that none is missing."""


async def write_status(
    world: World, op: NodeClusterOperation, status: NodeClusterOperationStatus
) -> str:
    """One status patch, only when something changed; the resourceVersion the operation
    has after it."""
    old, new = op.status.wire(), status.wire()
    if old == new:
        return op.metadata.resource_version
    try:
        patched = await world.api.patch(
            OPERATIONS,
            op.metadata.namespace,
            op.metadata.name,
            status_patch(old, new),
            status=True,
        )
    except KubeNotFound:
        return op.metadata.resource_version
    return str(patched.get("metadata", {}).get("resourceVersion", ""))


async def announce(
    world: World, op: NodeClusterOperation, outcome: Finished, cluster: NodeCluster | None
) -> Finished:
    """An Event on the operation and on its cluster: what was done, and how it ended; the
    end that stands (`outcome`, or the one an earlier attempt announced).

    Each Event is named after the operation's uid and its object's kind, not after how it
    ended, so there is one of each, exactly: posting it again (a retry after a lost answer,
    a restart between posting and recording) posts nothing. An attempt that finds the
    operation's Event posted already (409) reads it back, and the end it says stands (an
    earlier attempt, killed before it recorded it, may have ended otherwise: before the
    deadline, or before the nodes moved): the cluster's Event and the recorded status say
    that end too. A post that fails in passing fails the step, which is retried; one the
    API server refuses (no permission for Events) is logged and left: an Event is a
    courtesy to people and must not keep an operation from ending.

    Each names its object by uid (and resourceVersion), as `kubectl describe` selects
    Events by it: the cluster as this step read it, else (a step that did not read it: a
    timeout) as read now; one that does not exist gets an Event by name only."""
    name = announcement_name(op, op.metadata.name, op.kind)
    body = op.model_dump(by_alias=True, mode="json")
    for _ in range(2):  # a second time only if its Event was there, then expired
        posted = await post_once(
            world.api, name, body, *said_of(outcome), f"{op.spec.action}: {outcome.message}"
        )
        if posted is not False:
            break
        before = await announced_before(world, op, name, outcome)
        if before is not None:
            outcome = before
            break
    cluster_body: dict[str, Any] = {
        "apiVersion": op.api_version,
        "kind": "NodeCluster",
        "metadata": {"name": op.spec.cluster_name, "namespace": op.metadata.namespace},
    }
    if cluster is not None:
        cluster_body = cluster.model_dump(by_alias=True, mode="json")
    else:
        with contextlib.suppress(KubeError):
            cluster_body = await world.api.get(
                NODECLUSTERS, op.metadata.namespace, op.spec.cluster_name
            )
    await post_once(
        world.api,
        announcement_name(op, op.spec.cluster_name, "NodeCluster"),
        cluster_body,
        *said_of(outcome),
        f"{op.metadata.name} ({op.spec.action}): {outcome.message}",
    )
    return outcome


ENDED_REASONS: dict[str, Literal["Succeeded", "Failed"]] = {
    "OperationSucceeded": "Succeeded",
    "OperationFailed": "Failed",
}
"""The reason of the Event that says how an operation ended, and the phase it says."""


def said_of(outcome: Finished) -> tuple[str, str]:
    """The type and reason of the Event announcing `outcome`."""
    etype = "Normal" if outcome.phase == "Succeeded" else "Warning"
    return etype, f"Operation{outcome.phase}"


async def announced_before(
    world: World, op: NodeClusterOperation, name: str, ours: Finished
) -> Finished | None:
    """The end the operation's Event `name` (posted by an earlier attempt) says: `ours`
    when it says the same, or none can be known (it cannot be read: logged); None when it
    is gone (expired since the post that found it).

    The message said is the one recorded (as cut to an Event's length, if it was). Its
    results per node are this step's if it ended in the same phase; else, as they cannot
    be told from the Event, the ones recorded before it (this step's belong to another
    end)."""
    try:
        event = await world.api.read_event(op.metadata.namespace or "default", name)
    except KubeNotFound:
        return None
    except KubeError as err:
        if err.status not in REFUSED:
            raise
        log.warning(
            "could not read event %s (how operation %s ended, as announced before): %s",
            name,
            op.metadata.name,
            err,
        )
        return ours
    phase = ENDED_REASONS.get(str(event.get("reason")))
    said = str(event.get("message", ""))
    prefix = f"{op.spec.action}: "
    if phase is None or not said.startswith(prefix):
        return ours  # not an end this operator announced: nothing to follow
    if phase == ours.phase and said == f"{prefix}{ours.message}"[:EVENT_MESSAGE_LIMIT]:
        return ours
    nodes = ours.nodes if phase == ours.phase else list(op.status.nodes)
    return Finished(phase, said.removeprefix(prefix), nodes)


def announcement_name(op: NodeClusterOperation, about: str, kind: str) -> str:
    """The name of the Event that says how an operation ended, about one object: the
    object's name and a digest of the operation's identity and the object's kind; not of
    how it ended, so that it has one end only (`announce`)."""
    identity = op.metadata.uid or f"{op.metadata.namespace}/{op.metadata.name}"
    return event_name(about, identity, kind, "ended")


async def list_nodes(world: World, op: NodeClusterOperation) -> list[ClusterNode]:
    """The cluster's serving nodes not being deleted, read afresh. Warm nodes (its
    spec.warmPool) are outside the target an operation counts and moves: a RemoveNodes of
    one would lower the target for a node that never served (the pool keeps its own)."""
    raw = await world.api.list(
        CLUSTERNODES, op.metadata.namespace, f"{CLUSTER_LABEL}={op.spec.cluster_name}"
    )
    return [
        ClusterNode.model_validate(n)
        for n in raw
        if not n["metadata"].get("deletionTimestamp")
        and (n["metadata"].get("labels") or {}).get(POOL_LABEL) != WARM
    ]


def node_facts(node: ClusterNode) -> NodeFacts:
    """What a node filter can match on."""
    return NodeFacts(
        name=node.metadata.name,
        labels=dict(node.metadata.labels),
        provider_id=node.status.provider_id,
        addresses=tuple(a.address for a in node.status.addresses),
    )


def choose(op: NodeClusterOperation, nodes: list[ClusterNode], require: bool) -> list[ClusterNode]:
    """The nodes `spec.nodes` picks; refused if `require` and none matches, or if it gives
    no criterion (the API server refuses such an operation; one stored before that rule
    must not act on every node either)."""
    if require and not chooses_nodes(op.spec.nodes):
        raise OperationRefused(
            f"{op.spec.action} acts only on the nodes spec.nodes chooses, and it chooses none "
            "(give names, providerIds, addresses or selector.matchLabels): only Check and "
            "Recover act on every node"
        )
    names = {f.name for f in select_nodes([node_facts(n) for n in nodes], op.spec.nodes)}
    chosen = [n for n in nodes if n.metadata.name in names]
    if require and not chosen:
        raise OperationRefused("no node of the cluster matches spec.nodes")
    return chosen


def healthy(node: ClusterNode) -> bool:
    """Whether a node runs as asked, as its own status says."""
    wanted = node.spec.power_state
    return (node.status.state == "Running" and bool(node.status.ready)) or (
        wanted == "Stopped" and node.status.state == "Stopped"
    )


@dataclass(frozen=True)
class MachineLook:
    """What the provider said of a node's machine: the node's result, and for Recover
    whether the machine was looked at at all."""

    result: NodeResult
    state: str | None = None
    """The machine's state, when the provider answered with it."""
    unknown: bool = False
    """The provider failed to answer, for a reason that passes (asking again may work)."""
    unknowable: bool = False
    """The provider cannot be asked (gone, misconfigured) or refuses the question."""


NODE_SETTLING_STATES = frozenset({"Pending", "Provisioning", "Starting", "Stopping", "Rebooting"})
"""The node's own states on the way to where it was asked to be (status.state)."""


def settling_because(node: ClusterNode, look: MachineLook) -> str | None:
    """Why a node is not broken but on its way (None: it is not settling)."""
    if node.status.provider_id is None and node.status.machine_name is None:
        return "no machine yet: being created, left to settle"
    if look.state in SETTLING_STATES:
        return f"machine is {look.state}: not broken, left to settle"
    if node.status.state is None or node.status.state in NODE_SETTLING_STATES:
        return f"node is {node.status.state or 'Pending'}: not broken, left to settle"
    return None


async def ask_provider(world: World, node: ClusterNode) -> MachineLook:
    """Ask the provider itself (not the cache) how the machine is."""
    name = node.metadata.name
    try:
        driver = await world.providers.driver(node.spec.provider_ref.name)
        machine = await driver.get(machine_name_of(world, node))
    except NotFound:
        return MachineLook(
            NodeResult(name=name, result="Error", message="machine does not exist at the provider")
        )
    except ProviderUnavailable as err:
        result = NodeResult(name=name, result="Error", message=str(err))
        return MachineLook(result, unknown=not err.reason.stalls, unknowable=err.reason.stalls)
    except ProviderError as err:
        result = NodeResult(name=name, result="Error", message=str(err))
        return MachineLook(result, unknown=err.retryable, unknowable=not err.retryable)
    refused = ownership_problem(identity_of(world, node), machine)
    if refused is not None:
        return MachineLook(
            NodeResult(name=name, result="Error", message=f"machine is not this node's: {refused}")
        )
    ok = machine.state == node.spec.power_state
    return MachineLook(
        NodeResult(
            name=name, result="OK" if ok else "Error", message=f"machine is {machine.state}"
        ),
        state=machine.state,
    )


async def patch_node(world: World, node: ClusterNode, patch: dict[str, Any]) -> None:
    """Patch a node's spec or metadata; a node gone meanwhile is fine."""
    with contextlib.suppress(KubeNotFound):
        await world.api.patch(CLUSTERNODES, node.metadata.namespace, node.metadata.name, patch)


async def delete_node(world: World, key: NsName, node: ClusterNode) -> None:
    """Delete a node the cluster's cache must already count as going (call under its lock)."""
    world.expectations.expect_delete(key, node.metadata.name)
    await world.api.delete(CLUSTERNODES, key[0], node.metadata.name)
