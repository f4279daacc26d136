"""ClusterNode controller: drives exactly one machine at its provider.

The machine's name is a pure function of the node's identity (installation, namespace,
name, uid: `providers/identity.py`), so it is known before the provider is called, and
the provider's create is idempotent on it. So a crash anywhere (between create and status
write, mid-delete) can neither lose nor double a machine: the next reconcile computes the
same name and calls the same idempotent operation again. The name is recorded in
`status.machineName` with the provider id. A node attaches only to a machine whose tags
name it; any other answering to its name is refused (`MachineOwnedElsewhere`), and never
deleted: deleting such a node lets it go without touching the machine.

A reconcile is a short list of phases over one `NodeScope`:

    read -> abandon_machine (a deleting node told to) -> connect (the provider's driver)
         -> drain_node, terminate_hooks (a deleting node; lifecycle hooks: hooks.py)
         -> delete_machine (a deleting node) -> hold_abandoned (abandoned at launch)
         -> converge_machine (create, power, reboot; or report a vanished machine)
         -> report -> next_look

What the status says is decided by pure functions (`planning/nodestatus.py`). Provider
errors are reported by their type (`world.provider_reason`) in the node's Ready
condition, then retried with backoff.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import NoReturn

from nodecluster.api.clusternode import ClusterNode
from nodecluster.api.common import ABANDON_MACHINES_ANNOTATION, annotated_true
from nodecluster.api.nodecluster import NodeCluster
from nodecluster.api.reasons import Reason
from nodecluster.controllers.announcements import event_name, post_once
from nodecluster.controllers.bodies import ObjectKey
from nodecluster.controllers.expectations import NsName
from nodecluster.controllers.hooks import hold_abandoned, launch_hooks, terminate_hooks
from nodecluster.controllers.inuse import hold_for_create
from nodecluster.controllers.kubeapi import (
    CLUSTERNODES,
    NODECLUSTERS,
    KubeConflict,
    KubeError,
    KubeNotFound,
)
from nodecluster.controllers.kubenode import delete_kube_node, drain_node, sync_node
from nodecluster.controllers.nodescope import (
    NodeScope,
    machine_missing,
    owned_elsewhere,
    write_status,
)
from nodecluster.controllers.phases import CONFLICT_RETRY_SECONDS, Phase, Stop, run_phases
from nodecluster.controllers.quota import reserve_machine
from nodecluster.controllers.takeover import take_over_machine
from nodecluster.controllers.workqueue import Backoff
from nodecluster.controllers.world import (
    NODE_FINALIZER,
    PROVIDER_REFRESH_SECONDS,
    ProviderUnavailable,
    World,
    provider_reason,
)
from nodecluster.planning.adopt import ADOPT_MACHINE_ANNOTATION
from nodecluster.planning.kubenode import with_node
from nodecluster.planning.model import CLUSTER_LABEL
from nodecluster.planning.nodestatus import (
    SETTLING_STATES,
    status_deleting,
    status_from_error,
    status_from_machine,
    status_missing,
    status_owned_elsewhere,
)
from nodecluster.providers.base import (
    MachineSpec,
    NotFound,
    PowerControl,
    ProviderError,
)
from nodecluster.providers.identity import MachineIdentity, machine_name, ownership_problem

log = logging.getLogger(__name__)

POLL_SETTLING_SECONDS = 1.0
"""How soon a machine in a transitional state is looked at again."""
SETTLING_FALLBACK_SECONDS = 15.0
"""How soon a settling machine is looked at again by its own get, should its provider's
list calls fail (they normally wake it as soon as its state changes)."""
MACHINE_ABANDONED = "MachineAbandoned"
"""The reason of the Event naming a machine a node left at its provider (abandon_machine)."""
POLLED_STATES = SETTLING_STATES - {"Deleting"}
"""Transitional states that keep the provider's health poll going (see poll_provider):
a machine being deleted is polled by its node's own reconciles until NotFound."""


async def reconcile_node(world: World, key: NsName) -> float | None:
    """Drive one machine toward its ClusterNode; return when to look again."""
    cache_key = ("ClusterNode", *key)
    scope = await read(world, cache_key)
    again = None if scope is None else await run_phases(world, scope, PHASES)
    if again is None:
        world.bodies.drop(cache_key)  # settled: keep no body until the next event
    return again


