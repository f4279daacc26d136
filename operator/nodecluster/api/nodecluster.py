"""NodeCluster: the declaration of a group of nodes and the policies that govern it.

Policies are inline (editing the spec is the declarative form of Senlin's attach and
detach) and every one of them has working defaults, so the smallest useful NodeCluster
names a provider, a machine type and a count.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from nodecluster import API_VERSION
from nodecluster.api.common import (
    DNS_SUBDOMAIN,
    LABEL_KEY_PREFIX,
    LABEL_NAME,
    CamelModel,
    Condition,
    IntOrPercent,
    LabelMap,
    ObjectMeta,
)
from nodecluster.api.fallback import CapacityFallbackPolicy, CapacityType, ExhaustedCapacity
from nodecluster.api.hooks import LIFECYCLE_HOOKS_VALIDATIONS, MAX_HOOKS, LifecycleHook
from nodecluster.api.usage import ClusterUsage
from nodecluster.api.warmpool import WarmPool

DesiredState = Literal["Running", "Stopped", "Terminated"]

ClusterState = Literal[
    "Init",
    "Deploying",
    "Deployed",
    "PartlyDeployed",
    "Scaling",
    "Updating",
    "Recovering",
    "Stopping",
    "Stopped",
    "Starting",
    "Terminating",
    "Terminated",
    "Empty",
    "Error",
]


class ProviderRef(CamelModel):
    """Which NodeProvider machines of this cluster come from."""

    kind: Literal["NodeProvider"] = Field(
        default="NodeProvider", description="Kind of the referenced object; only NodeProvider."
    )
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Name of the (cluster-scoped) NodeProvider.",
    )


TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class NodeTaint(CamelModel):
    """A taint of a Kubernetes Node, as core/v1 spells it."""

    key: str = Field(
        min_length=1,
        max_length=317,
        description="Taint key: a label key (an optional DNS subdomain prefix and '/', a name).",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self.matches('^({LABEL_KEY_PREFIX}/)?{LABEL_NAME}$') "
                    "&& self.substring(self.lastIndexOf('/') + 1).size() <= 63",
                    "message": "must be a label key: a name of at most 63 characters "
                    "(alphanumerics, '-', '_' or '.', starting and ending alphanumeric), "
                    "optionally prefixed by a DNS subdomain and '/'",
                }
            ]
        },
    )
    value: str = Field(
        default="",
        max_length=63,
        pattern=f"^({LABEL_NAME})?$",
        description="Taint value: empty, or a label value.",
    )
    effect: TaintEffect = Field(description="NoSchedule, PreferNoSchedule or NoExecute.")


class NodeProfile(CamelModel):
    """What every node of the cluster looks like (Senlin's profile, CAPI's machine template)."""

    machine_type: str = Field(
        min_length=1, max_length=63, description="Machine type (flavour, instance type, size)."
    )
    image: str | None = Field(
        default=None,
        max_length=253,
        description="Image the machine boots from, if the driver uses one.",
    )
    labels: LabelMap = Field(
        default_factory=dict,
        description=(
            "Tags put on each machine at the provider and labels on each ClusterNode: "
            "Kubernetes label keys and values, at most 64; keys under 'nodecluster.io/' "
            "are the operator's."
        ),
    )
    properties: dict[str, str] = Field(
        default_factory=dict,
        description="Driver-specific, non-secret settings (e.g. disk size, network).",
    )
    user_data_secret_ref: str | None = Field(
        default=None,
        max_length=253,
        description="Name of a Secret in this namespace whose 'userData' key boots the machine.",
    )
    # Both optional with no default value: unset, they are not in `wire()`, so the profile
    # hash of every cluster written before they existed stays the same (no rollout of
    # every machine on upgrade).
    node_labels: LabelMap | None = Field(
        default=None,
        description=(
            "Labels the operator keeps on each machine's Kubernetes Node (with `run --nodes`): "
            "put back when removed, never removed themselves. Kubernetes label keys and "
            "values, at most 64; keys under 'nodecluster.io/' are the operator's. Part of "
            "the profile: changing them rolls the nodes out."
        ),
    )
    node_taints: list[NodeTaint] | None = Field(
        default=None,
        max_length=32,
        description=(
            "Taints the operator keeps on each machine's Kubernetes Node (with `run --nodes`), "
            "beside the taints others put there. Part of the profile: changing them rolls "
            "the nodes out."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.all(t, self.exists_one(u, u.key == t.key "
                    "&& u.effect == t.effect))",
                    "message": "a taint's key and effect must be unique",
                }
            ]
        },
    )
    # Unset (no default value, so no profile hash changes on upgrade): the provider's
    # default, as before the field existed (for aws, config.capacityType or the profile's
    # properties.capacityType).
    capacity_type: CapacityType | None = Field(
        default=None,
        description=(
            "OnDemand or Spot. Unset: the provider's default (aws: its config.capacityType, "
            "or properties.capacityType). Part of the profile: changing it rolls the nodes out."
        ),
    )


AdjustmentType = Literal["ExactCapacity", "ChangeInCapacity", "ChangeInPercentage"]


class ScalingPolicy(CamelModel):
    """How a ScaleOut/ScaleIn request turns into a new target (Senlin's scaling policy)."""

    adjustment_type: AdjustmentType = Field(
        default="ChangeInCapacity",
        description=(
            "ExactCapacity sets the target; ChangeInCapacity adds the number; "
            "ChangeInPercentage adds that percent of the current target."
        ),
    )
    min_step: int = Field(
        default=1, ge=1, description="Smallest change a ChangeInPercentage adjustment makes."
    )
    best_effort: bool = Field(
        default=False,
        description=("Clamp a request that would cross minNodes/maxNodes instead of refusing it."),
    )
    cooldown_seconds: int = Field(
        default=0, ge=0, le=86400, description="Seconds after an adjustment before the next one."
    )


DeletionCriteria = Literal["OldestFirst", "YoungestFirst", "OldestProfileFirst", "Random"]


class DeletionPolicy(CamelModel):
    """Which nodes go first when the cluster shrinks (Senlin's deletion policy)."""

    criteria: DeletionCriteria = Field(
        default="Random",
        description=(
            "Order among otherwise equal nodes. Unhealthy nodes and nodes annotated "
            "'nodecluster.io/delete-node' always go first; nodes annotated "
            "'nodecluster.io/protect-from-scale-in' are never chosen by a scale-in."
        ),
    )
    grace_period_seconds: int = Field(
        default=0,
        ge=0,
        le=86400,
        description="Seconds from a node's deletion before its machine goes (at least; a "
        "drain of its Kubernetes Node may take longer, within drainTimeoutSeconds).",
    )
    drain_timeout_seconds: int = Field(
        default=600,
        ge=0,
        le=604800,
        description=(
            "With Node integration (`run --nodes`): the longest the Kubernetes Node of a "
            "machine being deleted is drained (cordoned, its pods evicted through the "
            "Eviction API, PodDisruptionBudgets honoured) before the machine is deleted "
            "anyway, said in a DrainTimedOut Event. 0: machines are deleted without a drain."
        ),
    )


RecoveryAction = Literal["Recreate", "Reboot", "None"]


class HealthPolicy(CamelModel):
    """How unhealthy nodes are noticed and what is done about them."""

    poll_interval_seconds: int = Field(
        default=60, ge=5, le=86400, description="How often the provider is asked about machines."
    )
    node_startup_timeout_seconds: int = Field(
        default=600, ge=10, description="A machine not running after this long is unhealthy."
    )
    unhealthy_timeout_seconds: int = Field(
        default=300,
        ge=0,
        description="How long a machine may be not running before it is remediated.",
    )
    node_not_ready_timeout_seconds: int | None = Field(
        default=None,
        ge=0,
        le=86400,
        description=(
            "With Node integration (`run --nodes`): a running machine whose Kubernetes Node is "
            "not Ready for longer than this, or that has no Node nodeStartupTimeoutSeconds "
            "after its ClusterNode was created, is unhealthy (remediated as recovery says). A "
            "stopped machine is not judged by its Node; one running again after a stop or a "
            "reboot has nodeStartupTimeoutSeconds from then for its Node to be Ready. Unset: "
            "health follows the machine only."
        ),
    )
    recovery: RecoveryAction = Field(
        default="Recreate", description="Recreate, Reboot, or None (report only)."
    )
    max_unhealthy: IntOrPercent | None = Field(
        default=None,
        description=(
            "Stop remediating when more nodes than this (count or percent) are unhealthy, "
            "to avoid a remediation storm. Unset means no limit."
        ),
    )


class ZoneWeight(CamelModel):
    """One zone and its share of the nodes."""

    name: str = Field(min_length=1, max_length=63, description="Zone name.")
    weight: int = Field(
        default=1, ge=1, le=1000, description="Relative share; must be a positive whole number."
    )


class PlacementPolicy(CamelModel):
    """Where nodes go (Senlin's zone placement). Equal weights spread evenly."""

    zones: list[ZoneWeight] = Field(
        default_factory=list,
        max_length=64,
        description="Zones with weights. Empty means the provider's default zone.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.all(z, self.exists_one(y, y.name == z.name))",
                    "message": "zone names must be unique",
                }
            ]
        },
    )


