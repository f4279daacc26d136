"""NodeProvider: where machines come from.

Cluster-scoped because a provider account is shared infrastructure, usually owned by a
platform team, while NodeClusters belong to the teams that use it. Credentials are only
ever referenced (a Secret), so a NodeProvider can live in Git without leaking anything.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from nodecluster import API_VERSION, GROUP
from nodecluster.api.common import DNS_LABEL, CamelModel, Condition, ObjectMeta, SecretRef
from nodecluster.api.usage import ProviderUsage

IN_USE_DOMAIN = f"in-use.{GROUP}"
"""The prefix of the finalizers by which operator installations hold NodeProviders."""


def provider_finalizer(installation: str) -> str:
    """The finalizer by which installation `installation` holds a NodeProvider it uses.

    A NodeProvider deleted while NodeClusters or ClusterNodes use it would leave their
    machines without a way to be deleted (and their deletion stuck), so each installation
    holds the providers it uses with a finalizer of its own: several installations may
    share one API server, and one's clusters going must not release another's hold.

    The installation id is the name part: `run --installation-id` takes 1-63 letters,
    digits, '.', '_' and '-', alphanumeric at both ends, which is exactly a qualified
    name's name part, so every valid id makes a finalizer the API server accepts. The
    prefix, a subdomain of the API group, keeps these apart from anyone else's.
    """
    return f"{IN_USE_DOMAIN}/{installation}"


class Quotas(CamelModel):
    """Hard limits the operator enforces before it asks the provider for anything."""

    max_nodes: int | None = Field(
        default=None, ge=0, description="Most machines all NodeClusters together may hold here."
    )
    max_cores: int | None = Field(
        default=None, ge=0, description="Most CPU cores all machines together may hold here."
    )
    max_hourly_cost: float | None = Field(
        default=None,
        ge=0,
        description="Most cost per hour all machines together may hold here, priced by the "
        "buckets' hourlyCost (stopped machines count: they may be started without a create).",
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
            "'nodecluster.providers' (built in: 'simulator', 'aws' with the aws extra, 'kwok')."
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

LISTED_USERS = 10
"""How many users a NodeProvider's status names per installation: a provider may serve
thousands of clusters, and the status (one object, rewritten as they come and go) must
stay small. The counts are always whole."""


class ProviderUser(CamelModel):
    """One object that uses the provider."""

    kind: Literal["NodeCluster", "ClusterNode"] = Field(description="NodeCluster or ClusterNode.")
    namespace: str = Field(description="Its namespace.")
    name: str = Field(description="Its name.")


class ProviderUsers(CamelModel):
    """What uses the provider, as one installation sees it: what its finalizer holds it for."""

    node_clusters: int = Field(
        default=0, ge=0, description="NodeClusters of this installation that name the provider."
    )
    cluster_nodes: int = Field(
        default=0,
        ge=0,
        description="ClusterNodes that name it outside those NodeClusters: made by hand, or "
        "left by a NodeCluster removed without its finalizer.",
    )
    first: list[ProviderUser] = Field(
        default_factory=list,
        max_length=LISTED_USERS,
        description=f"The first {LISTED_USERS} of them, NodeClusters first, by namespace and name.",
    )


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
    reason: str | None = Field(
        default=None,
        description="Why it is (not) Ready, in one word; ProviderInUse while it is being "
        "deleted and this installation still holds it.",
    )
    message: str | None = Field(
        default=None,
        description="Why it is (not) Ready, or why its deletion waits, for people.",
    )
    users: ProviderUsers | None = Field(
        default=None,
        description="What of this installation uses the provider (absent: nothing); while "
        f"anything does, the finalizer {IN_USE_DOMAIN}/<installation id> holds it.",
    )
    usage: ProviderUsage | None = Field(
        default=None,
        description="Usage and cost of this installation's clusters here, deleted ones "
        "included (absent until one has held a billable machine).",
    )


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
    usage: ProviderUsage | None = Field(
        default=None, description="Usage and cost, as in the installation's entry."
    )
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
