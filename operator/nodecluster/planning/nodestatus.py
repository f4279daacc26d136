"""Derive a ClusterNode's status from what its provider reports: pure, like the cluster's.

The node controller calls the provider and writes what these functions return; nothing
else decides what a node's status says. Five situations exist:

- the provider answered with the machine (`status_from_machine`);
- the provider answered that a machine the node had no longer exists
  (`status_missing`): deleted behind the operator's back. It is `Failed`, and the Ready
  condition's reason, `MachineMissing`, says why, so that nobody reads it as a broken
  machine that a reboot might bring back;
- a call failed, or the provider cannot be used (`status_from_error`): what is known is
  kept, and the Ready condition says why in the reason's words;
- the node is being deleted and waits out its grace period or its machine's deletion
  (`status_deleting`);
- the machine answering to the node's name belongs to someone else
  (`status_owned_elsewhere`, `MachineOwnedElsewhere`): refused, nothing of it shown.

The machine is seen through `MachineFacts`, a read-only protocol that the providers'
`Machine` satisfies, so planning needs nothing from the providers layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from nodecluster.api.clusternode import (
    ClusterNode,
    ClusterNodeStatus,
    DrainStatus,
    NodeAddress,
    NodeState,
)
from nodecluster.api.reasons import Reason
from nodecluster.planning.conditions import condition, replace_condition

SETTLING_STATES: frozenset[NodeState] = frozenset(
    {"Provisioning", "Stopping", "Starting", "Rebooting", "Deleting"}
)
"""Transitional machine states: the machine will change without being asked again."""

POWERED_DOWN_STATES: frozenset[NodeState] = frozenset(
    {"Stopping", "Stopped", "Starting", "Rebooting"}
)
"""States a machine leaves by booting: running again after one, it has restarted, and its
Node (not Ready meanwhile, its kubelet off) is given time to come back
(`status.restartedAt`)."""


class MachineFacts(Protocol):
    """What a provider reports about a machine (providers.base.Machine has all of it)."""

    @property
    def provider_id(self) -> str: ...
    @property
    def state(self) -> NodeState: ...
    @property
    def zone(self) -> str | None: ...
    @property
    def machine_type(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def addresses(self) -> Sequence[tuple[str, str]]: ...


def status_from_machine(
    node: ClusterNode, machine: MachineFacts, now: datetime, rebooted: bool = False
) -> ClusterNodeStatus:
    """The node's status given what the provider reports.

    `rebooted`: a reboot the spec asked for was issued just now; its time is recorded,
    so the request (an older `spec.rebootRequestedAt`) is not carried out twice.
    """
    old = node.status
    state = machine.state
    wanted = node.spec.power_state
    healthy = state == "Running" and wanted == "Running"
    settled = state in ("Running", "Stopped")
    if healthy or (state == "Stopped" and wanted == "Stopped"):
        unhealthy_since = None
    else:
        unhealthy_since = old.unhealthy_since or (now if settled or state == "Failed" else None)
    reason = Reason.MACHINE_RUNNING.value if healthy else f"Machine{state}"
    last_reboot = now if rebooted else old.last_reboot_time
    # Up again after a stop or a reboot (seen going down, or rebooted just now and already
    # back): the Node's kubelet is starting afresh. Kept otherwise, errors included.
    restarted = healthy and (rebooted or old.state in POWERED_DOWN_STATES)
    restarted_at = now if restarted else old.restarted_at
    return ClusterNodeStatus(
        observed_generation=node.metadata.generation,
        state=state,
        provider_id=machine.provider_id,
        zone=machine.zone,
        machine_type=machine.machine_type,
        addresses=[NodeAddress(type=t, address=a) for t, a in machine.addresses],
        ready=healthy,
        machine_created_at=machine.created_at.replace(microsecond=0),
        last_reboot_time=last_reboot,
        unhealthy_since=unhealthy_since,
        restarted_at=restarted_at,
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


def status_missing(node: ClusterNode, now: datetime) -> ClusterNodeStatus:
    """The node's status once its provider says its machine no longer exists.

    The state is `Failed` (NodeState is a CRD enum, and Failed is what every consumer
    already treats as needing replacement); the reason `MachineMissing` is what tells it
    apart from a machine that exists but is broken. The provider id is kept: it names
    the machine that vanished, and a node with one is never given a new machine under
    the same name (its cluster replaces the node instead). Its addresses went with it.
    """
    old = node.status
    message = (
        f"machine {node.metadata.name} no longer exists at the provider "
        f"({old.provider_id or 'provider id unknown'})"
    )
    return old.model_copy(
        update={
            "observed_generation": node.metadata.generation,
            "state": "Failed",
            "ready": False,
            "addresses": [],
            "unhealthy_since": old.unhealthy_since or now,
            "message": message,
            "conditions": replace_condition(
                old.conditions,
                condition(
                    old.conditions,
                    "Ready",
                    False,
                    Reason.MACHINE_MISSING,
                    message,
                    node.metadata.generation,
                    now,
                ),
            ),
        }
    )


def status_owned_elsewhere(node: ClusterNode, message: str, now: datetime) -> ClusterNodeStatus:
    """The node's status when the machine answering to its name belongs to another node
    (`MachineOwnedElsewhere`): nothing of that machine is shown as the node's (no provider
    id, no addresses), so nobody, the operator included, acts on it through this node."""
    old = node.status
    return old.model_copy(
        update={
            "observed_generation": node.metadata.generation,
            "state": "Failed",
            "ready": False,
            "provider_id": None,
            "addresses": [],
            "machine_created_at": None,
            "message": message,
            "node_ref": None,
            "conditions": [
                condition(
                    old.conditions,
                    "Ready",
                    False,
                    Reason.MACHINE_OWNED_ELSEWHERE,
                    message,
                    node.metadata.generation,
                    now,
                )
            ],
        }
    )


def status_from_error(
    node: ClusterNode, reason: Reason, message: str, now: datetime, rebooted: bool = False
) -> ClusterNodeStatus:
    """The node's status after a provider call failed: keep what is known, say why.
    `rebooted`: a reboot was issued before the failing call (recorded, as above)."""
    old = node.status
    return old.model_copy(
        update={
            "last_reboot_time": now if rebooted else old.last_reboot_time,
            "observed_generation": node.metadata.generation,
            "state": old.state or "Pending",
            "ready": False if old.state != "Running" else old.ready,
            "message": message,
            "conditions": replace_condition(
                old.conditions,
                condition(
                    old.conditions, "Ready", False, reason, message, node.metadata.generation, now
                ),
            ),
        }
    )


def status_draining(
    node: ClusterNode, drain: DrainStatus, node_name: str = "", message: str = ""
) -> ClusterNodeStatus:
    """The node's status while its Kubernetes Node is drained before the machine goes
    (`run --nodes`): Deleting, with the drain's progress (or `message`, at its end)."""
    if not message:
        message = f"draining Node {node_name}"
        if drain.pods is not None:
            message += f": {drain.pods} pods left"
        if drain.blocked:
            message += f"; eviction refused: {drain.blocked}"
    return node.status.model_copy(
        update={"state": "Deleting", "ready": False, "drain": drain, "message": message}
    )


def status_deleting(node: ClusterNode, grace_left: float | None = None) -> ClusterNodeStatus:
    """The node's status while it is deleted: during its grace period (`grace_left`
    seconds to go) or while its machine is deleted."""
    update: dict[str, object] = {"state": "Deleting", "ready": False}
    if grace_left is not None:
        update["message"] = f"draining; machine deleted in {grace_left:.0f}s"
    return node.status.model_copy(update=update)
