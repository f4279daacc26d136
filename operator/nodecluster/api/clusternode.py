"""ClusterNode: one member machine, owned by its NodeCluster.

It carries its own copy of the profile and provider (as a Cluster API Machine does), so
the controller that drives the machine creates, powers and follows it from the node alone,
and a profile change on the parent is visible per node as a differing `profileHash`. The
parent is read for one thing: a deleting node waits out the grace period of the
NodeCluster's deletion policy.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field
from pydantic.config import JsonDict

from nodecluster import API_VERSION
from nodecluster.api.common import CamelModel, Condition, ObjectMeta
from nodecluster.api.fallback import MAX_ALTERNATIVES
from nodecluster.api.hooks import HookWait
from nodecluster.api.nodecluster import NodeProfile, ProviderRef

PowerState = Literal["Running", "Stopped"]

NodeState = Literal[
    "Pending",
    "Provisioning",
    "Running",
    "Stopping",
    "Stopped",
    "Starting",
    "Rebooting",
    "Deleting",
    "Failed",
    "Unknown",
]

_IMMUTABLE: JsonDict = {
    "x-kubernetes-validations": [
        {"rule": "self == oldSelf", "message": "is immutable: replace the node instead"}
    ]
}


class NodeAddress(CamelModel):
    """One address of the machine."""

    explain = "One address at which the machine is reached, as its provider reports it."

    type: str = Field(
        description="What kind of address it is, as a Node's status.addresses says: "
        "InternalIP, ExternalIP, Hostname, InternalDNS or ExternalDNS."
    )
    address: str = Field(
        description="The IP address or DNS name itself; NodeClusterOperations can choose "
        "nodes by it (spec.nodes.addresses)."
    )


class NodeRef(CamelModel):
    """The Kubernetes Node of the machine (as Cluster API's Machine.status.nodeRef)."""

    explain = (
        "The Kubernetes Node of the machine (with `run --nodes`): the Node whose "
        "spec.providerID is the machine's provider id."
    )

    name: str = Field(description="metadata.name of the Node (cluster-scoped).")
    uid: str = Field(
        default="",
        description="metadata.uid of the Node (default empty): a Node deleted and registered "
        "again under the same name has another.",
    )


DrainOutcome = Literal["Drained", "TimedOut", "NodeGone"]


class DrainStatus(CamelModel):
    """The drain of the machine's Node before the machine is deleted (`run --nodes`)."""

    explain = (
        "The drain of the machine's Kubernetes Node before the machine is deleted (with "
        "`run --nodes`): the Node is cordoned and its pods evicted through the Eviction API, "
        "for at most the deletion policy's drainTimeoutSeconds."
    )

    # Recorded before the first eviction, so a restart in the middle goes on with the same
    # start (the timeout counts from it) and says nothing twice.

    started_at: datetime = Field(
        description="When the drain began (the Node was cordoned then); "
        "policies.deletion.drainTimeoutSeconds counts from it."
    )
    pods: int | None = Field(
        default=None,
        description="How many pods were still to leave the Node when last looked at "
        "(DaemonSet and mirror pods, which stay, not counted).",
    )
    blocked: str | None = Field(
        default=None,
        description="Why an eviction was refused when last tried, in the API server's words "
        "(a PodDisruptionBudget allowing no disruption now); absent when none was refused.",
    )
    finished_at: datetime | None = Field(
        default=None, description="When the drain ended; the machine is deleted after it."
    )
    outcome: DrainOutcome | None = Field(
        default=None,
        description="Drained (every pod gone), TimedOut (drainTimeoutSeconds ran out first) "
        "or NodeGone (the Node went away during the drain).",
    )


class ClusterNodeSpec(CamelModel):
    """What this one machine should be."""

    explain = (
        "What this one machine should be: written by its NodeCluster when it creates the "
        "node (a copy of the cluster's provider and profile, and the zone chosen), so the "
        "node can be driven alone. Only powerState and rebootRequestedAt change afterwards."
    )

    cluster_name: str = Field(
        min_length=1,
        max_length=253,
        description="metadata.name of the NodeCluster (same namespace) the node belongs to. "
        "Immutable.",
        json_schema_extra=_IMMUTABLE,
    )
    provider_ref: ProviderRef = Field(
        description="Copied from the NodeCluster. Immutable.", json_schema_extra=_IMMUTABLE
    )
    profile: NodeProfile = Field(
        description="Copied from the NodeCluster when the node was created, with a capacity "
        "fallback alternative's machineType and capacityType when made from one. Immutable: "
        "a profile change replaces the node.",
        json_schema_extra=_IMMUTABLE,
    )
    profile_hash: str = Field(
        default="",
        max_length=64,
        description="Hash of the NodeCluster's profile the node was built from; a node whose "
        "hash differs from the cluster's status.profileHash is outdated, and replaced as the "
        "rollout policy says. Default empty (which no profile hashes to).",
    )
    zone: str | None = Field(
        default=None,
        max_length=63,
        description="Zone the machine is to be created in, chosen by the placement policy. "
        "Unset: the provider's default zone. Immutable.",
        json_schema_extra=_IMMUTABLE,
    )
    alternative: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ALTERNATIVES,
        description="Which of its NodeCluster's policies.capacityFallback.alternatives the "
        "node was made from (1: the first), when the provider had no capacity for the "
        "profile's choice; the profile above already holds its machineType and "
        "capacityType. Absent: the profile's own choice.",
        json_schema_extra=_IMMUTABLE,
    )
    power_state: PowerState = Field(
        default="Running",
        description="Running (the default) or Stopped (the machine is kept but powered off), "
        "set by the NodeCluster from its desiredState and by Stop/StartNodes operations.",
    )
    reboot_requested_at: datetime | None = Field(
        default=None,
        description="A time later than status.lastRebootTime asks for one reboot of the "
        "machine (RebootNodes operations and Reboot recovery write it).",
    )


