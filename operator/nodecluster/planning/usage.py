"""Usage accounting: fold what a cluster's billable machines ran for into its figures.

Pure: (the usage last written, the billable machines per bucket now, the prices, now) ->
the usage to write. The figures are accrued up to `asOf` at the rate in force since
(api/usage.py); `accrue` adds rate x elapsed, split at month boundaries (UTC) so each
month gets its own share, and `fold` decides whether to do it at all.

Why not fold on every reconcile: the status is written whenever it differs, so an `asOf`
moving on every look would turn every reconcile (the idle resync, every restart) into a
write, 10,000 of them for 10,000 clusters. The figures are exact without it (a reader
adds rate x time since `asOf`), so `fold` rewrites them only when the rate changes (the
billable set or a price), when the month rolls over, or when they are older than the
refresh interval: at most about one write an hour for a cluster with billable machines,
none for one without.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nodecluster.api.nodeprovider import Bucket
from nodecluster.api.usage import (
    USAGE_BUCKETS,
    BucketUsage,
    ClusterUsage,
    MonthFigures,
    UsageFigures,
)

BucketKey = tuple[str | None, str]
"""(zone, machine type): where a machine bills."""

DIGITS = 6
"""Figures are written rounded to this many decimals: exact enough for any bill, and
free of float noise that would make two equal figures differ."""


@dataclass(frozen=True)
class Price:
    """What one machine of a bucket counts: its cores, and its cost per hour (None: no
    bucket prices it)."""

    cores: int = 1
    hourly_cost: float | None = None


def price_list(buckets: Iterable[Bucket]) -> dict[BucketKey, Price]:
    """The NodeProvider's buckets as prices by (zone, machine type), plus one per machine
    type for a machine whose zone no bucket names (zone None): the dearest zone's, so an
    estimate (and the cost limit) never counts too little."""
    prices: dict[BucketKey, Price] = {}
    for b in buckets:
        prices[(b.zone, b.machine_type)] = Price(b.cores, b.hourly_cost)
        any_zone = prices.get((None, b.machine_type))
        if any_zone is None or (b.hourly_cost or 0.0) > (any_zone.hourly_cost or 0.0):
            prices[(None, b.machine_type)] = Price(b.cores, b.hourly_cost)
    return prices


def price_of(prices: Mapping[BucketKey, Price], zone: str | None, machine_type: str) -> Price:
    """The price of one machine in (zone, machine type): its bucket's, else the dearest
    of its type, else no price and one core (a type no bucket names, as quotas count it)."""
    return prices.get((zone, machine_type)) or prices.get((None, machine_type)) or Price()


def month_of(at: datetime) -> str:
    """The calendar month (UTC) of a time, as YYYY-MM."""
    return at.astimezone(UTC).strftime("%Y-%m")


def _month_start(month: str) -> datetime:
    year, mon = (int(part) for part in month.split("-"))
    return datetime(year, mon, 1, tzinfo=UTC)


def _next_month(start: datetime) -> datetime:
    return (start + timedelta(days=32)).replace(day=1)


def _plus(
    figures: UsageFigures, machine_hours: float, cores: int, hourly_cost: float
) -> UsageFigures:
    return UsageFigures(
        machine_hours=round(figures.machine_hours + machine_hours, DIGITS),
        core_hours=round(figures.core_hours + machine_hours * cores, DIGITS),
        cost=round(figures.cost + machine_hours * hourly_cost, DIGITS),
    )


def _sum(a: UsageFigures, b: UsageFigures) -> UsageFigures:
    return UsageFigures(
        machine_hours=round(a.machine_hours + b.machine_hours, DIGITS),
        core_hours=round(a.core_hours + b.core_hours, DIGITS),
        cost=round(a.cost + b.cost, DIGITS),
    )


def _within_month(usage: ClusterUsage, hours: float) -> ClusterUsage:
    """`hours` more at the rate in force, all in `usage.month`."""
    buckets: list[BucketUsage] = []
    added = UsageFigures()
    for b in usage.buckets:
        if not b.machines:
            buckets.append(b)
            continue
        grew = _plus(UsageFigures(), hours * b.machines, b.cores, b.hourly_cost or 0.0)
        added = _sum(added, grew)
        buckets.append(
            b.model_copy(
                update={
                    "current_month": _sum(b.current_month, grew),
                    "total": _sum(b.total, grew),
                }
            )
        )
    return usage.model_copy(
        update={
            "buckets": buckets,
            "current_month": _sum(usage.current_month, added),
            "total": _sum(usage.total, added),
        }
    )


def _rolled_over(usage: ClusterUsage, month: str) -> ClusterUsage:
    """`usage` at the start of `month`: the month left becomes the previous one."""
    return usage.model_copy(
        update={
            "month": month,
            "previous_month": MonthFigures(month=usage.month, **usage.current_month.model_dump()),
            "current_month": UsageFigures(),
            "buckets": [
                b.model_copy(update={"current_month": UsageFigures()}) for b in usage.buckets
            ],
        }
    )


def accrue(usage: ClusterUsage, now: datetime) -> ClusterUsage:
    """The figures brought from `usage.asOf` up to `now` at the rate in force at asOf,
    each month getting the hours that fell in it (UTC). Rolling into a new month makes the
    month left `previousMonth` (after a gap of several months, the last of them)."""
    start = usage.as_of
    while start < now:
        boundary = _next_month(_month_start(usage.month))
        end = min(now, boundary)
        usage = _within_month(usage, (end - start).total_seconds() / 3600.0)
        if end == boundary:
            usage = _rolled_over(usage, month_of(boundary))
        start = end
    return usage.model_copy(update={"as_of": max(now, usage.as_of)})


Rates = dict[BucketKey, tuple[int, int, float | None]]
"""(zone, machine type) -> (billable machines, cores of one, cost of one per hour)."""


def rates_of(billable: Mapping[BucketKey, int], prices: Mapping[BucketKey, Price]) -> Rates:
    """The rate in force for machines billing per bucket now."""
    rates: Rates = {}
    for (zone, machine_type), count in billable.items():
        if count:
            price = price_of(prices, zone, machine_type)
            rates[(zone, machine_type)] = (count, price.cores, price.hourly_cost)
    return rates


def _rates_in(usage: ClusterUsage) -> Rates:
    return {
        (b.zone, b.machine_type): (b.machines, b.cores, b.hourly_cost)
        for b in usage.buckets
        if b.machines
    }


def _with_rates(usage: ClusterUsage, rates: Rates) -> ClusterUsage:
    """`usage` with the rate in force from its asOf on."""
    buckets: list[BucketUsage] = []
    seen: set[BucketKey] = set()
    for b in usage.buckets:
        key = (b.zone, b.machine_type)
        seen.add(key)
        machines, cores, cost = rates.get(key, (0, b.cores, b.hourly_cost))
        buckets.append(
            b.model_copy(update={"machines": machines, "cores": cores, "hourly_cost": cost})
        )
    for (zone, machine_type), (machines, cores, cost) in rates.items():
        if (zone, machine_type) not in seen:
            buckets.append(
                BucketUsage(
                    zone=zone,
                    machine_type=machine_type,
                    machines=machines,
                    cores=cores,
                    hourly_cost=cost,
                )
            )
    if len(buckets) > USAGE_BUCKETS:
        # Rows billing now stay; of the others, those that cost most.
        buckets.sort(key=lambda b: (b.machines > 0, b.total.cost, b.total.machine_hours))
        buckets = buckets[-USAGE_BUCKETS:]
    buckets.sort(key=lambda b: (b.machine_type, b.zone or ""))
    return usage.model_copy(
        update={
            "buckets": buckets,
            "machines": sum(b.machines for b in buckets),
            "cores": sum(b.machines * b.cores for b in buckets),
            "hourly_cost": round(sum(b.machines * (b.hourly_cost or 0.0) for b in buckets), DIGITS),
        }
    )


def fold(
    old: ClusterUsage | None,
    billable: Mapping[BucketKey, int],
    prices: Mapping[BucketKey, Price],
    now: datetime,
    refresh_seconds: float,
) -> ClusterUsage | None:
    """The usage to write: `old` itself unless the rate changed (machines billing per
    bucket, or their price), the month rolled over, or machines bill and `old` is older
    than `refresh_seconds` (the module's docstring says why). None while the cluster has
    never held a billable machine: it has nothing to say, and costs no write."""
    now = now.astimezone(UTC).replace(microsecond=0)
    rates = rates_of(billable, prices)
    if old is None:
        if not rates:
            return None
        return _with_rates(ClusterUsage(as_of=now, month=month_of(now)), rates)
    unchanged = _rates_in(old) == rates and month_of(now) == old.month
    fresh = not rates or (now - old.as_of).total_seconds() < refresh_seconds
    if unchanged and fresh:
        return old
    return _with_rates(accrue(old, now), rates)


def brought_up_to(usage: ClusterUsage, now: datetime) -> ClusterUsage:
    """The figures as they stand at `now` (for readers: the usage command)."""
    return accrue(usage, now.astimezone(UTC))


def refresh_due_in(
    usage: ClusterUsage | None, now: datetime, refresh_seconds: float
) -> float | None:
    """Seconds until a cluster's usage is due to be folded again (None: nothing accrues)."""
    if usage is None or not usage.machines:
        return None
    return max(0.0, refresh_seconds - (now - usage.as_of).total_seconds())


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """What a provider's totals need of one cluster's usage, kept in memory per cluster
    (a few numbers instead of the whole status)."""

    provider: str
    uid: str
    usage: ClusterUsage

    def at(self, now: datetime, month: str) -> tuple[Figures, Figures]:
        """(figures of `month`, figures since creation) of the cluster, brought up to
        `now`, as plain numbers: a provider sums thousands of these."""
        u = self.usage
        if u.machines and u.month != month_of(now):
            u = brought_up_to(u, now)  # across a month boundary: split as accrue does
        hours = max(0.0, (now - u.as_of).total_seconds() / 3600.0)
        grew = (hours * u.machines, hours * u.cores, hours * u.hourly_cost)
        total = _plain(u.total, grew)
        return (_plain(u.current_month, grew) if u.month == month else (0.0, 0.0, 0.0)), total


Figures = tuple[float, float, float]
"""(machine-hours, core-hours, cost) as plain numbers."""


def _plain(figures: UsageFigures, grew: Figures) -> Figures:
    return (
        figures.machine_hours + grew[0],
        figures.core_hours + grew[1],
        figures.cost + grew[2],
    )


def figures_of(sums: Figures) -> UsageFigures:
    """Plain sums as figures (rounded as every figure is)."""
    return UsageFigures(
        machine_hours=round(sums[0], DIGITS),
        core_hours=round(sums[1], DIGITS),
        cost=round(sums[2], DIGITS),
    )


def add_figures(a: UsageFigures, b: UsageFigures) -> UsageFigures:
    """The sum of two sets of figures."""
    return _sum(a, b)
