"""Usage and cost of NodeClusters and NodeProviders: the controller side of
planning/usage.py.

- A cluster's reconcile folds its billable machines into `status.usage` (`cluster_usage`),
  which its one status patch writes only when the figures changed: at most about one
  write an hour per cluster with billable machines, none for one without.
- The same reconcile keeps a summary of that usage in memory (`ClusterBook.usage`), from
  which the provider's reconcile sums this installation's totals (`installation_usage`) into
  its entry of the NodeProvider's `status.installations`: no status is read for it.
- A deleted cluster's figures must stay in its provider's totals. Before its finalizer
  goes, `retire_cluster` folds them into the entry's `retiredTotal`, naming the cluster's
  uid in `retired` in the same patch, sent with the provider's resourceVersion: a release
  retried after a crash or a lost answer finds the uid there and adds nothing, and two
  writers cannot both add to one figure read before the other's write.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from nodecluster.api.nodecluster import NodeCluster
from nodecluster.api.nodeprovider import NodeProvider
from nodecluster.api.usage import (
    RETIRED_KEPT,
    ClusterUsage,
    MonthFigures,
    ProviderUsage,
    UsageFigures,
)
from nodecluster.controllers.expectations import NsName
from nodecluster.controllers.kubeapi import NODEPROVIDERS, KubeConflict, KubeNotFound
from nodecluster.controllers.world import PROVIDER_REFRESH_SECONDS, World
from nodecluster.planning.model import NodeView
from nodecluster.planning.usage import (
    BucketKey,
    UsageSummary,
    add_figures,
    figures_of,
    fold,
    month_of,
    price_list,
)

log = logging.getLogger(__name__)


def billable(nodes: Iterable[NodeView], machine_type: str) -> Counter[BucketKey]:
    """Machines billing now, by (zone, machine type): nodes that hold a machine that is not
    Stopped (clouds charge no compute for a powered-off machine). A node's own machine type
    is the one its profile had when it was made (`machine_type` of the cached view); one
    not cached yet has no machine."""
    counts: Counter[BucketKey] = Counter()
    for n in nodes:
        if n.has_machine and n.state != "Stopped":
            counts[(n.zone, getattr(n, "machine_type", "") or machine_type)] += 1
    return counts


def cluster_usage(
    world: World, key: NsName, nc: NodeCluster, nodes: Iterable[NodeView], now: datetime
) -> ClusterUsage | None:
    """The usage a cluster's status should say now (the last one, unchanged, unless it is
    due: planning/usage.py `fold`).

    The last one is the last this process folded (`ClusterBook.usage`) when that is newer
    than the status: a status write held back as progress (or refused) must not lose what
    was folded into it. Folding again from the older status would start a cluster's first
    figures afresh at every look while its scale-out's progress is held back (all of the
    hours before it converged lost), and would charge a rate changed meanwhile at the old
    one. After a restart the status is all there is, and it is exact up to its asOf."""
    base = nc.status.usage
    held = world.book.usage.get(key)
    if (
        held is not None
        and held.uid == (nc.metadata.uid or "")
        and (base is None or held.usage.as_of > base.as_of)
    ):
        base = held.usage
    counts = billable(nodes, nc.spec.profile.machine_type)
    if not counts and base is None:
        return None  # (most of an idle fleet: no price list to build)
    np = world.providers.specs.get(nc.spec.provider_ref.name)
    prices = price_list(np.spec.buckets if np is not None else ())
    return fold(base, counts, prices, now, world.settings.usage_refresh_seconds)


def remember(world: World, key: NsName, nc: NodeCluster, usage: ClusterUsage | None) -> None:
    """Keep a cluster's usage for its provider's totals (None: it has none, but it has
    reported since the operator started)."""
    world.book.usage[key] = (
        None
        if usage is None
        else UsageSummary(nc.spec.provider_ref.name, nc.metadata.uid or "", usage)
    )
    old = nc.status.usage
    if usage is not None and (old is None or _rate(old) != _rate(usage)):
        # The provider's totals change rate with it: refresh them once things settle.
        world.queues.provider.add(nc.spec.provider_ref.name, delay=PROVIDER_REFRESH_SECONDS)


def _rate(usage: ClusterUsage) -> tuple[int, int, float]:
    return usage.machines, usage.cores, usage.hourly_cost


def installation_usage(
    world: World, name: str, old: ProviderUsage | None, now: datetime, *, force: bool = False
) -> ProviderUsage | None:
    """This installation's usage of provider `name`: its clusters' figures brought up to
    now, plus those of clusters deleted (retired). `old` unchanged unless the rate changed,
    the month rolled over, or it is older than the refresh interval (as a cluster's), or
    `force` (a cluster just retired: see `retire_cluster`); and `old` unchanged while some
    cluster of the provider has not reported since the operator started: a partial sum
    would be a write after every restart, and a wrong one."""
    reported = world.book.usage
    clusters = world.clusters_of(name)
    if any(key not in reported for key in clusters):
        return old
    gone = set(old.retired) if old is not None else set()
    counted = [
        s for s in (reported[key] for key in clusters) if s is not None and s.uid not in gone
    ]
    if old is None and not counted:
        return None
    now = now.replace(microsecond=0)
    month = month_of(now)
    machines = sum(s.usage.machines for s in counted)
    cores = sum(s.usage.cores for s in counted)
    hourly_cost = round(sum(s.usage.hourly_cost for s in counted), 6)
    if old is not None and not force:
        same_rate = (old.machines, old.cores, old.hourly_cost) == (machines, cores, hourly_cost)
        fresh = not machines or (now - old.as_of).total_seconds() < (
            world.settings.usage_refresh_seconds
        )
        if same_rate and fresh and old.month == month and old.clusters == len(counted):
            return old
    month_sums, total_sums = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    for s in counted:  # (plain numbers: ~1 µs a cluster, for thousands of them)
        of_month, since = s.at(now, month)
        for i in range(3):
            month_sums[i] += of_month[i]
            total_sums[i] += since[i]
    current = figures_of((month_sums[0], month_sums[1], month_sums[2]))
    total = figures_of((total_sums[0], total_sums[1], total_sums[2]))
    retired_total = old.retired_total if old is not None else UsageFigures()
    retired_month = old.retired_month if old is not None else None
    if retired_month is not None and retired_month.month == month:
        current = add_figures(current, retired_month)
    return ProviderUsage(
        as_of=now,
        month=month,
        clusters=len(counted),
        machines=machines,
        cores=cores,
        hourly_cost=hourly_cost,
        current_month=current,
        total=add_figures(total, retired_total),
        retired_month=retired_month,
        retired_total=retired_total,
        retired=old.retired if old is not None else [],
    )


def retired(
    old: ProviderUsage | None, uid: str, usage: ClusterUsage, now: datetime
) -> ProviderUsage:
    """A provider's usage with a deleted cluster's final figures folded into the retired
    ones (the caller checked that its uid is not among `retired` yet).

    They are added to `total` (and the month's figures) too: when the entry cannot be
    summed again at once (`retire_cluster`), it must not show less in total than was
    retired, as it did for a cluster deleted before its provider's first sum. Were the
    cluster in the last sum, it is counted twice until the next one, which comes with
    the next provider look: `clusters` no longer matches the clusters counted."""
    now = now.replace(microsecond=0)
    base = old or ProviderUsage(as_of=now, month=month_of(now))
    month = usage.month
    retired_month = base.retired_month
    if retired_month is None or retired_month.month < month:
        retired_month = MonthFigures(month=month, **usage.current_month.model_dump())
    elif retired_month.month == month:
        summed = add_figures(retired_month, usage.current_month)
        retired_month = MonthFigures(month=month, **summed.model_dump())
    current = base.current_month
    if base.month == month:
        current = add_figures(current, usage.current_month)
    return base.model_copy(
        update={
            "retired_month": retired_month,
            "retired_total": add_figures(base.retired_total, usage.total),
            "retired": [*base.retired, uid][-RETIRED_KEPT:],
            "current_month": current,
            "total": add_figures(base.total, usage.total),
        }
    )


async def retire_cluster(world: World, nc: NodeCluster, usage: ClusterUsage | None) -> bool:
    """Fold a deleted cluster's figures into its provider's retired totals, once (see the
    module's docstring). False when the provider changed meanwhile: read again and retry."""
    uid = nc.metadata.uid or ""
    name = nc.spec.provider_ref.name
    if usage is None or not uid:
        return True
    key = ("NodeProvider", "", name)
    installation = world.settings.installation_id
    async with world.providers.status_lock(name):
        try:
            body = await world.body(NODEPROVIDERS, key)
        except KubeNotFound:
            return True  # no provider left to keep totals in
        np = NodeProvider.model_validate(body)
        entry = np.status.installations.get(installation)
        old = entry.usage if entry is not None else None
        if old is not None and uid in old.retired:
            return True  # an earlier attempt did it
        now = world.now()
        new = retired(old, uid, usage, now)
        # Summed again in the same patch, without the cluster (its uid is in `retired`
        # now), so the entry is exact at once; unless some cluster has not reported since
        # the operator started (then `new` as it is, until the provider's next look).
        new = installation_usage(world, name, new, now, force=True) or new
        patch = {
            "metadata": {"resourceVersion": np.metadata.resource_version},
            "status": {"installations": {installation: {"usage": new.wire()}}},
        }
        try:
            patched = await world.api.patch(NODEPROVIDERS, None, name, patch, status=True)
        except KubeConflict:
            world.bodies.drop(key)
            return False
        except KubeNotFound:
            return True
        world.bodies.wrote(key, patched)
    world.queues.provider.add(name)  # its totals no longer count the cluster as existing
    return True
