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

    explain = (
        "Limits on what this installation's NodeClusters (and hand-made ClusterNodes) may "
        "hold through the provider together, checked before anything is asked of it, "
        "counting machines held (stopped ones too) and creates in flight. A cluster over a "
        "limit creates only what fits and says Stalled (QuotaExceeded, CostLimitExceeded). "
        "Each limit unset: none."
    )

    max_nodes: int | None = Field(
        default=None,
        ge=0,
        description="The most machines all NodeClusters together may hold here.",
    )
    max_cores: int | None = Field(
        default=None,
        ge=0,
        description="The most CPU cores all machines together may hold here, each machine "
        "counted with its bucket's cores (1 for a machine type no bucket names).",
    )
    max_hourly_cost: float | None = Field(
        default=None,
        ge=0,
        description="The most all machines together may cost per hour, in the currency of "
        "the buckets' hourlyCost, each machine priced by its bucket (the dearest zone of its "
        "type while its zone is unknown). Stopped machines count: they may be started "
        "without a create.",
    )


class Bucket(CamelModel):
    """One zone x machine type pair the provider offers, with what one machine of it costs."""

    explain = (
        "One zone x machine type pair the provider offers: what one machine of it has "
        "(cores, memory), what it costs, and how many may exist."
    )

    zone: str = Field(
        min_length=1,
        max_length=63,
        description="A failure domain of the provider, as its driver names them (aws: an "
        "availability zone such as eu-west-1a).",
    )
    machine_type: str = Field(
        min_length=1,
        max_length=63,
        description="The provider's size of machine (instance type, flavour), as profiles "
        "name it in machineType.",
    )
    cores: int = Field(
        default=1,
        ge=1,
        description="CPU cores of one machine of this type, counted by quotas.maxCores and "
        "in core-hours; default 1.",
    )
    memory_mib: int = Field(
        default=1024, ge=1, description="Memory of one machine, in MiB; default 1024."
    )
    max_nodes: int | None = Field(
        default=None,
        ge=0,
        description="The most machines of this zone and type; unset means no limit of its own.",
    )
    hourly_cost: float | None = Field(
        default=None,
        ge=0,
        description="What one machine costs per hour, in any currency (the same in every "
        "bucket): usage, cost and quotas.maxHourlyCost are counted in it. Unset: machines "
        "here cost nothing.",
    )


class NodeProviderSpec(CamelModel):
    """How to reach a provider and what may be taken from it."""

    explain = (
        "How to reach the provider (driver, its settings, credentials) and what may be "
        "taken from it (quotas, buckets)."
    )

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
        description="Its keys are handed to the driver as credentials (aws: "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY). Unset: the driver's own (aws: the "
        "operator's environment or IAM role).",
    )
    quotas: Quotas = Field(default_factory=Quotas)
    call_timeout_seconds: int = Field(
        default=120,
        ge=1,
        le=3600,
        description=(
            "Seconds one call to the provider (create, delete, get, list, start, stop, "
            "reboot) may take; 1 to 3600, default 120. A call still unanswered then is "
            "abandoned and retried with backoff, and the node reports it; safe, because "
            "every call is idempotent."
        ),
    )
    buckets: list[Bucket] = Field(
        default_factory=list,
        max_length=256,
        description=(
            "The zone x machine type pairs offered, with their cores, memory and price, at "
            "most 256. Default empty: the driver decides what exists, and nothing is priced."
        ),
    )


ProviderPhase = Literal["Ready", "NotReady"]

LISTED_USERS = 10
"""How many users a NodeProvider's status names per installation: a provider may serve
thousands of clusters, and the status (one object, rewritten as they come and go) must
stay small. The counts are always whole."""


class ProviderUser(CamelModel):
    """One object that uses the provider."""

    explain = "One NodeCluster or ClusterNode that uses the provider."

    kind: Literal["NodeCluster", "ClusterNode"] = Field(
        description="Whether the user is a NodeCluster or a ClusterNode made outside one."
    )
    namespace: str = Field(description="metadata.namespace of the NodeCluster or ClusterNode.")
    name: str = Field(description="metadata.name of the NodeCluster or ClusterNode.")


class ProviderUsers(CamelModel):
    """What uses the provider, as one installation sees it: what its finalizer holds it for."""

    explain = (
        "What of one installation uses the provider: while anything does, its finalizer "
        "keeps the provider from being deleted."
    )

    node_clusters: int = Field(
        default=0,
        ge=0,
        description="How many NodeClusters of this installation name the provider (default 0).",
    )
    cluster_nodes: int = Field(
        default=0,
        ge=0,
        description="How many ClusterNodes name it outside those NodeClusters: made by hand, "
        "or left by a NodeCluster removed without its finalizer (default 0).",
    )
    first: list[ProviderUser] = Field(
        default_factory=list,
        max_length=LISTED_USERS,
        description=f"The first {LISTED_USERS} of them, NodeClusters first, by namespace and name.",
    )


class InstallationView(CamelModel):
    """What one operator installation sees of the provider."""

    explain = (
        "What one operator installation sees of the provider: whether it can use it, what "
        "it holds there, what uses it, and what that cost."
    )

    observed_generation: int | None = Field(
        default=None,
        description="The metadata.generation of the spec this installation last checked.",
    )
    phase: ProviderPhase | None = Field(
        default=None,
        description="Whether the installation can use the provider: Ready (driver loaded, "
        "configuration and credentials accepted) or NotReady (reason and message say why).",
    )
    nodes: int | None = Field(
        default=None, description="How many machines this installation holds through it."
    )
    cores: int | None = Field(
        default=None,
        description="How many CPU cores those machines have, counted as quotas.maxCores "
        "counts them.",
    )
    reason: str | None = Field(
        default=None,
        description="Why it is Ready or not, in one CamelCase word; ProviderInUse while the "
        "provider is being deleted and this installation still holds it.",
    )
    message: str | None = Field(
        default=None,
        description="Why it is Ready or not, or why its deletion waits (naming the users), "
        "in a sentence for people.",
    )
    users: ProviderUsers | None = Field(
        default=None,
        description=f"The finalizer is {IN_USE_DOMAIN}/<installation id>. Absent: nothing "
        "uses the provider.",
    )
    usage: ProviderUsage | None = Field(
        default=None,
        description="Absent until one of its clusters has held a billable machine.",
    )


class NodeProviderStatus(CamelModel):
    """What the operator last found out about the provider.

    A NodeProvider is cluster-scoped, so every operator installation on the API server
    reconciles it. Each writes only its own entry of `installations` (a map: a merge patch
    replaces one key, leaving the others), so two never rewrite each other's view. The
    top-level fields are those of the installation with the smallest id among the
    entries (the only one, in the usual single-installation case).
    """

    explain = (
        "What the operator installations last found out about the provider, each in its "
        "own entry of `installations`; the other fields are those of the entry with the "
        "smallest installation id (the only one, usually)."
    )

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation of the spec last checked."
    )
    phase: ProviderPhase | None = Field(
        default=None,
        description="Whether the provider can be used: Ready or NotReady (the Ready "
        "condition says why).",
    )
    nodes: int | None = Field(
        default=None, description="How many machines are held through the provider."
    )
    cores: int | None = Field(
        default=None, description="How many CPU cores those machines have (as quotas count)."
    )
    usage: ProviderUsage | None = Field(
        default=None,
        description="As in the installation's entry (kubectl get shows its month's cost).",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready (the provider can be used) and Stalled (a person must act, e.g. "
        "an unknown driver or refused credentials).",
        max_length=16,
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