async def read(world: World, cache_key: ObjectKey) -> NodeScope | None:
    """The ClusterNode as newest known; None if it is gone or no longer ours to act on."""
    try:
        body = await world.body(CLUSTERNODES, cache_key)
    except KubeNotFound:
        return None
    scope = NodeScope(
        key=cache_key, node=ClusterNode.model_validate(body), now=world.now(), body=body
    )
    if scope.deleting and NODE_FINALIZER not in scope.node.metadata.finalizers:
        return None
    return scope


async def abandon_machine(world: World, scope: NodeScope) -> Stop | None:
    """A deleting node told to abandon its machine lets go without calling the provider.

    The way out of a deletion that cannot finish: the machine cannot be deleted (its
    NodeProvider deleted anyway, credentials revoked for good), so the node would wait for
    ever. `nodecluster.io/abandon-machines: "true"` on the node, or on its NodeCluster
    once that is being deleted, says to stop waiting; the machine left is named in a
    Warning Event, for a person to delete by hand if it still exists. (If the provider
    does work and is not being deleted, this installation's orphan collection deletes it
    at a later health poll: abandoning is a way to stop waiting, not a way to keep a
    machine.)

    That Event is the only record of which machine was left, so it is posted before the
    node lets go, under a name of the node's uid (announcements.py): a post that fails
    keeps the node (retried with backoff), and one posted before a failed release, a lost
    answer or a restart is not posted twice.
    """
    if not scope.deleting:
        return None
    node = scope.node
    by = await abandoned_by(world, node)
    if by is None:
        return None
    if not owned_elsewhere(node):  # (one never ours is not left by us)
        name = machine_name_of(world, node)
        status = node.status
        known = f" ({status.provider_id})" if status.provider_id else " (if it was created)"
        await post_once(
            world.api,
            event_name(node.metadata.name, node.metadata.uid, MACHINE_ABANDONED),
            scope.body,
            "Warning",
            MACHINE_ABANDONED,
            f"machine {name}{known} of NodeProvider {node.spec.provider_ref.name!r} is left "
            f"as it is, not deleted: {by} is annotated {ABANDON_MACHINES_ANNOTATION}; delete "
            "it at the provider if it still exists",
        )
    return Stop(await release(world, scope))


async def abandoned_by(world: World, node: ClusterNode) -> str | None:
    """What tells a deleting node to abandon its machine ("the ClusterNode", "NodeCluster
    ns/name"), if anything does. Its NodeCluster's annotation counts only while that is
    being deleted, so that it cannot make a scale-in leave machines behind."""
    if annotated_true(node.metadata.annotations, ABANDON_MACHINES_ANNOTATION):
        return "the ClusterNode"
    namespace = node.metadata.namespace or ""
    key = ("NodeCluster", namespace, node.spec.cluster_name)
    try:
        cluster = NodeCluster.model_validate(await world.body(NODECLUSTERS, key))
    except KubeNotFound:
        return None
    meta = cluster.metadata
    if meta.deletion_timestamp is None:
        return None
    if not annotated_true(meta.annotations, ABANDON_MACHINES_ANNOTATION):
        return None
    return f"its NodeCluster {namespace}/{meta.name}"


async def connect(world: World, scope: NodeScope) -> Stop | None:
    """The provider's driver, or the reason there is none in the node's status."""
    try:
        scope.driver = await world.providers.driver(scope.node.spec.provider_ref.name)
    except ProviderUnavailable as err:
        await write_status(
            world, scope, status_from_error(scope.node, err.reason, err.message, scope.now)
        )
        raise Backoff(err.message) from err
    return None


async def delete_machine(world: World, scope: NodeScope) -> Stop | None:
    """A deleting node: wait out the grace period, delete until NotFound, then let go."""
    if not scope.deleting:
        return None
    node = scope.node
    left = await grace_left(world, node, world.now())
    if left > 0:
        if node.status.state != "Deleting":
            await write_status(world, scope, status_deleting(node, grace_left=left))
        return Stop(left)
    if owned_elsewhere(node):
        return Stop(await release(world, scope))  # never ours: let go, touch nothing
    name = machine_name_of(world, node)
    try:
        if not proven_ours(world, node):
            # Nothing recorded proves the machine under this name is ours (a node of an
            # earlier version, or one whose create was never recorded): look first.
            refused = ownership_problem(identity_of(world, node), await scope.connected().get(name))
            if refused is not None:
                log.warning(
                    "ClusterNode %s/%s: not deleting machine %s: %s", *scope.key[1:], name, refused
                )
                return Stop(await release(world, scope))
        await scope.connected().delete(name)
    except NotFound:
        pass
    except ProviderError as err:
        await report_provider_error(world, scope, err)
    else:
        if scope.node.status.state != "Deleting":
            await write_status(world, scope, status_deleting(scope.node))
        return Stop(POLL_SETTLING_SECONDS)
    await delete_kube_node(world, scope)
    return Stop(await release(world, scope))


