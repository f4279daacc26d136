"""The ClusterNode controller's part of lifecycle hooks (api/hooks.py, planning/hooks.py).

- `launch_hooks`, inside the status report: a node whose machine runs for the first time
  (its status never said Running), in a cluster with Launch hooks, starts waiting on the
  first one instead of turning Ready; while it waits, each look moves the wait on
  (planning.hooks.advance) and the node is looked at again at the deadline. Launch
  `Abandon` deletes the machine there and then, marks the node Failed (`LaunchAbandoned`),
  counts a failed launch, and the cluster replaces the node whatever its recovery policy,
  as for a machine that vanished.
- `terminate_hooks`, a phase between the drain and the machine's deletion: a deleting node
  whose machine exists waits on the Terminate hooks before its machine goes. A node that
  never finished launching (deleted during its Launch wait, or abandoned) has no Terminate
  hooks run: it never served.
- `hold_abandoned`, a phase before the machine is converged: a node abandoned at launch
  creates nothing again; it waits for its cluster to delete it.

Only what a wait needs is done: a node that is not first running, not waiting and not
being deleted reads nothing and writes nothing more than before, and the cluster is read
(from the body cache) only when one is. The deadline is a requeue of the node, never a
timer: an idle fleet costs nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from nodecluster.api.clusternode import ClusterNodeStatus
from nodecluster.api.common import Condition
from nodecluster.api.hooks import HookTransition, LifecycleHook
from nodecluster.api.nodecluster import NodeCluster
from nodecluster.api.reasons import Reason
from nodecluster.controllers.announcements import event_name, post_once
from nodecluster.controllers.kubeapi import NODECLUSTERS, KubeError, KubeNotFound
from nodecluster.controllers.nodescope import (
    NodeScope,
    machine_missing,
    owned_elsewhere,
    write_status,
)
from nodecluster.controllers.phases import Stop
from nodecluster.controllers.world import World
from nodecluster.planning.conditions import condition, replace_condition
from nodecluster.planning.hooks import (
    HEARTBEAT_KEPT_CHARS,
    HookProgress,
    advance,
    describe,
    heartbeat_annotation,
    hook_annotation,
    hooks_on,
    waiting_message,
)
from nodecluster.providers.base import NotFound

log = logging.getLogger(__name__)

LIFECYCLE_HOOK = "LifecycleHook"
"""The node condition of its hooks: True while it waits on one (the reason says which
transition, the message which hook), False once they ended (the reason says how)."""

NOT_STARTED = (None, "Pending", "Provisioning")
"""What a node's status says until its machine first ran (as clusternode.NOT_STARTED)."""


def hook_news(body: Mapping[str, Any]) -> bool:
    """Whether a ClusterNode event brings news for the hook its status says it waits on:
    the hook's annotation is set, or its heartbeat differs from the one last seen. Only
    these wake a waiting node (its own status writes come back as events too); its
    deadline is a requeue of its own."""
    wait = (body.get("status") or {}).get("lifecycleHook")
    if not isinstance(wait, Mapping):
        return False
    name = str(wait.get("name", ""))
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    if hook_annotation(name) in annotations:
        return True
    beat = annotations.get(heartbeat_annotation(name))
    return beat is not None and beat[:HEARTBEAT_KEPT_CHARS] != wait.get("heartbeat")


def hook_condition(status: ClusterNodeStatus) -> Condition | None:
    """The node's LifecycleHook condition, if it has one."""
    return next((c for c in status.conditions if c.type == LIFECYCLE_HOOK), None)


async def cluster_hooks(
    world: World, scope: NodeScope
) -> tuple[list[LifecycleHook] | None, datetime | None]:
    """The node's cluster's hooks, and since when that cluster is being deleted (None if
    it is not). A cluster that is gone has no hooks: nothing can be waited on for it."""
    node = scope.node
    key = ("NodeCluster", node.metadata.namespace or "", node.spec.cluster_name)
    try:
        cluster = NodeCluster.model_validate(await world.body(NODECLUSTERS, key))
    except KubeNotFound:
        return None, None
    return cluster.spec.policies.lifecycle_hooks, cluster.metadata.deletion_timestamp


def waiting_on(status: ClusterNodeStatus, on: HookTransition) -> bool:
    """Whether the node's status records a wait on a hook of transition `on`."""
    return status.lifecycle_hook is not None and status.lifecycle_hook.transition == on


