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

    type: str = Field(description="InternalIP, ExternalIP, Hostname, ...")
    address: str = Field(description="The address.")


class NodeRef(CamelModel):
    """The Kubernetes Node of the machine (as Cluster API's Machine.status.nodeRef)."""

    name: str = Field(description="Name of the Node (cluster-scoped).")
    uid: str = Field(default="", description="Its uid: a Node registered again is another.")


DrainOutcome = Literal["Drained", "TimedOut", "NodeGone"]


class DrainStatus(CamelModel):
    """The drain of the machine's Node before the machine is deleted (`run --nodes`)."""

    # Recorded before the first eviction, so a restart in the middle goes on with the same
    # start (the timeout counts from it) and says nothing twice.

    started_at: datetime = Field(
        description="When the drain began (the Node was cordoned then); "
        "deletionPolicy.drainTimeoutSeconds counts from it."
    )
    pods: int | None = Field(
        default=None, description="Pods still to leave the Node when last looked at."
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

    cluster_name: str = Field(
        min_length=1,
        max_length=253,
        description="The owning NodeCluster.",
        json_schema_extra=_IMMUTABLE,
    )
    provider_ref: ProviderRef = Field(
        description="The NodeProvider of the machine.", json_schema_extra=_IMMUTABLE
    )
    profile: NodeProfile = Field(
        description="The profile the machine is built from.", json_schema_extra=_IMMUTABLE
    )
    profile_hash: str = Field(
        default="",
        max_length=64,
        description="Hash of the profile, compared against the cluster's to drive rollouts.",
    )
    zone: str | None = Field(
        default=None,
        max_length=63,
        description="Zone the machine is placed in.",
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
        default="Running", description="Running or Stopped (the machine is kept but powered off)."
    )
    reboot_requested_at: datetime | None = Field(
        default=None,
        description="Setting a newer time than status.lastRebootTime asks for one reboot.",
    )


class ClusterNodeStatus(CamelModel):
    """What the provider last said about the machine."""

    observed_generation: int | None = Field(default=None, description="Spec generation observed.")
    state: NodeState | None = Field(default=None, description="Lifecycle state of the machine.")
    provider_id: str | None = Field(
        default=None, description="The provider's identifier of the machine."
    )
    machine_name: str | None = Field(
        default=None,
        description="The machine's name at the provider (its idempotency key): derived from "
        "the installation, namespace, name and uid of the node. Absent on nodes of earlier "
        "versions, whose machine is named by the node's name.",
    )
    zone: str | None = Field(default=None, description="Zone the machine runs in.")
    machine_type: str | None = Field(default=None, description="Machine type it runs as.")
    addresses: list[NodeAddress] = Field(
        default_factory=list, max_length=16, description="Addresses of the machine."
    )
    ready: bool | None = Field(default=None, description="Whether the machine is up and healthy.")
    machine_created_at: datetime | None = Field(
        default=None, description="When the provider created the machine."
    )
    last_reboot_time: datetime | None = Field(
        default=None, description="When the last requested reboot was carried out."
    )
    unhealthy_since: datetime | None = Field(
        default=None, description="Since when the machine has not been healthy."
    )
    restarted_at: datetime | None = Field(
        default=None,
        description="When the machine was last seen running again after a stop or a reboot "
        "(absent until then). With `run --nodes`, its Node, not Ready since before then, has "
        "nodeStartupTimeoutSeconds from then to be Ready again, as a new machine's has.",
    )
    message: str | None = Field(default=None, description="Last error or note, for people.")
    node_ref: NodeRef | None = Field(
        default=None,
        description="The Kubernetes Node whose spec.providerID is the machine's provider id "
        "(with `run --nodes`).",
    )
    drain: DrainStatus | None = Field(
        default=None,
        description="The drain of the Node before the machine is deleted (with `run --nodes`).",
    )
    lifecycle_hook: HookWait | None = Field(
        default=None,
        description="The lifecycle hook the node waits on (policies.lifecycleHooks of its "
        "NodeCluster): at Launch its machine runs but the node is not Ready; at Terminate "
        "its machine is deleted once the hook completes or times out.",
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
