"""ClusterNode controller: drives exactly one machine at its provider.

The machine's name is the ClusterNode's name, chosen and stored in the API before the
provider is called, and the provider's create is idempotent on it. So a crash anywhere
(between create and status write, mid-delete) can neither lose nor double a machine:
the next reconcile calls the same idempotent operation again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from nodecluster.api.clusternode import ClusterNode, ClusterNodeStatus, NodeAddress, NodeState
from nodecluster.api.nodecluster import NodeCluster
from nodecluster.controllers.kubeapi import (
    CLUSTERNODES,
    NODECLUSTERS,
    KubeConflict,
    KubeNotFound,
    status_patch,
)
from nodecluster.controllers.workqueue import Backoff
from nodecluster.controllers.world import (
    CLUSTER_LABEL,
    NODE_FINALIZER,
    NsName,
    ObjectKey,
    ProviderUnavailable,
    World,
)
from nodecluster.planning.conditions import condition
from nodecluster.providers.base import (
    Machine,
    MachineSpec,
    NotFound,
    PowerControl,
    ProviderDriver,
    ProviderError,
)

log = logging.getLogger(__name__)

_SETTLING = frozenset({"Provisioning", "Stopping", "Starting", "Rebooting", "Deleting"})
POLL_SETTLING_SECONDS = 1.0
"""How soon a machine in a transitional state is looked at again."""
SETTLING_FALLBACK_SECONDS = 15.0
"""How soon a settling machine is looked at again by its own get, should its provider's
list calls fail (they normally wake it as soon as its state changes)."""
SETTLING_STATES = frozenset({"Provisioning", "Stopping", "Starting", "Rebooting"})
"""Transitional states the provider's list calls watch (a deletion polls on its own)."""


def machine_spec(node: ClusterNode, user_data: str | None = None) -> MachineSpec:
    """What the provider is asked to create for a node."""
    profile = node.spec.profile
    return MachineSpec(
        name=node.metadata.name,
        cluster=f"{node.metadata.namespace}/{node.spec.cluster_name}",
        machine_type=profile.machine_type,
        zone=node.spec.zone,
        image=profile.image,
        labels={**profile.labels, CLUSTER_LABEL: node.spec.cluster_name},
        properties=profile.properties,
        user_data=user_data,
    )


def status_from_machine(node: ClusterNode, machine: Machine, now: datetime) -> ClusterNodeStatus:
    """The node's status given what the provider reports."""
    old = node.status
    state: NodeState = machine.state
    wanted = node.spec.power_state
    healthy = state == "Running" and wanted == "Running"
    settled = state in ("Running", "Stopped")
    if healthy or (state == "Stopped" and wanted == "Stopped"):
        unhealthy_since = None
    else:
        unhealthy_since = old.unhealthy_since or (now if settled or state == "Failed" else None)
    reason = "MachineRunning" if healthy else f"Machine{state}"
    return ClusterNodeStatus(
        observed_generation=node.metadata.generation,
        state=state,
        provider_id=machine.provider_id,
        zone=machine.zone,
        machine_type=machine.machine_type,
        addresses=[NodeAddress(type=t, address=a) for t, a in machine.addresses],
        ready=healthy,
        machine_created_at=machine.created_at.replace(microsecond=0),
        last_reboot_time=old.last_reboot_time,
        unhealthy_since=unhealthy_since,
        message=None,
        conditions=[
            condition(
                old.conditions,
                "Ready",
                healthy,
                reason,
                f"machine is {state}",
                node.metadata.generation,
                now,
            )
        ],
    )


def status_from_error(
    node: ClusterNode, reason: str, message: str, now: datetime
) -> ClusterNodeStatus:
    """The node's status after a provider call failed: keep what is known, say why."""
    old = node.status
    return old.model_copy(
        update={
            "observed_generation": node.metadata.generation,
            "state": old.state or "Pending",
            "ready": False if old.state != "Running" else old.ready,
            "message": message,
            "conditions": [
                condition(
                    old.conditions, "Ready", False, reason, message, node.metadata.generation, now
                )
            ],
        }
    )


async def reconcile_node(world: World, key: NsName) -> float | None:
    """Drive one machine toward its ClusterNode; return when to look again."""
    cache_key = ("ClusterNode", *key)
    again = await _reconcile_node(world, cache_key)
    if again is None:
        world.bodies.drop(cache_key)  # settled: keep no body until the next event
    return again


async def _reconcile_node(world: World, cache_key: ObjectKey) -> float | None:
    try:
        body = await world.body(CLUSTERNODES, cache_key)
    except KubeNotFound:
        return None
    node = ClusterNode.model_validate(body)
    now = world.now()
    deleting = node.metadata.deletion_timestamp is not None
    if deleting and NODE_FINALIZER not in node.metadata.finalizers:
        return None

    try:
        driver = await world.driver(node.spec.provider_ref.name)
    except ProviderUnavailable as err:
        await _write_status(world, node, status_from_error(node, err.reason, err.message, now))
        raise Backoff(err.message) from err

    try:
        if deleting:
            return await _delete_machine(world, node, driver)
        machine = await _converge_machine(world, node, driver, now)
    except ProviderError as err:
        await _write_status(world, node, status_from_error(node, err.reason, str(err), now))
        raise Backoff(f"{err.reason}: {err}") from err

    if machine is None:
        return POLL_SETTLING_SECONDS
    status = status_from_machine(node, machine, now)
    if node.spec.reboot_requested_at is not None and machine.state == "Running":
        status.last_reboot_time = node.status.last_reboot_time
    await _write_status(world, node, status)
    if machine.state in _SETTLING and world.poll_queue is not None:
        # The provider's next list call (soon, and one for all of its settling machines)
        # wakes this node when its machine changes; a get per machine per second would
        # cost a thousand provider calls a second while a thousand machines provision.
        world.poll_queue.add(node.spec.provider_ref.name, delay=POLL_SETTLING_SECONDS)
        return SETTLING_FALLBACK_SECONDS
    if machine.state in _SETTLING or (
        machine.state in ("Running", "Stopped") and machine.state != node.spec.power_state
    ):
        return POLL_SETTLING_SECONDS
    return None


