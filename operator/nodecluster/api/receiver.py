"""NodeClusterReceiver: Senlin's receiver, declaratively.

A receiver names a cluster, an action and the action's parameters; the operator serves an
HTTP endpoint (`run --receiver-address`, off by default) where a POST carrying the
receiver's bearer token creates a NodeClusterOperation with them. It is how an alert
(Alertmanager's webhook) or any script that can only make an HTTP request scales or
repairs a cluster without Kubernetes credentials of its own.

The parameters are the operation's own fields (the same `FieldInfo`s: one definition,
one description, one set of bounds), so a receiver can ask for nothing an operation
could not; only the actions that make sense without a person choosing nodes are offered.
The token never appears in the object: only where it lives (`tokenSecretRef`).
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import Field

from nodecluster import API_VERSION
from nodecluster.api.common import DNS_SUBDOMAIN, CamelModel, Condition, ObjectMeta
from nodecluster.api.operation import (
    NodeClusterOperationSpec,
    NodeFilter,
)

ReceiverAction = Literal["ScaleOut", "ScaleIn", "Recover", "Check"]
"""What a receiver may do: the operation actions that need no nodes chosen by a person
(Check and Recover look at every node unless `nodes` narrows them)."""

RECEIVER_ACTIONS: tuple[ReceiverAction, ...] = get_args(ReceiverAction)
SCALING_ACTIONS: tuple[ReceiverAction, ...] = ("ScaleOut", "ScaleIn")
NODE_FILTER_ACTIONS: tuple[ReceiverAction, ...] = ("Check", "Recover")


def _operation_field(name: str) -> Any:
    """The NodeClusterOperationSpec field `name` (a copy: pydantic completes each field
    info in place for its model), for a receiver's field that is the same parameter."""
    return copy.copy(NodeClusterOperationSpec.model_fields[name])


SECRET_KEY = r"^[-._a-zA-Z0-9]+$"
"""What Kubernetes accepts as a key of a Secret's data."""


class SecretKeyRef(CamelModel):
    """A key of a Secret in the receiver's own namespace."""

    explain = (
        "Where the receiver's bearer token is: a key of a Secret in the receiver's namespace "
        "(the operator may read it only where its RBAC allows: the chart's "
        "rbac.secretNamespaces)."
    )

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Name of the Secret, in the receiver's namespace.",
    )
    key: str = Field(
        default="token",
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY,
        description=(
            "The key whose value is the bearer token (surrounding whitespace, such as the "
            "newline of a file, is ignored). Default 'token'."
        ),
    )


class NodeClusterReceiverSpec(CamelModel):
    """The cluster, the action and its parameters, and where the token is."""

    explain = (
        "What a request to the receivers' endpoint (POST /receivers/<namespace>/<name>, "
        "`run --receiver-address`) with the right bearer token creates: a "
        "NodeClusterOperation of this action, with these parameters, on this cluster; at "
        "most once per the cluster's policies.scaling.cooldownSeconds."
    )

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": f"!has(self.count) || self.action in {list(SCALING_ACTIONS)}",
                    "message": "count is the adjustment of ScaleOut and ScaleIn only",
                    "fieldPath": ".count",
                    "reason": "FieldValueForbidden",
                },
                {
                    "rule": f"!has(self.nodes) || self.action in {list(NODE_FILTER_ACTIONS)}",
                    "message": "nodes narrows Check and Recover only",
                    "fieldPath": ".nodes",
                    "reason": "FieldValueForbidden",
                },
            ]
        }
    }

    cluster_name: str = _operation_field("cluster_name")
    action: ReceiverAction = Field(
        description=(
            "What the operation it creates does: ScaleOut, ScaleIn, Recover or Check "
            "(see NodeClusterOperation)."
        )
    )
    count: int | None = _operation_field("count")
    nodes: NodeFilter | None = _operation_field("nodes")
    timeout_seconds: int | None = _operation_field("timeout_seconds")
    token_secret_ref: SecretKeyRef = Field(
        description=(
            "The Secret key holding the bearer token a caller must send "
            "(Authorization: Bearer <token>). Read when a request comes (cached a few "
            "seconds at most), so a rotated Secret takes effect by itself."
        )
    )

    def operation_spec(self) -> dict[str, object]:
        """The spec of the NodeClusterOperation this receiver creates."""
        spec = NodeClusterOperationSpec(
            cluster_name=self.cluster_name,
            action=self.action,
            count=self.count,
            nodes=self.nodes,
            timeout_seconds=self.timeout_seconds,
        )
        return spec.wire()