RolloutStrategy = Literal["RollingUpdate", "OnDelete"]

MIN_NODE_LIFETIME_SECONDS = 60
"""The shortest maxNodeLifetimeSeconds taken. Below a minute, nodes would be replaced
about as fast as most providers create machines: a fleet of replacements, never a fleet
of nodes. (The same field must also exceed the health policy's nodeStartupTimeoutSeconds,
a CEL rule of Policies: a node must be able to come up before it expires.)"""
MAX_NODE_LIFETIME_SECONDS = 10 * 365 * 86400
"""The longest maxNodeLifetimeSeconds taken (ten years): a bound on the number, no policy."""


class RolloutPolicy(CamelModel):
    """How nodes built from an older profile are replaced."""

    strategy: RolloutStrategy = Field(
        default="RollingUpdate",
        description=(
            "RollingUpdate replaces nodes automatically; OnDelete only as they are removed."
        ),
    )
    max_surge: IntOrPercent = Field(
        default=1, description="Nodes above the target allowed during a rollout."
    )
    max_unavailable: IntOrPercent = Field(
        default=0, description="Nodes below the target allowed during a rollout."
    )
    max_node_lifetime_seconds: int | None = Field(
        default=None,
        ge=MIN_NODE_LIFETIME_SECONDS,
        le=MAX_NODE_LIFETIME_SECONDS,
        description=(
            "Nodes older than this many seconds (from their ClusterNode's creation) are "
            "replaced, oldest first, within maxSurge and maxUnavailable, whatever the "
            "strategy (as Karpenter's expireAfter and an Auto Scaling group's maximum "
            "instance lifetime); each replacement is said in a NodeExpired Event. Suspending "
            "Rollout (spec.suspend) holds it. At least 60 and more than "
            "policies.health.nodeStartupTimeoutSeconds. Unset: nodes live as long as they work."
        ),
    )


