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

    explain = (
        "The NodeProvider the machines come from: its driver creates, powers and deletes "
        "them, and its quotas limit them."
    )

    kind: Literal["NodeProvider"] = Field(
        default="NodeProvider",
        description="Kind of the object referred to: NodeProvider, the only one allowed "
        "(the default).",
    )
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="metadata.name of the NodeProvider (cluster-scoped, so no namespace). "
        "One that does not exist stalls the cluster with reason ProviderNotFound.",
    )


TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class NodeTaint(CamelModel):
    """A taint of a Kubernetes Node, as core/v1 spells it."""

    explain = (
        "A taint kept on the machine's Kubernetes Node, as in a Node's spec.taints: pods "
        "without a matching toleration are kept off the Node (or evicted, for NoExecute)."
    )

    key: str = Field(
        min_length=1,
        max_length=317,
        description="What tolerations match on, written as a label key: a name of at most "
        "63 characters with an optional DNS subdomain prefix and '/' (e.g. dedicated, "
        "example.com/gpu).",
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
        description="What tolerations with operator Equal match on, written as a label "
        "value (at most 63 characters); default empty.",
    )
    effect: TaintEffect = Field(
        description="What the taint does to pods that do not tolerate it: NoSchedule (not "
        "scheduled there), PreferNoSchedule (avoided when possible) or NoExecute (evicted too)."
    )


