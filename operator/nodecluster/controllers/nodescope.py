"""One reconcile of one ClusterNode (`NodeScope`), and what its phases share: the status
write and what the status says of the node's machine. Apart from clusternode.py so that
the phases of the machine's Kubernetes Node (kubenode.py) use them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nodecluster.api.clusternode import ClusterNode, ClusterNodeStatus
from nodecluster.api.reasons import Reason
from nodecluster.controllers.bodies import ObjectKey
from nodecluster.controllers.kubeapi import CLUSTERNODES, KubeNotFound, status_patch
from nodecluster.controllers.world import World
from nodecluster.providers.base import Machine, ProviderDriver


@dataclass
class NodeScope:
    """One reconcile of one ClusterNode."""

    key: ObjectKey
    node: ClusterNode
    now: datetime
    body: dict[str, Any] = field(default_factory=dict)
    """The body it was read from (what Events are about)."""
    driver: ProviderDriver | None = None
    machine: Machine | None = None
    """The machine as the provider last answered; None while it cannot be known."""
    rebooted: bool = False
    """A reboot the spec asked for was issued in this reconcile."""
    hook_deadline: datetime | None = None
    """When the lifecycle hook the node waits on times out (the node is looked at then)."""

    @property
    def deleting(self) -> bool:
        """Whether the ClusterNode is being deleted."""
        return self.node.metadata.deletion_timestamp is not None

    def connected(self) -> ProviderDriver:
        """The driver (after the connect phase)."""
        assert self.driver is not None, "connect runs before this phase"
        return self.driver


def owned_elsewhere(node: ClusterNode) -> bool:
    """Whether the node last refused the machine answering to its name."""
    ready = next((c for c in node.status.conditions if c.type == "Ready"), None)
    return ready is not None and ready.reason == Reason.MACHINE_OWNED_ELSEWHERE


def machine_missing(node: ClusterNode) -> bool:
    """Whether the node last reported its machine vanished at the provider, or deleted it
    when a Launch hook abandoned it (controllers/hooks.py): either way none is left to
    drain or to wait a grace period for."""
    ready = next((c for c in node.status.conditions if c.type == "Ready"), None)
    return ready is not None and ready.reason in (Reason.MACHINE_MISSING, Reason.LAUNCH_ABANDONED)


async def write_status(world: World, scope: NodeScope, status: ClusterNodeStatus) -> None:
    """One status patch, only when something changed."""
    node = scope.node
    old: dict[str, Any] = node.status.wire()
    new: dict[str, Any] = status.wire()
    if new == old:
        return
    try:
        patched = await world.api.patch(
            CLUSTERNODES,
            node.metadata.namespace,
            node.metadata.name,
            status_patch(old, new),
            status=True,
        )
    except KubeNotFound:
        return
    world.bodies.wrote(scope.key, patched)
    # What this reconcile writes next is compared with what it wrote, and a finalizer
    # patch made after it needs its resourceVersion.
    meta = node.metadata.model_copy(
        update={"resource_version": patched.get("metadata", {}).get("resourceVersion", "")}
    )
    scope.node = node.model_copy(update={"status": status, "metadata": meta})