class ClusterNodeStatus(CamelModel):
    """What the provider last said about the machine."""

    explain = (
        "What the operator last observed of the machine, written by it alone: its state and "
        "identity at the provider, addresses, health, and with `run --nodes` its Node and "
        "drain. Fields it has not written yet are absent."
    )

    observed_generation: int | None = Field(
        default=None,
        description="The metadata.generation of the spec this status describes.",
    )
    state: NodeState | None = Field(
        default=None,
        description="Where the machine is in its lifecycle: Pending, Provisioning, Running, "
        "Stopping, Stopped, Starting, Rebooting, Deleting, Failed or Unknown.",
    )
    provider_id: str | None = Field(
        default=None,
        description="The provider's identifier of the machine (aws: the instance id), as "
        "Nodes carry it in spec.providerID; absent until the machine exists.",
    )
    machine_name: str | None = Field(
        default=None,
        description="The machine's name at the provider (its idempotency key): derived from "
        "the installation, namespace, name and uid of the node. Absent on nodes of earlier "
        "versions, whose machine is named by the node's name.",
    )
    zone: str | None = Field(
        default=None, description="The zone the provider says the machine runs in."
    )
    machine_type: str | None = Field(
        default=None, description="The machine type the provider says the machine runs as."
    )
    addresses: list[NodeAddress] = Field(
        default_factory=list,
        max_length=16,
        description="Where the machine is reached, as the provider reports it (at most 16).",
    )
    ready: bool | None = Field(
        default=None,
        description="Whether the machine runs, is healthy and waits on no Launch hook: what "
        "the NodeCluster counts in readyNodes.",
    )
    machine_created_at: datetime | None = Field(
        default=None, description="When the provider created the machine."
    )
    last_reboot_time: datetime | None = Field(
        default=None,
        description="When the last requested reboot (spec.rebootRequestedAt) was carried out.",
    )
    unhealthy_since: datetime | None = Field(
        default=None,
        description="Since when the machine has been unhealthy; the health policy's "
        "unhealthyTimeoutSeconds counts from it. Absent while healthy.",
    )
    restarted_at: datetime | None = Field(
        default=None,
        description="When the machine was last seen running again after a stop or a reboot "
        "(absent until then). With `run --nodes`, its Node, not Ready since before then, has "
        "nodeStartupTimeoutSeconds from then to be Ready again, as a new machine's has.",
    )
    message: str | None = Field(
        default=None,
        description="The last error or note about the machine, in a sentence for people.",
    )
    node_ref: NodeRef | None = Field(
        default=None,
        description="Absent while no Node has the provider id.",
    )
    drain: DrainStatus | None = Field(
        default=None,
        description="Absent until the machine is being deleted with a Node to drain.",
    )
    lifecycle_hook: HookWait | None = Field(
        default=None,
        description="At Launch its machine runs but the node is not Ready; at Terminate its "
        "machine is deleted once the hook completes or times out. Absent while it waits on "
        "none.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="LifecycleHook (True while the node waits on a hook, which its reason and "
        "message name; False once its hooks ended), Ready (the machine) and, with "
        "`run --nodes`, NodeReady (its Node's Ready condition, with the Node's own "
        "lastTransitionTime; False with reason NodeNotRegistered while no Node has the "
        "machine's provider id).",
    )


class ClusterNode(CamelModel):
    """The whole ClusterNode object."""

    api_version: str = Field(default=API_VERSION, description="API version.")
    kind: str = Field(default="ClusterNode", description="Kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Metadata.")
    spec: ClusterNodeSpec = Field(description="Desired state of the machine.")
    status: ClusterNodeStatus = Field(default_factory=ClusterNodeStatus, description="Status.")