class ReceiverCaller(CamelModel):
    """Who asked, as far as the request says: nothing of it is authenticated but the token."""

    explain = (
        "Who sent a request, as the request says (only the token is checked): recorded in "
        "status and in the annotations of the operation it created."
    )

    address: str | None = Field(default=None, description="The peer address of the request.")
    forwarded_for: str | None = Field(
        default=None,
        description="The X-Forwarded-For header, as sent (set by an Ingress or proxy; unverified).",
    )
    user_agent: str | None = Field(default=None, description="The User-Agent header.")
    alertmanager_receiver: str | None = Field(
        default=None, description="Alertmanager's receiver name, from its webhook payload."
    )
    group_key: str | None = Field(
        default=None, description="Alertmanager's groupKey: which alert group fired."
    )
    alerts: list[str] | None = Field(
        default=None,
        max_length=20,
        description="The alertname of each firing alert of the payload (at most 20).",
    )


class ReceiverTrigger(CamelModel):
    """One request that created an operation."""

    explain = "The last request that created an operation: when, which, and who sent it."

    time: datetime = Field(description="When the request was accepted.")
    operation: str = Field(description="The NodeClusterOperation it created.")
    caller: ReceiverCaller = Field(
        default_factory=ReceiverCaller, description="Who sent the request."
    )


class ReceiverRateLimited(CamelModel):
    """One request refused because the cluster's scaling cooldown had not passed."""

    explain = (
        "The last request refused (429) because the cluster's scaling cooldown had not "
        "passed: nothing was created for it."
    )

    time: datetime = Field(description="When the request was refused.")
    retry_after_seconds: int = Field(
        description="Seconds until the cooldown allowed the next trigger, as answered in "
        "Retry-After."
    )
    caller: ReceiverCaller = Field(
        default_factory=ReceiverCaller, description="Who sent the request."
    )


class ReceiverCounts(CamelModel):
    """Authenticated requests since the receiver was created, by what became of them."""

    explain = "Authenticated requests since the receiver was created, by what became of them."

    triggered: int = Field(default=0, description="Requests that created an operation. Default 0.")
    rate_limited: int = Field(
        default=0, description="Requests refused (429) within the scaling cooldown. Default 0."
    )
    resolved: int = Field(
        default=0,
        description="Alertmanager notifications of resolved alerts (nothing done). Default 0.",
    )


class NodeClusterReceiverStatus(CamelModel):
    """What the receiver did last, and whether it can be used."""

    explain = (
        "What the receiver did last and whether it can be used, written by the operator "
        "while it serves receivers (`run --receiver-address`)."
    )

    observed_generation: int | None = Field(
        default=None, description="The spec generation the conditions describe."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=8,
        description=(
            "Ready: True when the token Secret and key and the cluster exist; False with "
            "reason SecretNotFound, SecretNotReadable, SecretKeyNotFound or ClusterNotFound."
        ),
    )
    last_triggered: ReceiverTrigger | None = Field(
        default=None, description="The last request that created an operation."
    )
    pending_operation: str | None = Field(
        default=None,
        description=(
            "An operation decided on and recorded, not yet known to be created (set for the "
            "moment between the two; a retry or the next reconcile creates it)."
        ),
    )
    last_rate_limited: ReceiverRateLimited | None = Field(
        default=None, description="The last request refused within the scaling cooldown."
    )
    counts: ReceiverCounts = Field(
        default_factory=ReceiverCounts, description="Authenticated requests, by outcome."
    )


class NodeClusterReceiver(CamelModel):
    """The whole NodeClusterReceiver object."""

    api_version: str = Field(default=API_VERSION, description="API version.")
    kind: str = Field(default="NodeClusterReceiver", description="Kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Metadata.")
    spec: NodeClusterReceiverSpec = Field(description="Cluster, action and token.")
    status: NodeClusterReceiverStatus = Field(
        default_factory=NodeClusterReceiverStatus, description="Status."
    )