async def _converge_machine(
    world: World, node: ClusterNode, driver: ProviderDriver, now: datetime
) -> Machine | None:
    """Create, power and reboot the machine as the spec asks; return its state."""
    name = node.metadata.name
    if node.status.provider_id is None:
        user_data = await _user_data(world, node)
        machine = await driver.create(machine_spec(node, user_data))
    else:
        try:
            machine = await driver.get(name)
        except NotFound:
            return _missing(node)
    wanted = node.spec.power_state
    power = driver if isinstance(driver, PowerControl) else None
    reboot_at = node.spec.reboot_requested_at
    last_reboot = node.status.last_reboot_time
    if (
        power is not None
        and reboot_at is not None
        and (last_reboot is None or reboot_at > last_reboot)
    ) and machine.state in ("Running", "Failed"):
        machine = await power.reboot(name)
        node.status.last_reboot_time = now
    if power is not None and machine.state not in _SETTLING:
        if wanted == "Stopped" and machine.state == "Running":
            machine = await power.stop(name)
        elif wanted == "Running" and machine.state == "Stopped":
            machine = await power.start(name)
    return machine


def _missing(node: ClusterNode) -> Machine:
    """A machine that vanished at the provider: report it as Failed so it is remediated."""
    return Machine(
        name=node.metadata.name,
        provider_id=node.status.provider_id or "",
        cluster=node.spec.cluster_name,
        state="Failed",
        machine_type=node.spec.profile.machine_type,
        zone=node.status.zone,
        cores=0,
        created_at=node.status.machine_created_at or datetime.now(UTC),
    )


async def _user_data(world: World, node: ClusterNode) -> str | None:
    ref = node.spec.profile.user_data_secret_ref
    if ref is None:
        return None
    try:
        data = await world.client.read_secret(node.metadata.namespace or "default", ref)
    except KubeNotFound as err:
        raise ProviderUnavailable(
            "InvalidProviderConfig", f"user data Secret {ref!r} does not exist"
        ) from err
    return data.get("userData")


async def _grace_left(world: World, node: ClusterNode, now: datetime) -> float:
    """Seconds of the deletion policy's grace period still to run for a deleting node."""
    since = node.metadata.deletion_timestamp
    if since is None or node.status.provider_id is None:
        return 0.0
    cluster = ("NodeCluster", node.metadata.namespace or "", node.spec.cluster_name)
    try:
        body = await world.body(NODECLUSTERS, cluster)
    except KubeNotFound:
        return 0.0
    grace = NodeCluster.model_validate(body).spec.policies.deletion.grace_period_seconds
    return max(0.0, grace - (now - since).total_seconds())


async def _delete_machine(world: World, node: ClusterNode, driver: ProviderDriver) -> float | None:
    """Wait out the grace period, delete until NotFound, then let the ClusterNode go."""
    left = await _grace_left(world, node, world.now())
    if left > 0:
        draining = node.status.model_copy(
            update={
                "state": "Deleting",
                "ready": False,
                "message": f"draining; machine deleted in {left:.0f}s",
            }
        )
        if node.status.state != "Deleting":
            await _write_status(world, node, draining)
        return left
    try:
        await driver.delete(node.metadata.name)
    except NotFound:
        pass
    else:
        if node.status.state != "Deleting":
            await _write_status(
                world, node, node.status.model_copy(update={"state": "Deleting", "ready": False})
            )
        return POLL_SETTLING_SECONDS
    finalizers = [f for f in node.metadata.finalizers if f != NODE_FINALIZER]
    try:
        await world.client.patch(
            CLUSTERNODES,
            node.metadata.namespace,
            node.metadata.name,
            {
                "metadata": {
                    "finalizers": finalizers,
                    "resourceVersion": node.metadata.resource_version,
                }
            },
        )
    except KubeNotFound:
        return None
    except KubeConflict:
        world.bodies.drop(_key(node))  # read it again
        return 0.1
    return None


def _key(node: ClusterNode) -> ObjectKey:
    return ("ClusterNode", node.metadata.namespace or "", node.metadata.name)


async def _write_status(world: World, node: ClusterNode, status: ClusterNodeStatus) -> None:
    new: dict[str, Any] = status.wire()
    if new == node.status.wire():
        return
    try:
        patched = await world.client.patch(
            CLUSTERNODES,
            node.metadata.namespace,
            node.metadata.name,
            status_patch(node.status.wire(), new),
            status=True,
        )
    except KubeNotFound:
        return
    world.bodies.wrote(_key(node), patched)