class NodeProfile(CamelModel):
    """What every node of the cluster looks like (Senlin's profile, CAPI's machine template)."""

    explain = (
        "What every machine of the cluster is made of: machine type, image, labels, boot "
        "data, Node labels and taints, capacity type. Changing it replaces the existing "
        "machines as policies.rollout says (each node records the profile hash it was "
        "built from)."
    )

    machine_type: str = Field(
        min_length=1,
        max_length=63,
        description="The provider's size of machine to create: an instance type (aws: "
        "m5.large), flavour or size, one the NodeProvider's buckets list when it has any.",
    )
    image: str | None = Field(
        default=None,
        max_length=253,
        description="The image (aws: an AMI id) each machine boots from, for drivers that "
        "use one. Unset: the driver's default.",
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
        description="Driver-specific, non-secret settings of each machine, as strings (e.g. "
        "disk size, network): each driver documents the keys it takes.",
    )
    user_data_secret_ref: str | None = Field(
        default=None,
        max_length=253,
        description="Name of a Secret in this namespace whose 'userData' key is handed to "
        "each machine to boot with (aws: the instance's user data). Unset: none.",
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

    explain = (
        "How ScaleOut and ScaleIn operations (NodeClusterOperation) turn their count into a "
        "new targetNodes, within minNodes and maxNodes. `kubectl scale` and edits of "
        "targetNodes set the target directly."
    )

    adjustment_type: AdjustmentType = Field(
        default="ChangeInCapacity",
        description=(
            "How an operation's count is read: ExactCapacity makes it the new target; "
            "ChangeInCapacity adds it to (ScaleOut) or takes it from (ScaleIn) the target; "
            "ChangeInPercentage does so with that percent of the current target. Default "
            "ChangeInCapacity."
        ),
    )
    min_step: int = Field(
        default=1,
        ge=1,
        description="The fewest nodes a ChangeInPercentage adjustment changes the target by, "
        "however small the percentage comes out. Default 1.",
    )
    best_effort: bool = Field(
        default=False,
        description="true: a new target beyond minNodes or maxNodes is clamped to them; "
        "false (the default): such an operation fails and changes nothing.",
    )
    cooldown_seconds: int = Field(
        default=0,
        ge=0,
        le=86400,
        description="Seconds after a scaling operation changed the target before the next "
        "one may (it waits, within its timeout); 0 to 86400, default 0 (no wait).",
    )


DeletionCriteria = Literal["OldestFirst", "YoungestFirst", "OldestProfileFirst", "Random"]


class DeletionPolicy(CamelModel):
    """Which nodes go first when the cluster shrinks (Senlin's deletion policy)."""

    explain = (
        "Which nodes go first when the cluster shrinks, and how a deleted node's machine is "
        "let go: broken nodes first, then nodes annotated nodecluster.io/delete-node, then "
        "nodes of an older profile, then the zone most above its share, then `criteria`; "
        "the machine goes after gracePeriodSeconds and, with Node integration (`run "
        "--nodes`), a drain of its Node."
    )

    criteria: DeletionCriteria = Field(
        default="Random",
        description=(
            "Order among otherwise equal nodes on scale-in: OldestFirst, YoungestFirst, "
            "OldestProfileFirst or Random (the default). Nodes annotated "
            "'nodecluster.io/protect-from-scale-in' are never chosen by a scale-in."
        ),
    )
    grace_period_seconds: int = Field(
        default=0,
        ge=0,
        le=86400,
        description="Seconds from a node's deletion before its machine is deleted, at least "
        "(a drain of its Kubernetes Node may take longer, within drainTimeoutSeconds); 0 to "
        "86400, default 0.",
    )
    drain_timeout_seconds: int = Field(
        default=600,
        ge=0,
        le=604800,
        description=(
            "With Node integration (`run --nodes`): the most seconds the Kubernetes Node of "
            "a machine being deleted is drained (cordoned, its pods evicted through the "
            "Eviction API, PodDisruptionBudgets honoured) before the machine is deleted "
            "anyway, said in a DrainTimedOut Event. Default 600; 0: machines are deleted "
            "without a drain."
        ),
    )


RecoveryAction = Literal["Recreate", "Reboot", "None"]


class HealthPolicy(CamelModel):
    """How unhealthy nodes are noticed and what is done about them."""

    explain = (
        "How unhealthy nodes are noticed (the provider's view of each machine, polled; with "
        "`run --nodes`, optionally its Node's Ready condition) and what is done about them "
        "(recovery), within maxUnhealthy."
    )

    poll_interval_seconds: int = Field(
        default=60,
        ge=5,
        le=86400,
        description="Seconds between two polls of the provider for the state of the "
        "cluster's machines (which also finds machines deleted behind the operator's back); "
        "5 to 86400, default 60.",
    )
    node_startup_timeout_seconds: int = Field(
        default=600,
        ge=10,
        description="Seconds a new machine has to be running (and, with "
        "nodeNotReadyTimeoutSeconds, its Node to be Ready) before it is unhealthy; at least "
        "10, default 600.",
    )
    unhealthy_timeout_seconds: int = Field(
        default=300,
        ge=0,
        description="Seconds a machine may be unhealthy (failed, or not running when it "
        "should) before it is remediated as recovery says; default 300.",
    )
    node_not_ready_timeout_seconds: int | None = Field(
        default=None,
        ge=0,
        le=86400,
        description=(
            "With Node integration (`run --nodes`): a running machine whose Kubernetes Node is "
            "not Ready for longer than this many seconds (at most 86400), or that has no Node "
            "nodeStartupTimeoutSeconds "
            "after its ClusterNode was created, is unhealthy (remediated as recovery says). A "
            "stopped machine is not judged by its Node; one running again after a stop or a "
            "reboot has nodeStartupTimeoutSeconds from then for its Node to be Ready. Unset: "
            "health follows the machine only."
        ),
    )
    recovery: RecoveryAction = Field(
        default="Recreate",
        description="What is done to an unhealthy node: Recreate (the default: a new machine "
        "replaces it), Reboot (asked once, standing until carried out) or None (reported "
        "only). A machine deleted at the provider is always replaced.",
    )
    max_unhealthy: IntOrPercent | None = Field(
        default=None,
        description=(
            "Stop remediating while more nodes than this are unhealthy (a number of nodes, "
            "or a percentage of targetNodes such as '40%', rounded down), to avoid a "
            "remediation storm; "
            "Degraded then says TooManyUnhealthy. Unset means no limit."
        ),
    )


class ZoneWeight(CamelModel):
    """One zone and its share of the nodes."""

    explain = "A zone nodes may be placed in, and its share of them."

    name: str = Field(
        min_length=1,
        max_length=63,
        description="A failure domain of the provider, as its driver names them (aws: an "
        "availability zone such as eu-west-1a); unique in the list.",
    )
    weight: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="Its share relative to the other zones' weights: weights 2 and 1 put "
        "two thirds of the nodes in the first zone. 1 to 1000, default 1.",
    )