class Policies(CamelModel):
    """All policies of a cluster; each has usable defaults."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    # A lifetime shorter than the time a node is given to start would expire
                    # nodes before they could serve: each replacement old enough to be
                    # replaced again as it came up. Defaults are spelt out (600): the rule
                    # must hold whether or not health was written.
                    "rule": "!has(self.rollout) || !has(self.rollout.maxNodeLifetimeSeconds) "
                    "|| self.rollout.maxNodeLifetimeSeconds > "
                    "(has(self.health) && has(self.health.nodeStartupTimeoutSeconds) "
                    "? self.health.nodeStartupTimeoutSeconds : 600)",
                    "message": "must be more than policies.health.nodeStartupTimeoutSeconds "
                    "(default 600): a node must be able to start before it expires",
                    "fieldPath": ".rollout.maxNodeLifetimeSeconds",
                    "reason": "FieldValueInvalid",
                },
                {
                    # Spread holds (api/fallback.py): a zone the placement never picks
                    # would make an alternative that never applies.
                    "rule": "!has(self.capacityFallback) || !has(self.placement) "
                    "|| !has(self.placement.zones) || self.placement.zones.size() == 0 "
                    "|| self.capacityFallback.alternatives.all(a, !has(a.zone) "
                    "|| self.placement.zones.exists(z, z.name == a.zone))",
                    "message": "an alternative's zone must be one of "
                    "spec.policies.placement.zones (the spread chooses the zone; an "
                    "alternative with a zone applies to the nodes placed there)",
                    "fieldPath": ".capacityFallback.alternatives",
                    "reason": "FieldValueInvalid",
                },
            ]
        }
    }

    scaling: ScalingPolicy = Field(default_factory=ScalingPolicy, description="Scaling policy.")
    deletion: DeletionPolicy = Field(default_factory=DeletionPolicy, description="Deletion policy.")
    health: HealthPolicy = Field(default_factory=HealthPolicy, description="Health policy.")
    placement: PlacementPolicy = Field(
        default_factory=PlacementPolicy, description="Placement policy."
    )
    rollout: RolloutPolicy = Field(default_factory=RolloutPolicy, description="Rollout policy.")
    lifecycle_hooks: list[LifecycleHook] | None = Field(
        default=None,
        max_length=MAX_HOOKS,
        description=(
            "Lifecycle hooks (as an Auto Scaling group's): a node waits at its launch or its "
            "termination, one hook after the other in this order, until each is completed by "
            "the ClusterNode annotation hooks.nodecluster.io/<name> (Continue or Abandon) or "
            "its timeout applies its defaultResult. Unset: nodes never wait."
        ),
        json_schema_extra={"x-kubernetes-validations": LIFECYCLE_HOOKS_VALIDATIONS},
    )
    capacity_fallback: CapacityFallbackPolicy | None = Field(
        default=None,
        description=(
            "Alternatives (machine type, capacity type, zone) tried in order when the "
            "provider has no capacity for the profile's choice. Unset: a node refused for "
            "capacity retries its own choice with backoff."
        ),
    )


SuspendableProcess = Literal["Launch", "Terminate", "Remediate", "Rollout", "PowerChange"]
"""The kinds of change the planner makes, each of which `spec.suspend` can stop alone (as an
Auto Scaling group's suspended processes). What each holds back:

- `Launch`: no node is created: not to reach the target, not to replace a node remediated
  or deleted by hand. A rollout (profile or lifetime) waits too: its replacements need
  new nodes, and deleting old ones with none coming would shrink the cluster for as long
  as Launch stays suspended.
- `Terminate`: no node is deleted for being beyond the target (scale-in).
- `Remediate`: unhealthy nodes (missing machines included) are reported, not recreated
  nor rebooted.
- `Rollout`: nodes built from an older profile, and nodes past maxNodeLifetimeSeconds,
  are not replaced.
- `PowerChange`: nodes are not stopped or started to follow desiredState.

There is no zone rebalancing to suspend: the planner never moves a node between zones
(placement chooses zones for new nodes and scale-in keeps the spread; both go on).
Deleting the NodeCluster, or `desiredState: Terminated`, is the owner's explicit act and
deletes every node whatever is suspended: a suspended Terminate must not keep a deleted
cluster, and its machines, for ever. `paused: true` still stops everything."""

SUSPENDABLE_PROCESSES: tuple[SuspendableProcess, ...] = (
    "Launch",
    "Terminate",
    "Remediate",
    "Rollout",
    "PowerChange",
)


class NodeClusterSpec(CamelModel):
    """What the owner declares."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.minNodes) || !has(self.maxNodes) "
                    "|| self.minNodes <= self.maxNodes",
                    "message": "must not exceed spec.maxNodes",
                    "fieldPath": ".minNodes",
                    "reason": "FieldValueInvalid",
                },
                {
                    "rule": "!has(self.minNodes) || self.targetNodes >= self.minNodes",
                    "message": "must be at least spec.minNodes",
                    "fieldPath": ".targetNodes",
                    "reason": "FieldValueInvalid",
                },
                {
                    "rule": "!has(self.maxNodes) || self.targetNodes <= self.maxNodes",
                    "message": "must not exceed spec.maxNodes",
                    "fieldPath": ".targetNodes",
                    "reason": "FieldValueInvalid",
                },
                {
                    "rule": "oldSelf.desiredState != 'Terminated' "
                    "|| self.desiredState == 'Terminated'",
                    "message": "a Terminated NodeCluster stays Terminated; "
                    "create a new NodeCluster instead",
                    "fieldPath": ".desiredState",
                    "reason": "FieldValueForbidden",
                },
            ]
        }
    }

    provider_ref: ProviderRef = Field(
        description="The NodeProvider machines come from. Immutable.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self == oldSelf",
                    "message": "is immutable: machines cannot move between providers; "
                    "create a new NodeCluster instead",
                }
            ]
        },
    )
    profile: NodeProfile = Field(description="What each node looks like.")
    target_nodes: int = Field(
        default=1, ge=0, le=100000, description="How many nodes should exist (the scale target)."
    )
    min_nodes: int | None = Field(
        default=None, ge=0, le=100000, description="Scaling never goes below this."
    )
    max_nodes: int | None = Field(
        default=None, ge=0, le=100000, description="Scaling never goes above this."
    )
    desired_state: DesiredState = Field(
        default="Running",
        description=(
            "Running keeps machines on; Stopped keeps them but powered off; Terminated "
            "deletes every machine for good (final)."
        ),
    )
    paused: bool = Field(
        default=False,
        description="While true the operator reports status but changes nothing.",
    )
    suspend: list[SuspendableProcess] | None = Field(
        default=None,
        max_length=len(SUSPENDABLE_PROCESSES),
        description=(
            "Kinds of change the operator does not make while listed, one by one (as an "
            "Auto Scaling group's suspended processes; paused stops them all): Launch "
            "(creating nodes, which a rollout needs too), Terminate (deleting nodes beyond "
            "the target), Remediate (recreating or rebooting unhealthy nodes), Rollout "
            "(replacing nodes of an older profile or past maxNodeLifetimeSeconds), "
            "PowerChange (stopping or starting nodes for desiredState). The Suspended "
            "condition says what each holds back; the cluster is not Ready while a change "
            "it needs is held back. Deleting the NodeCluster, or desiredState Terminated, "
            "deletes every node whatever is suspended."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.all(p, self.exists_one(q, q == p))",
                    "message": "must not name a process twice",
                }
            ]
        },
    )
    policies: Policies = Field(default_factory=Policies, description="Behaviour policies.")
    warm_pool: WarmPool | None = Field(
        default=None,
        description=(
            "Machines created ahead of need and kept outside targetNodes (as an Auto "
            "Scaling group's warm pool): ClusterNodes labelled nodecluster.io/pool=warm, "
            "not counted in currentNodes, readyNodes nor the scale selector. Unset: no pool."
        ),
    )

    def suspends(self, process: SuspendableProcess) -> bool:
        """Whether `process` is suspended."""
        return self.suspend is not None and process in self.suspend


