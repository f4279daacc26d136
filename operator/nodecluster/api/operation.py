"""NodeClusterOperation: a one-off, auditable action on a cluster.

Senlin's actions and CycleCloud's node operations as a Kubernetes object: the spec is
immutable (an operation is a record of intent), and the status is the audit trail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from nodecluster import API_VERSION
from nodecluster.api.adopt import AdoptionReport, AdoptSelection
from nodecluster.api.common import DNS_SUBDOMAIN, CamelModel, Condition, ObjectMeta

OperationAction = Literal[
    "Check",
    "Recover",
    "ScaleOut",
    "ScaleIn",
    "RemoveNodes",
    "ReplaceNodes",
    "StopNodes",
    "StartNodes",
    "RebootNodes",
    "Adopt",
]

OperationPhase = Literal["Pending", "Running", "Succeeded", "Failed"]

DEFAULT_TIMEOUT_SECONDS = 1800
"""How long an operation without `spec.timeoutSeconds` may take, from its start.

Three times the health policy's default `nodeStartupTimeoutSeconds` (600): a scale step
waits for machines that take minutes to create (cloud VMs one to five, bare metal that
PXE-boots ten or more), and a machine that never comes up is declared unhealthy after 600 s
and recreated; 1800 s lets a step live through one such recreation with time to spare,
while a stuck operation still frees its cluster's queue within half an hour. The operator
applies it (not a schema default), so an operation's stored spec stays what its author
wrote."""

MAX_TIMEOUT_SECONDS = 7 * 86400
"""A week: beyond any real step, and far below what would overflow a timestamp (an
operation the operator cannot compute a deadline for would block its cluster for good)."""


class LabelSelector(CamelModel):
    """A Kubernetes label selector (matchLabels only, for clarity in audit records)."""

    explain = "Chooses ClusterNodes by their labels (matchLabels only)."

    match_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels, key to value, that a chosen ClusterNode must all carry (its "
        "profile's labels, and nodecluster.io/cluster). Default empty: no criterion.",
    )


class NodeFilter(CamelModel):
    """Which nodes a node-targeting action applies to; all given criteria must match."""

    explain = (
        "Which of the cluster's nodes the action applies to: a node is chosen when it "
        "matches every criterion given. RemoveNodes, ReplaceNodes, StopNodes, StartNodes and "
        "RebootNodes need at least one; Check and Recover without any act on every node."
    )

    selector: LabelSelector | None = Field(default=None)
    names: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="metadata.name of ClusterNodes to choose, at most 1000. Default empty: "
        "no criterion.",
    )
    provider_ids: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="Provider ids (a ClusterNode's status.providerId, aws: instance ids) of "
        "machines to choose, at most 1000. Default empty: no criterion.",
    )
    addresses: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="IP addresses or DNS names (a ClusterNode's status.addresses) of "
        "machines to choose, at most 1000. Default empty: no criterion.",
    )


NODE_ACTIONS: tuple[OperationAction, ...] = (
    "RemoveNodes",
    "ReplaceNodes",
    "StopNodes",
    "StartNodes",
    "RebootNodes",
)
"""The actions that act only on the nodes `spec.nodes` chooses: without a criterion they
would act on every node, which only Check and Recover do (they change nothing that is
well, so "every node" is a safe default for them, and for these it never is)."""

NODES_REQUIRED = (
    f"{', '.join(NODE_ACTIONS[:-1])} and {NODE_ACTIONS[-1]} act only on the nodes spec.nodes "
    "chooses: give names, providerIds, addresses or selector.matchLabels (only Check and "
    "Recover act on every node)"
)

_CHOOSES_NODES = " || ".join(
    [
        "(has(self.nodes.names) && size(self.nodes.names) > 0)",
        "(has(self.nodes.providerIds) && size(self.nodes.providerIds) > 0)",
        "(has(self.nodes.addresses) && size(self.nodes.addresses) > 0)",
        "(has(self.nodes.selector) && has(self.nodes.selector.matchLabels)"
        " && size(self.nodes.selector.matchLabels) > 0)",
    ]
)


class NodeClusterOperationSpec(CamelModel):
    """The action requested. Immutable once created."""

    explain = (
        "The action requested: on which cluster, what, and on which nodes. Immutable once "
        "created: create a new operation to act again."
    )

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "spec is immutable: create a new operation"},
                {
                    "rule": f"!(self.action in {list(NODE_ACTIONS)}) "
                    f"|| (has(self.nodes) && ({_CHOOSES_NODES}))",
                    "message": NODES_REQUIRED,
                    "fieldPath": ".nodes",
                    "reason": "FieldValueRequired",
                },
                # Adopt's: spec.adopt with Adopt and only with it; dryRun only where it
                # is honoured (one ignored would act where a preview was asked for).
                {
                    "rule": "self.action != 'Adopt' || has(self.adopt)",
                    "message": "Adopt needs spec.adopt: the machines' providerIds, or tags "
                    "they carry",
                    "fieldPath": ".adopt",
                    "reason": "FieldValueRequired",
                },
                {
                    "rule": "!has(self.adopt) || self.action == 'Adopt'",
                    "message": "spec.adopt is only for action Adopt",
                    "fieldPath": ".adopt",
                },
                {
                    "rule": "!has(self.dryRun) || !self.dryRun || self.action == 'Adopt'",
                    "message": "spec.dryRun is only supported by action Adopt",
                    "fieldPath": ".dryRun",
                },
            ]
        }
    }

    cluster_name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="metadata.name of the NodeCluster, in the operation's namespace, to act "
        "on. Operations on one cluster run one at a time, in creation order.",
    )
    action: OperationAction = Field(
        description="What to do: Check (ask the provider about the nodes), Recover (apply "
        "the health policy's recovery to broken ones), ScaleOut or ScaleIn (change "
        "targetNodes by count), RemoveNodes (delete them and lower the target), "
        "ReplaceNodes (delete them; new ones take their place), StopNodes, StartNodes, "
        "RebootNodes, or Adopt (take over machines made without the operator: spec.adopt)."
    )
    count: int | None = Field(
        default=None,
        ge=0,
        description="For ScaleOut and ScaleIn: how much to change targetNodes by, read as "
        "the cluster's policies.scaling.adjustmentType says (nodes, a percentage, or the "
        "exact new target). Unset: 1.",
    )
    nodes: NodeFilter | None = Field(default=None)
    adopt: AdoptSelection | None = Field(
        default=None,
        description=(
            "For Adopt: the machines at the cluster's NodeProvider to take over, by "
            "providerIds or by tags (exactly one)."
        ),
    )
    dry_run: bool | None = Field(
        default=None,
        description=(
            "For Adopt: only look and report (status.adoption) what would be adopted, as "
            "which nodes, and what is refused and why; nothing else is written. Default "
            "false."
        ),
    )
    timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TIMEOUT_SECONDS,
        description=(
            "Seconds from the operation's start (not its creation: it may wait behind "
            "earlier operations of its cluster) after which it fails if it has not ended; "
            f"{DEFAULT_TIMEOUT_SECONDS} when absent. A timeout ends the operation; it does "
            "not undo what it already asked for."
        ),
    )


class NodeResult(CamelModel):
    """What happened to one node."""

    explain = "What the operation did to one chosen node, and how that ended."

    name: str = Field(description="metadata.name of the ClusterNode acted on.")
    result: Literal["Pending", "OK", "Error"] = Field(
        description="Pending while the node is being acted on, then OK or Error."
    )
    message: str = Field(
        default="",
        description="What happened, in a sentence for people (e.g. the provider's error); "
        "default empty.",
    )


class NodeClusterOperationStatus(CamelModel):
    """The audit trail of the operation."""

    explain = (
        "The operation's audit trail, written by the operator alone: its phase, when it "
        "started and ended, what it changed, and a result per node."
    )

    phase: OperationPhase | None = Field(
        default=None,
        description="Pending (waiting its turn), Running, Succeeded or Failed (both final).",
    )
    message: str | None = Field(
        default=None,
        description="How it is going or how it ended, in a sentence for people.",
    )
    start_time: datetime | None = Field(
        default=None,
        description="When it started running (its turn came); spec.timeoutSeconds counts from it.",
    )
    completion_time: datetime | None = Field(
        default=None, description="When it succeeded or failed."
    )
    cluster_generation: int | None = Field(
        default=None,
        description="For ScaleOut and ScaleIn: the NodeCluster's metadata.generation after "
        "this operation changed its targetNodes.",
    )
    previous_target: int | None = Field(
        default=None, description="For ScaleOut and ScaleIn: targetNodes before the operation."
    )
    new_target: int | None = Field(
        default=None, description="For ScaleOut and ScaleIn: targetNodes the operation set."
    )
    reboot_requested_at: datetime | None = Field(
        default=None,
        description=(
            "For RebootNodes: the reboot request written on each node "
            "(spec.rebootRequestedAt), recorded before it is written; a node has rebooted "
            "for this operation once its status.lastRebootTime is at or after it."
        ),
    )
    adoption: AdoptionReport | None = Field(
        default=None,
        description=(
            "For Adopt: the machines matched, which are (or would be) adopted as which "
            "nodes, and which are refused and why."
        ),
    )
    nodes: list[NodeResult] = Field(
        default_factory=list,
        max_length=10000,
        description="One result for each node the operation chose.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Stalled (a step was refused: a person must act) and Degraded (a step "
        "is being retried) while a step fails on the way; the phase stays meanwhile.",
    )


class NodeClusterOperation(CamelModel):
    """The whole NodeClusterOperation object."""

    api_version: str = Field(default=API_VERSION, description="API version.")
    kind: str = Field(default="NodeClusterOperation", description="Kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Metadata.")
    spec: NodeClusterOperationSpec = Field(description="The requested action.")
    status: NodeClusterOperationStatus = Field(
        default_factory=NodeClusterOperationStatus, description="Status."
    )