async def converge_machine(world: World, scope: NodeScope) -> Stop | None:
    """Create the machine, or read it; then power it and reboot it as the spec asks."""
    node, driver = scope.node, scope.connected()
    name = machine_name_of(world, node)
    try:
        adopts = node.metadata.annotations.get(ADOPT_MACHINE_ANNOTATION)
        if node.status.provider_id is None and node.status.machine_name is None and adopts:
            # Tagging makes the machine this installation's, as a create does: the provider
            # is held first, and none being deleted gets one (inuse.py).
            no_machine = await hold_for_create(world, node.spec.provider_ref.name)
            if no_machine is not None:
                raise ProviderUnavailable(*no_machine)
            try:  # an Adopt operation's node: takeover.py
                machine = await take_over_machine(driver, adopts, machine_spec(world, node))
            except NotFound:
                return await report_missing(world, scope)
        elif node.status.provider_id is None and node.status.machine_name is None:
            # Never a machine through a provider this installation does not hold, nor
            # through one being deleted (inuse.py).
            no_machine = await hold_for_create(world, node.spec.provider_ref.name)
            if no_machine is not None:
                raise ProviderUnavailable(*no_machine)
            await hold_quota(world, scope)
            user_data = await read_user_data(world, node)
            try:
                machine = await driver.create(machine_spec(world, node, user_data))
            except BaseException:
                world.reservations.discard(node.spec.provider_ref.name, scope.key)
                raise
        else:
            try:
                machine = await driver.get(name)
            except NotFound:
                return await report_missing(world, scope)
        refused = ownership_problem(identity_of(world, node), machine)
        if refused is not None:
            return await report_owned_elsewhere(world, scope, name, refused)
        power = driver if isinstance(driver, PowerControl) else None
        if power is not None and reboot_due(node) and machine.state in ("Running", "Failed"):
            machine = await power.reboot(name)
            scope.rebooted = True
        if power is not None and machine.state not in SETTLING_STATES:
            wanted = node.spec.power_state
            if wanted == "Stopped" and machine.state == "Running":
                machine = await power.stop(name)
            elif wanted == "Running" and machine.state == "Stopped":
                machine = await power.start(name)
    except ProviderError as err:
        await report_provider_error(world, scope, err)
    except ProviderUnavailable as err:
        # The provider gives no new machines, or the user data cannot be read: a person
        # must act (delete the cluster, fix the Secret or the permissions).
        await write_status(
            world, scope, status_from_error(node, err.reason, err.message, scope.now)
        )
        raise Backoff(err.message) from err
    scope.machine = machine
    return None


async def report_missing(world: World, scope: NodeScope) -> Stop:
    """The machine vanished at the provider: say so (`MachineMissing`), for its cluster to
    replace the node. Nothing to power, and no reboot can bring it back: a reboot asked
    for stays pending, and the cluster replaces the node rather than ask again. The
    provider's health poll wakes the node while it lasts (the machine is not listed)."""
    await write_status(world, scope, status_missing(scope.node, scope.now))
    return Stop(None)


async def report_owned_elsewhere(world: World, scope: NodeScope, name: str, refused: str) -> Stop:
    """The machine answering to the node's name is not this node's: refuse it, say whose
    it is, and wait for a person (it stalls). The name is recorded, so the node keeps
    looking at that name only, and creates nothing of its own meanwhile."""
    message = f"machine {name} is not this node's: {refused}"
    status = status_owned_elsewhere(scope.node, message, scope.now)
    await write_status(world, scope, status.model_copy(update={"machine_name": name}))
    return Stop(None)