class NodeClusterStatus(CamelModel):
    """What the operator observed, for people, for `kubectl wait` and for GitOps health."""

    observed_generation: int | None = Field(
        default=None, description="The spec generation this status describes."
    )
    state: ClusterState | None = Field(default=None, description="Lifecycle state of the cluster.")
    message: str | None = Field(default=None, description="Human summary of the state.")
    current_nodes: int | None = Field(default=None, description="ClusterNodes that exist.")
    ready_nodes: int | None = Field(default=None, description="Nodes whose machine is running.")
    stopped_nodes: int | None = Field(default=None, description="Nodes whose machine is stopped.")
    unhealthy_nodes: int | None = Field(default=None, description="Nodes found unhealthy.")
    updated_nodes: int | None = Field(
        default=None, description="Nodes built from the current profile."
    )
    selector: str | None = Field(
        default=None, description="Label selector of the ClusterNodes (for the scale subresource)."
    )
    profile_hash: str | None = Field(default=None, description="Hash of the current profile.")
    zones: dict[str, int] | None = Field(default=None, description="Nodes per zone.")
    last_scale_time: datetime | None = Field(
        default=None, description="When the target was last changed by a scaling action."
    )
    warm_nodes: int | None = Field(
        default=None,
        description="Nodes in the warm pool (spec.warmPool), outside currentNodes (absent "
        "without a pool).",
    )
    hook_waits: dict[str, int] | None = Field(
        default=None,
        description="Nodes waiting on each lifecycle hook, by hook name (absent when none "
        "wait). A node waiting on a Launch hook is not counted ready nor updated.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Ready, Reconciling, Stalled and Degraded (kstatus semantics); Suspended "
        "while spec.suspend names a process.",
    )
    exhausted_capacity: list[ExhaustedCapacity] | None = Field(
        default=None,
        max_length=64,
        description="With policies.capacityFallback: the choices the provider refused for "
        "capacity, each tried again from its retryTime (absent when none is).",
    )
    usage: ClusterUsage | None = Field(
        default=None,
        description="Machine-hours, core-hours and estimated cost, accrued up to usage.asOf "
        "(absent until the cluster first holds a billable machine).",
    )


class NodeCluster(CamelModel):
    """The whole NodeCluster object."""

    api_version: str = Field(default=API_VERSION, description="API version.")
    kind: str = Field(default="NodeCluster", description="Kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Metadata.")
    spec: NodeClusterSpec = Field(description="Desired state.")
    status: NodeClusterStatus = Field(default_factory=NodeClusterStatus, description="Status.")
