"""Usage and cost: what a NodeCluster's machines have run for, and what that cost.

The figures are what Azure CycleCloud's usage API answers (machine-hours, core-hours and
an estimated cost, per cluster, for the current month and since creation), kept the
Kubernetes way: in status, so they survive operator restarts and are read with kubectl.

They are *accrued up to `asOf`*: the operator folds the rate in force (`hourlyCost`, the
machines of each bucket) into the figures only when that rate changes, when the month
rolls over, or when `asOf` is older than the refresh interval (`run
--usage-refresh-seconds`, an hour by default). A figure "now" is the figure at `asOf`
plus the rate times the time since (what `nodecluster-operator usage` shows), so the
status need not be rewritten to stay exact: a running cluster costs at most about one
status write an hour for its usage, one without billable machines none.

A machine bills while it holds a machine at the provider (the ClusterNode has a
provider id) and is not Stopped: clouds do not charge compute for a powered-off machine
(its disks still cost, which these figures do not count). Its price is the hourlyCost of
the NodeProvider bucket of its zone and machine type; a machine whose zone no bucket
names is priced at the dearest bucket of its type, one of a type no bucket names costs
nothing and counts one core (as the cores quota does). Costs are in whatever unit the
buckets' hourlyCost is written in.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from nodecluster.api.common import CamelModel

MONTH_PATTERN = r"^[0-9]{4}-[0-9]{2}$"
USAGE_BUCKETS = 64
"""How many (zone, machine type) rows a cluster's usage keeps: a cluster has one machine
type (two during a rollout that changes it) in a few zones, so this is plenty; beyond it
the rows without machines and with the smallest totals go (the cluster's own figures
stay whole)."""


class UsageFigures(CamelModel):
    """Machine-hours, core-hours and estimated cost over some period."""

    explain = (
        "What machines used over a period: machine-hours, core-hours and the estimated cost. "
        "A machine bills while it exists at the provider and is not Stopped."
    )

    machine_hours: float = Field(
        default=0.0,
        ge=0,
        description="Hours machines billed, summed over the machines (default 0).",
    )
    core_hours: float = Field(
        default=0.0,
        ge=0,
        description="Machine-hours times each machine's cores (default 0).",
    )
    cost: float = Field(
        default=0.0,
        ge=0,
        description="Machine-hours times their bucket's hourlyCost, in that currency (default 0).",
    )


class MonthFigures(UsageFigures):
    """The figures of one calendar month (UTC)."""

    explain = (
        "What machines used over one calendar month (UTC): machine-hours, core-hours and "
        "the estimated cost."
    )

    month: str = Field(pattern=MONTH_PATTERN, description="Which month, as YYYY-MM (UTC).")


class BucketUsage(CamelModel):
    """One zone x machine type of a cluster: what bills there now and what it has cost."""

    explain = (
        "One zone x machine type of the cluster: what bills there at asOf and what it has used."
    )

    zone: str | None = Field(
        default=None, description="The zone of these machines (absent: not known yet)."
    )
    machine_type: str = Field(
        description="The machine type these machines run as; with zone, what the row is for."
    )
    machines: int = Field(default=0, ge=0, description="How many of them bill at asOf (default 0).")
    cores: int = Field(default=1, ge=1, description="CPU cores of one of them at asOf (default 1).")
    hourly_cost: float | None = Field(
        default=None,
        ge=0,
        description="What one of them costs per hour at asOf, in the currency of the "
        "buckets' hourlyCost (absent: no bucket prices it).",
    )
    current_month: UsageFigures = Field(
        default_factory=UsageFigures, description="Over the month of asOf, up to asOf."
    )
    total: UsageFigures = Field(
        default_factory=UsageFigures, description="Since the cluster was created, up to asOf."
    )


class ClusterUsage(CamelModel):
    """A NodeCluster's usage, accrued up to `asOf` (see the module's docstring)."""

    explain = (
        "What the cluster's machines have used and cost, accrued up to asOf: a figure now "
        "is the figure at asOf plus the rate at asOf times the time since (what "
        "`nodecluster-operator usage` shows)."
    )

    as_of: datetime = Field(
        description="The time the figures are accrued up to (at most about an hour old "
        "while machines bill)."
    )
    hourly_cost: float = Field(
        default=0.0,
        ge=0,
        description="What the machines billing at asOf cost per hour together, in the "
        "currency of the buckets' hourlyCost (default 0).",
    )
    machines: int = Field(
        default=0, ge=0, description="How many machines bill at asOf (default 0)."
    )
    cores: int = Field(
        default=0,
        ge=0,
        description="How many CPU cores the machines billing at asOf have (default 0).",
    )
    month: str = Field(
        pattern=MONTH_PATTERN, description="The calendar month of asOf (UTC), as YYYY-MM."
    )
    current_month: UsageFigures = Field(
        default_factory=UsageFigures, description="Over `month`, up to asOf."
    )
    previous_month: MonthFigures | None = Field(
        default=None, description="The month before `month`: last month's bill."
    )
    total: UsageFigures = Field(
        default_factory=UsageFigures, description="Since the cluster was created, up to asOf."
    )
    buckets: list[BucketUsage] = Field(
        default_factory=list,
        max_length=USAGE_BUCKETS,
        description="The same, per zone and machine type (at most 64 rows).",
    )


RETIRED_KEPT = 100
"""How many deleted clusters' uids a provider's usage remembers, to fold each one's
figures in exactly once even when its release is retried."""


class ProviderUsage(CamelModel):
    """What one installation's clusters have used of a NodeProvider."""

    explain = (
        "What one installation's NodeClusters have used and cost through the provider, "
        "summed over its clusters, deleted ones included, up to asOf."
    )

    as_of: datetime = Field(description="The time the figures are brought up to.")
    month: str = Field(
        pattern=MONTH_PATTERN, description="The calendar month of asOf (UTC), as YYYY-MM."
    )
    clusters: int = Field(
        default=0,
        ge=0,
        description="How many existing clusters are counted (default 0); deleted ones are "
        "in the retired figures.",
    )
    machines: int = Field(
        default=0, ge=0, description="How many machines bill at asOf (default 0)."
    )
    cores: int = Field(
        default=0,
        ge=0,
        description="How many CPU cores the machines billing at asOf have (default 0).",
    )
    hourly_cost: float = Field(
        default=0.0,
        ge=0,
        description="What the machines billing at asOf cost per hour together, in the "
        "currency of the buckets' hourlyCost (default 0).",
    )
    current_month: UsageFigures = Field(
        default_factory=UsageFigures,
        description="Over `month`: existing clusters' figures plus deleted clusters'.",
    )
    total: UsageFigures = Field(
        default_factory=UsageFigures,
        description="Since each cluster was created, deleted clusters' included.",
    )
    retired_month: MonthFigures | None = Field(
        default=None,
        description="What clusters deleted in retiredMonth.month had used in that month.",
    )
    retired_total: UsageFigures = Field(
        default_factory=UsageFigures,
        description="What every deleted cluster had used, in all.",
    )
    retired: list[str] = Field(
        default_factory=list,
        max_length=RETIRED_KEPT,
        description="metadata.uid of the last 100 clusters deleted, whose figures are already "
        "in retiredTotal (so none is added twice).",
    )