async def report(world: World, scope: NodeScope) -> Stop | None:
    """Write what the provider said (pure: planning.nodestatus), and what the machine's
    Node says (planning.kubenode), in one status write."""
    assert scope.machine is not None
    status = status_from_machine(scope.node, scope.machine, scope.now, rebooted=scope.rebooted)
    # The machine's name is recorded with its provider id, in the same write.
    status = status.model_copy(update={"machine_name": scope.machine.name})
    links = world.node_links
    if links is not None:
        # Its Node too (nodeRef, NodeReady): a machine that registers before this write
        # costs no write of its own.
        facts = links.node_of(scope.machine.provider_id)
        previous = scope.node.status.conditions
        status = with_node(status, previous, facts, scope.node.metadata.generation, scope.now)
    status = await launch_hooks(world, scope, status)
    node = scope.node  # as it was: the write replaces the scope's
    await write_status(world, scope, status)
    observe_startup(world, node, scope.machine.state)
    return None


NOT_STARTED = (None, "Pending", "Provisioning")
"""What a node's status says until its machine first ran."""


def observe_startup(world: World, node: ClusterNode, state: str) -> None:
    """A machine seen Running by a node whose status has never said so: its startup time,
    from the node's creation (its create was issued at once, and the creation time
    survives a restart, when the operator's own memory does not). `node` is as read, before
    this reconcile's status write; once that write says Running, no later reconcile (of
    this process or a restarted one) counts the machine again."""
    created = node.metadata.creation_timestamp
    if state != "Running" or node.status.state not in NOT_STARTED or created is None:
        return
    seconds = (world.clock.now() - created).total_seconds()
    world.metrics.machine_started(node.spec.provider_ref.name, seconds)


async def next_look(world: World, scope: NodeScope) -> Stop | None:
    """When to look again: settling machines soon (through their provider's list call),
    a machine not yet in its asked power state soon, a settled one only on events."""
    machine, node = scope.machine, scope.node
    assert machine is not None
    if scope.hook_deadline is not None:  # waiting on a Launch hook: look again at its deadline
        return Stop(max(0.0, (scope.hook_deadline - world.now()).total_seconds()))
    if machine.state in SETTLING_STATES:
        # The provider's next list call (soon, and one for all of its settling machines)
        # wakes this node when its machine changes; a get per machine per second would
        # cost a thousand provider calls a second while a thousand machines provision.
        world.queues.poll.add(node.spec.provider_ref.name, delay=POLL_SETTLING_SECONDS)
        return Stop(SETTLING_FALLBACK_SECONDS)
    if machine.state in ("Running", "Stopped") and machine.state != node.spec.power_state:
        return Stop(POLL_SETTLING_SECONDS)
    return Stop(None)


PHASES: tuple[Phase[NodeScope], ...] = (
    abandon_machine,
    connect,
    drain_node,
    terminate_hooks,
    delete_machine,
    hold_abandoned,
    converge_machine,
    report,
    sync_node,
    next_look,
)


async def hold_quota(world: World, scope: NodeScope) -> None:
    """Take one machine of the provider's quota before asking for the machine; over the
    quota, say so (QuotaExceeded, CostLimitExceeded) and back off, whoever made the node."""
    node = scope.node
    refused = reserve_machine(
        world,
        node.spec.provider_ref.name,
        scope.key,
        node.spec.profile.machine_type,
        node.status.zone or node.spec.zone,
    )
    if refused is not None:
        await report_provider_error(world, scope, refused)


def identity_of(world: World, node: ClusterNode) -> MachineIdentity:
    """Whose a machine of this node is: this installation's node, by namespace, name, uid."""
    meta = node.metadata
    return MachineIdentity(
        installation=world.settings.installation_id,
        namespace=meta.namespace or "",
        cluster=node.spec.cluster_name,
        node=meta.name,
        node_uid=meta.uid or "",
    )


def machine_name_of(world: World, node: ClusterNode) -> str:
    """The provider-side name of the node's machine: the one recorded; for a node of an
    earlier version (a provider id but no machine name) its own name; else derived."""
    status = node.status
    if status.machine_name is not None:
        return status.machine_name
    if status.provider_id is not None:
        return node.metadata.name  # an earlier version's node (identity.py)
    return machine_name(identity_of(world, node))