async def launch_hooks(
    world: World, scope: NodeScope, status: ClusterNodeStatus
) -> ClusterNodeStatus:
    """The status about to be reported (`status`, from the machine), with the node's
    Launch hooks applied: see the module. Carries the wait and the LifecycleHook
    condition over, which the status built from the machine does not know of."""
    old = scope.node.status
    kept = hook_condition(old)
    status = status.model_copy(update={"lifecycle_hook": old.lifecycle_hook})
    if kept is not None:
        status = status.model_copy(
            update={"conditions": replace_condition(status.conditions, kept)}
        )
    waiting = waiting_on(old, "Launch")
    first_run = old.state in NOT_STARTED and kept is None
    if status.state != "Running" or not (waiting or first_run):
        if waiting:  # not running now: the wait stays as it is, and so not Ready
            status = status.model_copy(update={"ready": False})
        return status
    hooks, _ = await cluster_hooks(world, scope)
    if not waiting and not hooks_on(hooks, "Launch"):
        return status
    progress = advance(
        hooks, "Launch", old.lifecycle_hook, scope.node.metadata.annotations, scope.now
    )
    await warn_invalid(world, scope, progress)
    if progress.wait is not None:
        scope.hook_deadline = progress.wait.deadline
        return waiting_status(scope, status, progress)
    if progress.abandoned:
        return await abandon_launch(world, scope, status, progress)
    return ended_status(scope, status, Reason.LAUNCH_HOOKS_COMPLETED, describe(progress.outcomes))


def waiting_status(
    scope: NodeScope, status: ClusterNodeStatus, progress: HookProgress
) -> ClusterNodeStatus:
    """The status of a node waiting on `progress.wait`: not Ready, the hook named."""
    wait = progress.wait
    assert wait is not None
    gen = scope.node.metadata.generation
    message = waiting_message(wait)
    reason = Reason.LAUNCH_HOOK_WAIT if wait.transition == "Launch" else Reason.TERMINATE_HOOK_WAIT
    conditions = status.conditions
    if wait.transition == "Launch":
        ready = condition(conditions, "Ready", False, reason, message, gen, scope.now)
        conditions = replace_condition(conditions, ready)
    hook = condition(
        conditions,
        LIFECYCLE_HOOK,
        True,
        Reason.INVALID_HOOK_RESULT if progress.invalid else reason,
        f"{progress.invalid}; {message}" if progress.invalid else message,
        gen,
        scope.now,
    )
    return status.model_copy(
        update={
            "ready": False,
            "lifecycle_hook": wait,
            "message": progress.invalid or message,
            "conditions": replace_condition(conditions, hook),
        }
    )


def ended_status(
    scope: NodeScope, status: ClusterNodeStatus, reason: Reason, message: str
) -> ClusterNodeStatus:
    """The status of a node whose hooks of one transition ended (`message`: how)."""
    hook = condition(
        status.conditions,
        LIFECYCLE_HOOK,
        False,
        reason,
        message,
        scope.node.metadata.generation,
        scope.now,
    )
    return status.model_copy(
        update={
            "lifecycle_hook": None,
            "conditions": replace_condition(status.conditions, hook),
        }
    )


async def abandon_launch(
    world: World, scope: NodeScope, status: ClusterNodeStatus, progress: HookProgress
) -> ClusterNodeStatus:
    """A Launch hook said Abandon: delete the machine (a provider error is reported and
    retried by the caller's backoff: the wait and its Abandon stay recorded until then),
    say so once in a Warning Event, count a failed launch, mark the node Failed."""
    node = scope.node
    name = status.machine_name or node.metadata.name
    with contextlib.suppress(NotFound):  # gone already: as good as deleted
        await scope.connected().delete(name)
    how = describe(progress.outcomes)
    message = f"launch abandoned ({how}): machine {name} deleted; the cluster replaces the node"
    try:
        await post_once(
            world.api,
            event_name(node.metadata.name, node.metadata.uid, Reason.LAUNCH_ABANDONED),
            scope.body,
            "Warning",
            Reason.LAUNCH_ABANDONED,
            message,
        )
    except KubeError as err:
        log.warning("ClusterNode %s/%s: Event not posted: %s", *scope.key[1:], err)
    cluster = (node.metadata.namespace or "", node.spec.cluster_name)
    if world.metrics.knows(cluster):
        world.metrics.machine_event(cluster, "failed", str(Reason.LAUNCH_ABANDONED))
    gen = node.metadata.generation
    failed = status.model_copy(
        update={
            "state": "Failed",
            "ready": False,
            "unhealthy_since": status.unhealthy_since or scope.now,
            "message": message,
            "conditions": replace_condition(
                status.conditions,
                condition(
                    status.conditions,
                    "Ready",
                    False,
                    Reason.LAUNCH_ABANDONED,
                    message,
                    gen,
                    scope.now,
                ),
            ),
        }
    )
    return ended_status(scope, failed, Reason.LAUNCH_ABANDONED, how)