class PlacementPolicy(CamelModel):
    """Where nodes go (Senlin's zone placement). Equal weights spread evenly."""

    explain = (
        "Which zone each new node goes to: the listed zone furthest below its weighted share. "
        "Scale-in keeps the spread; nodes never move between zones."
    )

    zones: list[ZoneWeight] = Field(
        default_factory=list,
        max_length=64,
        description="The zones and their weights, at most 64; equal weights spread nodes "
        "evenly. Default empty: every node goes to the provider's default zone.",
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

    explain = (
        "How nodes built from an older profile, or past maxNodeLifetimeSeconds, are "
        "replaced: how many at a time, within a budget above and below targetNodes. "
        "paused, and suspending Rollout, hold it."
    )

    strategy: RolloutStrategy = Field(
        default="RollingUpdate",
        description=(
            "RollingUpdate (the default) replaces nodes of an older profile automatically; "
            "OnDelete replaces them only as they are removed otherwise (scale-in, health, "
            "by hand). Expired nodes are replaced either way."
        ),
    )
    max_surge: IntOrPercent = Field(
        default=1,
        description="How many nodes above targetNodes may exist during a rollout: a number "
        "of nodes, or a percentage of targetNodes such as '25%' (rounded up). Default 1.",
    )
    max_unavailable: IntOrPercent = Field(
        default=0,
        description="How many nodes below targetNodes may be unavailable during a rollout: "
        "a number of nodes, or a percentage of targetNodes such as '25%' (rounded down). "
        "Default 0 (a new node is ready before an old one goes).",
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

    explain = (
        "How the cluster behaves as it changes: scaling, deletion order, health and "
        "recovery, placement, rollout, lifecycle hooks and capacity fallback. Each policy, "
        "and each field of it, has a working default."
    )

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

    # No field descriptions: each policy's model says what it decides (api/crds.py).
    scaling: ScalingPolicy = Field(default_factory=ScalingPolicy)
    deletion: DeletionPolicy = Field(default_factory=DeletionPolicy)
    health: HealthPolicy = Field(default_factory=HealthPolicy)
    placement: PlacementPolicy = Field(default_factory=PlacementPolicy)
    rollout: RolloutPolicy = Field(default_factory=RolloutPolicy)
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
        description="Unset: a node refused for capacity retries its own choice with backoff.",
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

    explain = (
        "What the owner declares: which NodeProvider, what each machine looks like "
        "(profile), how many (targetNodes, within minNodes and maxNodes), whether they run "
        "(desiredState) and the policies. The operator creates, replaces, stops and deletes "
        "machines until what exists matches it."
    )

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
        description="Immutable: machines cannot move between providers.",
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
    profile: NodeProfile
    target_nodes: int = Field(
        default=1,
        ge=0,
        le=100000,
        description="How many nodes (machines) should exist: the scale target, which "
        "`kubectl scale`, an HPA or KEDA set through the scale subresource. 0 to 100000, "
        "default 1.",
    )
    min_nodes: int | None = Field(
        default=None,
        ge=0,
        le=100000,
        description="The smallest targetNodes allowed: the API server refuses a lower "
        "target, and a ScaleIn operation below it fails (or stops at it, with "
        "policies.scaling.bestEffort). Unset: 0.",
    )
    max_nodes: int | None = Field(
        default=None,
        ge=0,
        le=100000,
        description="The largest targetNodes allowed: the API server refuses a higher "
        "target, and a ScaleOut operation above it fails (or stops at it, with "
        "policies.scaling.bestEffort). Unset: no limit but the NodeProvider's quotas.",
    )
    desired_state: DesiredState = Field(
        default="Running",
        description=(
            "Running (the default) keeps machines on; Stopped keeps them but powered off; "
            "Terminated deletes every machine for good (final: the API server refuses a "
            "change back)."
        ),
    )
    paused: bool = Field(
        default=False,
        description="true: the operator reports status but changes nothing (no machine is "
        "created, deleted, powered or replaced); default false.",
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
    policies: Policies = Field(default_factory=Policies)
    warm_pool: WarmPool | None = Field(
        default=None,
        description="Unset: no pool; a scale-out creates every node it needs.",
    )

    def suspends(self, process: SuspendableProcess) -> bool:
        """Whether `process` is suspended."""
        return self.suspend is not None and process in self.suspend


class NodeClusterStatus(CamelModel):
    """What the operator observed, for people, for `kubectl wait` and for GitOps health."""

    explain = (
        "What the operator last observed of the cluster, written by it alone: state, node "
        "counts, conditions (kubectl wait, Flux, Argo CD) and usage. Fields it has not "
        "written yet are absent."
    )

    observed_generation: int | None = Field(
        default=None,
        description="The metadata.generation of the spec this status describes: lower than "
        "the generation while a change is not looked at yet.",
    )
    state: ClusterState | None = Field(
        default=None,
        description="Where the cluster is in its lifecycle: Init, Deploying, Deployed, "
        "PartlyDeployed, Scaling, Updating, Recovering, Stopping, Stopped, Starting, "
        "Terminating, Terminated (final), Empty or Error.",
    )
    message: str | None = Field(
        default=None, description="The state in a sentence for people, with what it waits on."
    )
    current_nodes: int | None = Field(
        default=None,
        description="How many ClusterNodes the cluster has, whatever their state (the scale "
        "subresource's replicas).",
    )
    ready_nodes: int | None = Field(
        default=None,
        description="How many nodes have a machine that is running and healthy (and not "
        "waiting on a Launch hook).",
    )
    stopped_nodes: int | None = Field(
        default=None, description="How many nodes have a machine powered off (kept)."
    )
    unhealthy_nodes: int | None = Field(
        default=None, description="How many nodes the health policy finds unhealthy now."
    )
    updated_nodes: int | None = Field(
        default=None,
        description="How many nodes are built from the current profile (the rest wait for "
        "the rollout).",
    )
    selector: str | None = Field(
        default=None,
        description="Label selector matching the cluster's ClusterNodes "
        "(nodecluster.io/cluster=<name>), for the scale subresource and HPA.",
    )
    profile_hash: str | None = Field(
        default=None,
        description="Hash of spec.profile as last reconciled; nodes with another "
        "spec.profileHash are outdated.",
    )
    zones: dict[str, int] | None = Field(
        default=None, description="How many nodes each zone holds, by zone name."
    )
    last_scale_time: datetime | None = Field(
        default=None,
        description="When a scaling operation last changed targetNodes (the cooldown counts "
        "from it).",
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
        description="Ready (converged for the current generation), Reconciling, Stalled (a "
        "person must act) and Degraded (works, not fully), as kstatus defines them; "
        "Suspended while spec.suspend names a process; CapacityFallback while a choice is "
        "exhausted.",
    )
    exhausted_capacity: list[ExhaustedCapacity] | None = Field(
        default=None,
        max_length=64,
        description="With policies.capacityFallback: the choices the provider refused for "
        "capacity, each tried again from its retryTime (absent when none is).",
    )
    usage: ClusterUsage | None = Field(
        default=None,
        description="Absent until the cluster first holds a billable machine.",
    )


class NodeCluster(CamelModel):
    """The whole NodeCluster object."""

    api_version: str = Field(default=API_VERSION, description="API version.")
    kind: str = Field(default="NodeCluster", description="Kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Metadata.")
    spec: NodeClusterSpec = Field(description="Desired state.")
    status: NodeClusterStatus = Field(default_factory=NodeClusterStatus, description="Status.")