def proven_ours(world: World, node: ClusterNode) -> bool:
    """Whether the node's status shows it attached to its derived machine (tags checked)."""
    status = node.status
    return status.provider_id is not None and status.machine_name == machine_name(
        identity_of(world, node)
    )


def machine_spec(world: World, node: ClusterNode, user_data: str | None = None) -> MachineSpec:
    """What the provider is asked to create for a node: named and tagged by its identity."""
    profile = node.spec.profile
    identity = identity_of(world, node)
    return MachineSpec(
        name=machine_name(identity),
        cluster=f"{node.metadata.namespace}/{node.spec.cluster_name}",
        machine_type=profile.machine_type,
        zone=node.spec.zone,
        image=profile.image,
        labels={**profile.labels, CLUSTER_LABEL: node.spec.cluster_name},
        properties=profile.properties,
        user_data=user_data,
        tags=identity.tags(),
        capacity_type=profile.capacity_type,
    )


def reboot_due(node: ClusterNode) -> bool:
    """Whether the spec asks for a reboot newer than the last one carried out."""
    asked, last = node.spec.reboot_requested_at, node.status.last_reboot_time
    return asked is not None and (last is None or asked > last)


async def read_user_data(world: World, node: ClusterNode) -> str | None:
    """The profile's user data, read from its Secret at the moment it is needed."""
    ref = node.spec.profile.user_data_secret_ref
    if ref is None:
        return None
    namespace = node.metadata.namespace or "default"
    try:
        data = await world.api.read_secret(namespace, ref)
    except KubeNotFound as err:
        raise ProviderUnavailable(
            Reason.INVALID_PROVIDER_CONFIG,
            f"user data Secret {namespace}/{ref} (spec.profile.userDataSecretRef) does not exist",
        ) from err
    except KubeError as err:
        if err.status != 403:
            raise
        raise ProviderUnavailable(
            Reason.INVALID_PROVIDER_CONFIG,
            f"the operator may not read the user data Secret {namespace}/{ref}: add "
            f"{namespace!r} to the chart value rbac.secretNamespaces (and {ref!r} to "
            "rbac.secretNames if that list is set)",
        ) from err
    return data.get("userData")


async def grace_left(world: World, node: ClusterNode, now: datetime) -> float:
    """Seconds of the deletion policy's grace period still to run for a deleting node."""
    since = node.metadata.deletion_timestamp
    if since is None or node.status.provider_id is None or machine_missing(node):
        return 0.0  # no machine, so nothing to drain
    cluster = ("NodeCluster", node.metadata.namespace or "", node.spec.cluster_name)
    try:
        body = await world.body(NODECLUSTERS, cluster)
    except KubeNotFound:
        return 0.0
    grace = NodeCluster.model_validate(body).spec.policies.deletion.grace_period_seconds
    return max(0.0, grace - (now - since).total_seconds())


async def release(world: World, scope: NodeScope) -> float | None:
    """The machine is gone: remove the finalizer so the ClusterNode can go too. Its provider
    looks again soon: this may have been what held it (inuse.py)."""
    meta = scope.node.metadata
    world.queues.provider.add(scope.node.spec.provider_ref.name, delay=PROVIDER_REFRESH_SECONDS)
    finalizers = [f for f in meta.finalizers if f != NODE_FINALIZER]
    try:
        await world.api.patch(
            CLUSTERNODES,
            meta.namespace,
            meta.name,
            {"metadata": {"finalizers": finalizers, "resourceVersion": meta.resource_version}},
        )
    except KubeNotFound:
        return None
    except KubeConflict:
        world.bodies.drop(scope.key)  # read it again
        return CONFLICT_RETRY_SECONDS
    return None


async def report_provider_error(world: World, scope: NodeScope, err: ProviderError) -> NoReturn:
    """Say why in the node's status, then back off (the error's type names the reason).
    A reboot issued before the error is recorded, so it is not issued again."""
    world.providers.call_failed(scope.node.spec.provider_ref.name, err)
    reason = provider_reason(err)
    cluster = (scope.node.metadata.namespace or "", scope.node.spec.cluster_name)
    if world.metrics.knows(cluster):
        world.metrics.machine_event(cluster, "failed", str(reason))
    status = status_from_error(scope.node, reason, str(err), scope.now, rebooted=scope.rebooted)
    await write_status(world, scope, status)
    raise Backoff(f"{reason}: {err}") from err
