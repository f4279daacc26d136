"""Building blocks shared by every kind.

Models use camelCase on the wire (as Kubernetes does) and snake_case in Python. Every
field carries a description because the CRD generator turns them into `kubectl explain`
text: a field without one is a field users must guess about.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""RFC 1123 label: what Kubernetes accepts as a name of most things."""

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class CamelModel(BaseModel):
    """Base of every API model: camelCase aliases, tolerant of fields added by newer versions."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_attribute_docstrings=False,
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready form Kubernetes expects: aliases, no unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


IntOrPercent = Annotated[
    int | str,
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "x-kubernetes-validations": [
                {
                    "rule": "type(self) == int ? self >= 0 : self.matches('^[0-9]+%$')",
                    "message": "must be a non-negative whole number or a percentage such as '25%'",
                }
            ],
        }
    ),
]
"""A count or a percentage of the cluster's target, as in Kubernetes' maxSurge."""

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(CamelModel):
    """A kstatus-style condition, as `kubectl wait --for=condition=...` and Flux read them."""

    type: str = Field(description="Condition type: Ready, Reconciling, Stalled, Degraded, ...")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        default="",
        description="One CamelCase word a machine can switch on (e.g. QuotaExceeded).",
    )
    message: str = Field(default="", description="What a person needs to know, in a sentence.")
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this condition was computed for."
    )
    last_transition_time: datetime | None = Field(
        default=None, description="When status last changed (not when it was last computed)."
    )


class OwnerReference(CamelModel):
    """The subset of metadata.ownerReferences the operator reads and writes."""

    api_version: str = Field(description="API version of the owner.")
    kind: str = Field(description="Kind of the owner.")
    name: str = Field(description="Name of the owner.")
    uid: str = Field(description="UID of the owner.")
    controller: bool | None = Field(default=None, description="Whether the owner manages it.")
    block_owner_deletion: bool | None = Field(default=None, description="Foreground deletion.")


class ObjectMeta(CamelModel):
    """The subset of Kubernetes object metadata the operator relies on."""

    name: str = Field(default="", description="Object name.")
    namespace: str | None = Field(default=None, description="Namespace, for namespaced kinds.")
    uid: str = Field(default="", description="Server-assigned identity.")
    generation: int = Field(default=0, description="Bumped by the server on every spec change.")
    resource_version: str = Field(default="", description="Optimistic-concurrency token.")
    creation_timestamp: datetime | None = Field(default=None, description="When created.")
    deletion_timestamp: datetime | None = Field(default=None, description="Set once deleting.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")
    finalizers: list[str] = Field(default_factory=list, description="Finalizers.")
    owner_references: list[OwnerReference] = Field(
        default_factory=list, description="Owners (for garbage collection)."
    )


class LocalObjectRef(CamelModel):
    """A reference to a named object (namespace implied or given)."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the object."
    )


class SecretRef(CamelModel):
    """Where a Secret lives. Only the reference is stored; the values never leave the Secret."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the Secret."
    )
    namespace: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description=(
            "Namespace of the Secret (NodeProviders are cluster-scoped, so it is explicit)."
        ),
    )