async def warn_invalid(world: World, scope: NodeScope, progress: HookProgress) -> None:
    """A hook annotation of a value other than Continue or Abandon: a Warning Event, once
    per value (the condition says it too, for as long as it stays)."""
    if progress.invalid is None or progress.wait is None:
        return
    node = scope.node
    value = node.metadata.annotations.get(hook_annotation(progress.wait.name))
    try:
        await post_once(
            world.api,
            event_name(
                node.metadata.name,
                node.metadata.uid,
                Reason.INVALID_HOOK_RESULT,
                progress.wait.name,
                value,
            ),
            scope.body,
            "Warning",
            Reason.INVALID_HOOK_RESULT,
            progress.invalid,
        )
    except KubeError as err:
        log.warning("ClusterNode %s/%s: Event not posted: %s", *scope.key[1:], err)


async def hold_abandoned(world: World, scope: NodeScope) -> Stop | None:
    """A node abandoned at launch creates nothing again (its machine is deleted): it waits
    for its cluster to delete it (the cluster's look follows this node's status)."""
    ready = next((c for c in scope.node.status.conditions if c.type == "Ready"), None)
    if scope.deleting or ready is None or ready.reason != Reason.LAUNCH_ABANDONED:
        return None
    return Stop(None)


async def terminate_hooks(world: World, scope: NodeScope) -> Stop | None:
    """A deleting node whose machine exists waits on its cluster's Terminate hooks before
    the machine is deleted; see the module and planning.hooks."""
    node = scope.node
    old = node.status
    if not scope.deleting or old.provider_id is None:
        return None
    if owned_elsewhere(node) or machine_missing(node):
        return None  # no machine of ours
    if waiting_on(old, "Launch"):
        # It never served: no Terminate hooks, and the Launch wait ends with it (or the
        # node would show, and its cluster count, a wait nobody needs to complete).
        assert old.lifecycle_hook is not None
        message = (
            f"deleted while waiting on Launch hook {old.lifecycle_hook.name!r}: it never "
            "served, so no Terminate hook runs"
        )
        deleting = old.model_copy(update={"state": "Deleting", "ready": False, "message": message})
        ended = ended_status(scope, deleting, Reason.TERMINATE_HOOKS_COMPLETED, message)
        await write_status(world, scope, ended)
        return None
    kept = hook_condition(old)
    waiting = waiting_on(old, "Terminate")
    if not waiting and kept is not None and kept.reason == Reason.TERMINATE_HOOKS_COMPLETED:
        return None
    hooks, deleting_since = await cluster_hooks(world, scope)
    if not waiting and not hooks_on(hooks, "Terminate"):
        return None
    progress = advance(
        hooks,
        "Terminate",
        old.lifecycle_hook,
        node.metadata.annotations,
        world.now(),
        deleting_since,
    )
    await warn_invalid(world, scope, progress)
    deleting = old.model_copy(update={"state": "Deleting", "ready": False})
    if progress.wait is not None:
        await write_status(world, scope, waiting_status(scope, deleting, progress))
        return Stop(max(0.0, (progress.wait.deadline - world.now()).total_seconds()))
    how = describe(progress.outcomes)
    timed_out = [o.hook for o in progress.outcomes if o.how == "TimedOut"]
    if timed_out:
        await world.api.event(
            scope.body,
            "Normal",
            "LifecycleHookTimedOut",
            f"Terminate hooks {', '.join(timed_out)} timed out ({how}); the machine is deleted",
        )
    ended = ended_status(scope, deleting, Reason.TERMINATE_HOOKS_COMPLETED, how)
    await write_status(
        world, scope, ended.model_copy(update={"message": f"terminate hooks: {how}"})
    )
    return None
