"""The plain data the planner works on, decoupled from the API's wire format."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from nodecluster.api.clusternode import NodeState, PowerState
from nodecluster.api.fallback import CapacityType, ExhaustedCapacity
from nodecluster.api.nodecluster import NodeClusterSpec, NodeClusterStatus
from nodecluster.api.reasons import Reason

CLUSTER_LABEL = "nodecluster.io/cluster"
"""Label on every ClusterNode naming its NodeCluster: the scale subresource's selector."""

DELETE_NODE_ANNOTATION = "nodecluster.io/delete-node"
"""Set on a ClusterNode to make it the first to go on the next scale-in."""

PROTECT_ANNOTATION = "nodecluster.io/protect-from-scale-in"
"""Set on a ClusterNode to keep it out of every scale-in (like an ASG's protection)."""

POWER_HOLD_ANNOTATION = "nodecluster.io/power-state"
"""Set by a StopNodes operation: this node stays powered as it says, whatever the
cluster's desiredState, until a StartNodes operation removes it."""


NodeHealth = Literal["Ready", "NotReady", "NotRegistered"]
"""A machine's Kubernetes Node: Ready, registered and not Ready, or not there at all."""


@dataclass(frozen=True, slots=True)
class NodeView:
    """What the planner needs to know about one ClusterNode.

    Small and slotted on purpose: the operator keeps one per node in memory.
    """

    name: str
    created_at: datetime
    zone: str | None = None
    state: NodeState | None = None
    ready: bool = False
    power_state: PowerState = "Running"
    profile_hash: str = ""
    deleting: bool = False
    marked_for_deletion: bool = False
    protected: bool = False
    error_reason: Reason | None = None
    error_message: str | None = None
    unhealthy_since: datetime | None = None
    has_machine: bool = False
    power_hold: str | None = None
    """The power-state annotation: any value (even empty) holds the node's power."""
    reboot_pending: bool = False
    """A reboot was asked for (spec.rebootRequestedAt) and not yet carried out (no newer
    status.lastRebootTime): asking again would only write the spec again."""
    node: NodeHealth | None = None
    """Its Kubernetes Node, by the NodeReady condition (`run --nodes`); None: not known."""
    node_since: datetime | None = None
    """Since when `node` has been as it is (the Node's Ready lastTransitionTime)."""
    restarted_at: datetime | None = None
    """When the machine was last seen running again after a stop or a reboot: a Node not
    Ready since before then has not been given its chance yet."""
    hook: str | None = None
    """The lifecycle hook the node waits on (status.lifecycleHook), if any."""
    launching: bool = False
    """It waits on a Launch hook: not Ready, and judged by the hook's timeout, not by health."""
    machine_type: str = ""
    """Its profile's machine type (an alternative's, if it was made from one)."""
    capacity_type: CapacityType | None = None
    """Its profile's capacity type: with `machine_type` and `zone`, what the provider was
    asked for, which the capacity fallback remembers refusals by (planning/fallback.py)."""
    warm: bool = False
    """It is in the warm pool (labelled nodecluster.io/pool=warm): outside the target."""

    @property
    def machine_missing(self) -> bool:
        """Whether its node reported the machine gone at the provider (deleted behind the
        operator's back), or deleted it when a Launch hook abandoned it: there is nothing
        left to reboot or wait for, and the node is replaced whatever the recovery."""
        return self.error_reason in (Reason.MACHINE_MISSING, Reason.LAUNCH_ABANDONED)


@dataclass(frozen=True)
class Declared:
    """The NodeCluster as its owner wrote it."""

    name: str
    spec: NodeClusterSpec
    generation: int
    profile_hash: str
    deleting: bool = False


@dataclass(frozen=True)
class Observed:
    """The world as the controller read it just now."""

    nodes: tuple[NodeView, ...]
    now: datetime
    previous: NodeClusterStatus = field(default_factory=NodeClusterStatus)
    headroom: int | None = None
    """How many more machines the NodeProvider's quotas allow; None = no limit."""
    headroom_limit: tuple[Reason, str] | None = None
    """Which quota binds `headroom`: (reason, message with {room} and {needed} to fill)."""
    provider_problem: tuple[Reason, str] | None = None
    """(reason, message) when the provider cannot be used at all."""
    no_new_machines: tuple[Reason, str] | None = None
    """(reason, message) when the provider serves the machines that exist but gives no new
    ones (it is being deleted): only creates are blocked."""
    seed: int = 0
    """Seeds the choice of new names and of the Random deletion criteria."""
    exhausted: tuple[ExhaustedCapacity, ...] = ()
    """The offerings the provider refused for capacity, as status last recorded them
    (`status.exhaustedCapacity`): the capacity fallback's memory."""
    watching_nodes: bool = False
    """Whether the operator follows Kubernetes Nodes (`run --nodes`): only then does a
    node's NodeReady condition count for health (one left from an earlier run with it,
    never updated since, must not get machines remediated)."""
