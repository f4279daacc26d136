"""NodeProvider: where machines come from.

Cluster-scoped because a provider account is shared infrastructure, usually owned by a
platform team, while NodeClusters belong to the teams that use it. Credentials are only
ever referenced (a Secret), so a NodeProvider can live in Git without leaking anything.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from nodecluster import API_VERSION
from nodecluster.api.common import DNS_LABEL, CamelModel, Condition, ObjectMeta, SecretRef


class Quotas(CamelModel):
    """Hard limits the operator enforces before it asks the provider for anything."""

    max_nodes: int | None = Field(
        default=None, ge=0, description="Most machines all NodeClusters together may hold here."
    )
    max_cores: int | None = Field(
        default=None, ge=0, description="Most CPU cores all machines together may hold here."
    )


class Bucket(CamelModel):
    """One zone x machine type pair the provider offers, with what one machine of it costs."""

    zone: str = Field(min_length=1, max_length=63, description="Zone (failure domain) name.")
    machine_type: str = Field(
        min_length=1, max_length=63, description="Machine type (flavour, instance type, size)."
    )
    cores: int = Field(default=1, ge=1, description="CPU cores of one machine of this type.")
    memory_mib: int = Field(default=1024, ge=1, description="Memory of one machine, in MiB.")
    max_nodes: int | None = Field(
        default=None, ge=0, description="Most machines of this bucket; unset means no own limit."
    )
    hourly_cost: float | None = Field(
        default=None, ge=0, description="Price of one machine-hour, for usage and cost reports."
    )


class NodeProviderSpec(CamelModel):
    """How to reach a provider and what may be taken from it."""

    driver: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description=(
            "Name of the driver, as registered in the Python entry-point group "
            "'nodecluster.providers' (built in: 'simulator')."
        ),
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Driver settings (non-secret). Each driver documents its keys; unknown keys are "
            "reported in the Ready condition."
        ),
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    credentials_secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret whose keys are handed to the driver as credentials. Never logged.",
    )
    quotas: Quotas = Field(default_factory=Quotas, description="Limits across all NodeClusters.")
    call_timeout_seconds: int = Field(
        default=120,
        ge=1,
        le=3600,
        description=(
            "How long one call to the provider (create, delete, get, list, start, stop, "
            "reboot) may take. A call still unanswered then is abandoned and retried with "
            "backoff, and the node reports it; safe, because every call is idempotent."
        ),
    )
    buckets: list[Bucket] = Field(
        default_factory=list,
        max_length=256,
        description=(
            "Zone x machine type pairs offered. Empty means the driver decides what exists."
        ),
    )


ProviderPhase = Literal["Ready", "NotReady"]


class InstallationView(CamelModel):
    """What one operator installation sees of the provider."""

    observed_generation: int | None = Field(default=None, description="Generation last checked.")
    phase: ProviderPhase | None = Field(default=None, description="Ready or NotReady.")
    nodes: int | None = Field(
        default=None, description="Machines this installation holds through the provider."
    )
    cores: int | None = Field(
        default=None, description="Cores this installation holds through the provider."
    )
    reason: str | None = Field(default=None, description="Why it is (not) Ready, in one word.")
    message: str | None = Field(default=None, description="Why it is (not) Ready, for people.")


class NodeProviderStatus(CamelModel):
    """What the operator last found out about the provider.

    A NodeProvider is cluster-scoped, so every operator installation on the API server
    reconciles it. Each writes only its own entry of `installations` (a map: a merge patch
    replaces one key, leaving the others), so two never rewrite each other's view. The
    top-level fields are those of the installation with the smallest id among the
    entries (the only one, in the usual single-installation case).
    """

    observed_generation: int | None = Field(default=None, description="Generation last checked.")
    phase: ProviderPhase | None = Field(default=None, description="Ready or NotReady.")
    nodes: int | None = Field(default=None, description="Machines held through this provider.")
    cores: int | None = Field(default=None, description="Cores held through this provider.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready and Stalled conditions.", max_length=16
    )
    installations: dict[str, InstallationView] = Field(
        default_factory=dict,
        description="What each operator installation sees, by installation id "
        "(`run --installation-id`); each installation writes only its own entry.",
        max_length=64,
    )


class NodeProvider(CamelModel):
    """The whole NodeProvider object."""

    api_version: str = Field(default=API_VERSION, description="API version.")
    kind: str = Field(default="NodeProvider", description="Kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Metadata.")
    spec: NodeProviderSpec = Field(description="Desired configuration.")
    status: NodeProviderStatus = Field(default_factory=NodeProviderStatus, description="Status.")
