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

    machine_hours: float = Field(default=0.0, ge=0, description="Hours of billable machines.")
    core_hours: float = Field(default=0.0, ge=0, description="Machine-hours times cores.")
    cost: float = Field(
        default=0.0, ge=0, description="Machine-hours times the buckets' hourlyCost."
    )


class MonthFigures(UsageFigures):
    """The figures of one calendar month (UTC)."""

    month: str = Field(pattern=MONTH_PATTERN, description="The month, as YYYY-MM (UTC).")


class BucketUsage(CamelModel):
    """One zone x machine type of a cluster: what bills there now and what it has cost."""

    zone: str | None = Field(default=None, description="Zone (absent: not known yet).")
    machine_type: str = Field(description="Machine type.")
    machines: int = Field(default=0, ge=0, description="Billable machines at asOf.")
    cores: int = Field(default=1, ge=1, description="Cores of one machine, at asOf.")
    hourly_cost: float | None = Field(
        default=None,
        ge=0,
        description="Price of one machine-hour at asOf (absent: no bucket prices it).",
    )
    current_month: UsageFigures = Field(
        default_factory=UsageFigures, description="Figures of the month of asOf."
    )
    total: UsageFigures = Field(
        default_factory=UsageFigures, description="Figures since the cluster was created."
    )


class ClusterUsage(CamelModel):
    """A NodeCluster's usage, accrued up to `asOf` (see the module's docstring)."""

    as_of: datetime = Field(description="The figures are accrued up to this time.")
    hourly_cost: float = Field(
        default=0.0, ge=0, description="The cost per hour of the billable machines at asOf."
    )
    machines: int = Field(default=0, ge=0, description="Billable machines at asOf.")
    cores: int = Field(default=0, ge=0, description="Their cores.")
    month: str = Field(pattern=MONTH_PATTERN, description="The month of asOf (UTC), YYYY-MM.")
    current_month: UsageFigures = Field(
        default_factory=UsageFigures, description="Figures of `month` up to asOf."
    )
    previous_month: MonthFigures | None = Field(
        default=None, description="The month before `month` (last month's bill)."
    )
    total: UsageFigures = Field(
        default_factory=UsageFigures, description="Figures since the cluster was created."
    )
    buckets: list[BucketUsage] = Field(
        default_factory=list,
        max_length=USAGE_BUCKETS,
        description="Per zone and machine type: the machines billing at asOf and the figures.",
    )


RETIRED_KEPT = 100
"""How many deleted clusters' uids a provider's usage remembers, to fold each one's
figures in exactly once even when its release is retried."""


class ProviderUsage(CamelModel):
    """What one installation's clusters have used of a NodeProvider."""

    as_of: datetime = Field(description="The figures are brought up to this time.")
    month: str = Field(pattern=MONTH_PATTERN, description="The month of asOf (UTC), YYYY-MM.")
    clusters: int = Field(default=0, ge=0, description="Clusters counted (existing ones).")
    machines: int = Field(default=0, ge=0, description="Billable machines at asOf.")
    cores: int = Field(default=0, ge=0, description="Their cores.")
    hourly_cost: float = Field(default=0.0, ge=0, description="Their cost per hour.")
    current_month: UsageFigures = Field(
        default_factory=UsageFigures,
        description="Figures of `month`: existing clusters' plus deleted clusters'.",
    )
    total: UsageFigures = Field(
        default_factory=UsageFigures,
        description="Figures since each cluster was created, deleted clusters' included.",
    )
    retired_month: MonthFigures | None = Field(
        default=None, description="What clusters deleted in `retiredMonth.month` had used then."
    )
    retired_total: UsageFigures = Field(
        default_factory=UsageFigures, description="What every deleted cluster had used."
    )
    retired: list[str] = Field(
        default_factory=list,
        max_length=RETIRED_KEPT,
        description="Uids of the clusters deleted last, already in retiredTotal.",
    )
