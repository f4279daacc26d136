"""Prometheus metrics: every family the operator exports, defined in this one module.

The names follow Prometheus conventions and the families Karpenter and controller-runtime
use (`*_total` counters, `*_duration_seconds` histograms, `workqueue_*`), so dashboards and
habits transfer. No label names a node or a machine: the series grow with clusters,
providers and a bounded set of reasons, never with machines.

Two kinds of families, for two costs:

- **prometheus_client objects** (`Histogram`, `Counter`) for what has few label values
  and is updated on the hot path: reconcile durations and errors per kind, provider call
  durations and errors, machine startup times per provider. An update costs a few µs.
- **A collector (`FleetCollector`) computed at scrape time** for what is per NodeCluster,
  per NodeProvider or per work queue: the controllers keep a compact summary (a tuple of
  ints and interned strings per cluster, `ClusterSummary`; a dict of counts per cluster
  for machine events), and a scrape turns it into samples. A prometheus_client child per
  cluster and series costs ~0.6 KB (a lock, a value object, a label dict: tracemalloc),
  ~15 KB for a cluster's 25 series, against a budget of 10 KB per idle NodeCluster; the
  summary costs 164 bytes per idle cluster, 474 with its created machines counted
  (`python -m bench.scrape`). It is dropped with the cluster (`drop_cluster`).

The endpoint (`serve`) is prometheus_client's own HTTP server, in a daemon thread: its
exposition (text format, OpenMetrics, gzip) is the library's, and a scrape of 10,000
clusters (1.6 s of CPU: 260,000 samples at ~6 µs each in prometheus_client, see the README)
never stalls the event loop for its whole length, as an aiohttp handler on the loop would:
the interpreter switches threads every few milliseconds. So the collector runs on another
thread than the controllers: it reads their dicts through one `list(d.items())` each,
which is atomic under the GIL for builtin dicts of str and tuple keys, and their values
are immutable tuples or ints. It never iterates a live dict.

Every `World` has its own `Metrics` and `CollectorRegistry` (never the global default), so
tests build as many as they like and read each one's values (`sample`).
"""

from __future__ import annotations

import calendar
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, get_args
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from nodecluster.api.common import Condition
from nodecluster.api.nodecluster import ClusterState, NodeClusterStatus
from nodecluster.api.usage import ClusterUsage
from nodecluster.controllers.expectations import NsName
from nodecluster.planning.model import NodeView
from nodecluster.planning.planner import Plan
from nodecluster.providers import base as provider_errors

log = logging.getLogger(__name__)

STATES: tuple[str, ...] = get_args(ClusterState)
"""Every `status.state`: `nodecluster_state` has a series for each (a state set)."""

MachineEvent = Literal["created", "deleted", "remediated", "failed"]
"""The per-cluster machine counters: `nodecluster_machines_<event>_total`."""

MACHINE_EVENTS: dict[MachineEvent, str] = {
    "created": "ClusterNodes created, by why they were made (ScaleOut, Replacement, Rollout, "
    "CapacityFallback, WarmPool)",
    "deleted": "ClusterNodes (and so machines) deleted, by why (ScaleIn, Remediation, Rollout, "
    "Expired, Terminating, Orphan, WarmPool, or the operation: RemoveNodes, ReplaceNodes, Recover)",
    "remediated": "Unhealthy machines replaced or rebooted, by why they were unhealthy",
    "failed": "Machine operations at the provider that failed, by the error's reason",
}

RECONCILE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
"""One reconcile: milliseconds when it only reads and plans, seconds when it waits on a
provider (a ClusterNode's create) or a slow API server."""
PROVIDER_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
"""One driver call, up to the longest `callTimeoutSeconds` commonly set."""
STARTUP_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800)
"""Create issued to Running: seconds (a simulator, kwok) to many minutes (bare metal)."""

ERROR_CLASSES: tuple[type[BaseException], ...] = (
    provider_errors.NotFound,
    provider_errors.Unauthorized,
    provider_errors.QuotaExceeded,
    provider_errors.CapacityExceeded,
    provider_errors.InvalidConfig,
    provider_errors.Retryable,
    provider_errors.ProviderError,
)
"""The provider error vocabulary, most specific first: a driver's own subclass is counted
under the class of the vocabulary it derives from, so the `error` label stays bounded."""


def error_class(err: BaseException) -> str:
    """The `error` label of a failed provider call: its class in the vocabulary, `Timeout`
    for a call cut off by its deadline, `Unexpected` for anything a driver did not mean."""
    if isinstance(err, TimeoutError):
        return "Timeout"
    for cls in ERROR_CLASSES:
        if isinstance(err, cls):
            return cls.__name__
    return "Unexpected"


class ClusterSummary(NamedTuple):
    """What the per-cluster gauges say of one NodeCluster: a tuple of ints and interned
    strings (~0.2 KB), never its body or models."""

    provider: str
    target: int
    current: int
    ready: int
    stopped: int
    unhealthy: int
    updated: int
    state: str | None
    conditions: tuple[tuple[str, str, str], ...]
    """(type, status, reason) of each condition present."""
    usage: UsageSample | None = None
    """Its status.usage, as the cost families read it (None: nothing billed yet)."""
    warm: int = 0
    """Its warm pool's nodes (status.warmNodes), outside the target."""


class UsageSample(NamedTuple):
    """A cluster's status.usage as six numbers: the figures at `as_of` (epoch seconds) and
    the rates since, so a scrape brings them up to its own time without any write (the
    status is refreshed only hourly: planning/usage.py)."""

    as_of: float
    month: str
    machines: int
    cores: int
    hourly_cost: float
    machine_hours: float
    core_hours: float
    cost: float
    month_cost: float

    def now(self, at: float) -> tuple[float, float, float, float]:
        """(machine-hours, core-hours, cost since creation, cost this month) at `at`."""
        hours = max(at - self.as_of, 0.0) / 3600.0
        month = time.strftime("%Y-%m", time.gmtime(at))
        if month == self.month:
            month_cost = self.month_cost + self.hourly_cost * hours
        else:  # rolled over since asOf: this month's cost began at its first second
            start = calendar.timegm(time.strptime(month, "%Y-%m"))
            month_cost = self.hourly_cost * max(at - max(start, self.as_of), 0.0) / 3600.0
        return (
            self.machine_hours + self.machines * hours,
            self.core_hours + self.cores * hours,
            self.cost + self.hourly_cost * hours,
            month_cost,
        )


def _usage(usage: ClusterUsage | None) -> UsageSample | None:
    if usage is None:
        return None
    return UsageSample(
        as_of=usage.as_of.timestamp(),
        month=sys.intern(usage.month),
        machines=usage.machines,
        cores=usage.cores,
        hourly_cost=usage.hourly_cost,
        machine_hours=usage.total.machine_hours,
        core_hours=usage.total.core_hours,
        cost=usage.total.cost,
        month_cost=usage.current_month.cost,
    )


_CONDITION_SETS: dict[tuple[tuple[str, str, str], ...], tuple[tuple[str, str, str], ...]] = {}
"""One shared tuple per distinct set of conditions. There are few (types, statuses and
reasons are bounded vocabularies), so 10,000 Deployed clusters share one."""


def _conditions(conditions: Sequence[Condition]) -> tuple[tuple[str, str, str], ...]:
    key = tuple(
        (sys.intern(c.type), sys.intern(c.status), sys.intern(c.reason or "")) for c in conditions
    )
    return _CONDITION_SETS.setdefault(key, key)


def summarize(provider: str, target: int, status: NodeClusterStatus) -> ClusterSummary:
    """The summary of a cluster with this provider, target and status."""
    return ClusterSummary(
        provider=sys.intern(provider),
        target=target,
        current=status.current_nodes or 0,
        ready=status.ready_nodes or 0,
        stopped=status.stopped_nodes or 0,
        unhealthy=status.unhealthy_nodes or 0,
        updated=status.updated_nodes or 0,
        state=sys.intern(status.state) if status.state is not None else None,
        conditions=_conditions(status.conditions),
        usage=_usage(status.usage),
        warm=status.warm_nodes or 0,
    )


class ProviderSummary(NamedTuple):
    """What the NodeProvider gauges say of one provider, for this installation."""

    nodes: int
    nodes_limit: int | None
    cores: int
    cores_limit: int | None
    ready: bool
    hourly_cost: float = 0.0
    """What the machines held (or being created) through it cost per hour."""
    hourly_cost_limit: float | None = None


def creation_reasons(plan: Plan) -> list[str]:
    """Why each of a plan's creates is made, in order: a replacement of each node deleted
    for remediation first, then one of another choice for each node refused for capacity,
    then a rollout's surge while rolling, else a scale-out (a new cluster's first nodes are
    a scale-out from zero)."""
    replaced = sum(1 for d in plan.deletes if d.reason == "Remediation")
    # Then a node of the next choice for each one refused for capacity (planning/fallback.py).
    fallen = replaced + sum(1 for d in plan.deletes if d.reason == "CapacityFallback")
    rest = "Rollout" if plan.rolling else "ScaleOut"
    # The warm pool's refill comes last in a plan (planner step 7).
    return [
        "WarmPool"
        if c.warm
        else "Replacement"
        if i < replaced
        else "CapacityFallback"
        if i < fallen
        else rest
        for i, c in enumerate(plan.creates)
    ]


def unhealthy_reason(node: NodeView) -> str:
    """Why the planner found a node unhealthy (planner.unhealthy_at's cases), as a word of
    a bounded set: the `reason` of `nodecluster_machines_remediated_total`."""
    if node.error_reason is not None:
        return str(node.error_reason)  # MachineMissing, or a node error of the vocabulary
    if node.state == "Failed":
        return "MachineFailed"
    if not node.has_machine or node.state in (None, "Pending", "Provisioning"):
        return "StartupTimeout"
    if node.ready:
        return "NodeNotReady"  # its Kubernetes Node (run --nodes)
    return "MachineNotReady"


class Metrics:
    """The operator's metrics: the prometheus_client families, the summaries the collector
    reads, and the registry a scrape reads them all from."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.reconcile_duration = Histogram(
            "nodecluster_reconcile_duration_seconds",
            "Duration of one reconcile, by kind",
            ["kind"],
            registry=r,
            buckets=RECONCILE_BUCKETS,
        )
        self.reconcile_errors = Counter(
            "nodecluster_reconcile_errors_total",
            "Reconciles that ended in an error they did not handle (reported and retried)",
            ["kind"],
            registry=r,
        )
        self.provider_call_duration = Histogram(
            "nodecluster_provider_call_duration_seconds",
            "Duration of one provider driver call, by provider and call",
            ["provider", "call"],
            registry=r,
            buckets=PROVIDER_CALL_BUCKETS,
        )
        self.provider_call_errors = Counter(
            "nodecluster_provider_call_errors_total",
            "Provider driver calls that failed, by provider, call and error class "
            "(NotFound is how a delete ends and a get of a vanished machine answers)",
            ["provider", "call", "error"],
            registry=r,
        )
        self.machine_startup = Histogram(
            "nodecluster_machine_startup_duration_seconds",
            "Seconds from a ClusterNode's creation (its create issued) to its machine Running",
            ["provider"],
            registry=r,
            buckets=STARTUP_BUCKETS,
        )
        self.receiver_requests = Counter(
            "nodecluster_receiver_requests",
            "Requests to the receivers' endpoint, by receiver and outcome (unauthorized "
            "requests naming no receiver this operator serves have empty labels)",
            ["namespace", "receiver", "outcome"],
            registry=r,
        )
        self.clusters: dict[NsName, ClusterSummary] = {}
        """Each NodeCluster's summary, as its last reconcile computed its status."""
        self.machine_events: dict[NsName, dict[tuple[MachineEvent, str], int]] = {}
        """Per cluster: (event, reason) -> count, for the nodecluster_machines_* counters."""
        self.providers: dict[str, ProviderSummary] = {}
        """Each NodeProvider's summary, as its last reconcile saw it."""
        self.leading: bool = True
        """Whether this replica acts: False while it stands by for the Lease."""
        self.queues: tuple[QueueStats, ...] = ()
        """The work queues, for the workqueue_* families (`watch_queues`)."""
        r.register(FleetCollector(self))

    # The controllers' side: each call is a dict operation or two.

    def cluster_seen(self, key: NsName, summary: ClusterSummary) -> None:
        """A cluster's status was computed (written or not): what its gauges say now."""
        self.clusters[key] = summary

    def drop_cluster(self, key: NsName) -> None:
        """A cluster is gone (or let go of): its series go with it."""
        self.clusters.pop(key, None)
        self.machine_events.pop(key, None)

    def knows(self, key: NsName) -> bool:
        """Whether cluster `key` has a summary (it reported once in this process). Counts of
        a node's cluster are kept only for one that does: a loose node's cluster (deleted
        without its finalizer) never reports, so its counts would never be dropped."""
        return key in self.clusters

    def machine_event(self, key: NsName, event: MachineEvent, reason: str, count: int = 1) -> None:
        """Count `count` machine events of a cluster (its controller's, or of a node of a
        cluster it `knows`)."""
        if count <= 0:
            return
        counts = self.machine_events.get(key)
        if counts is None:
            counts = self.machine_events[key] = {}
        k = (event, sys.intern(reason))
        counts[k] = counts.get(k, 0) + count

    def provider_seen(self, name: str, summary: ProviderSummary) -> None:
        """A provider was reconciled: what its gauges say now."""
        self.providers[name] = summary

    def drop_provider(self, name: str) -> None:
        """A provider is gone."""
        self.providers.pop(name, None)

    def watch_queues(self, queues: Iterable[QueueStats]) -> None:
        """Export these work queues' figures (`build_world` gives it the world's queues,
        which are built after the metrics when the endpoint is up before the world)."""
        self.queues = tuple(queues)

    def provider_call(
        self, provider: str, call: str, seconds: float, error: BaseException | None
    ) -> None:
        """One driver call ended (the deadline wrapper's observer, providers/deadline.py)."""
        self.provider_call_duration.labels(provider, call).observe(seconds)
        if error is not None:
            self.provider_call_errors.labels(provider, call, error_class(error)).inc()

    def reconciled(self, kind: str, seconds: float, failed: bool) -> None:
        """One reconcile of `kind` ended (failures.reporting)."""
        self.reconcile_duration.labels(kind).observe(seconds)
        if failed:
            self.reconcile_errors.labels(kind).inc()

    def machine_started(self, provider: str, seconds: float) -> None:
        """A machine reached Running for the first time, `seconds` after its node's creation."""
        self.machine_startup.labels(provider).observe(max(seconds, 0.0))

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """The value of one sample as a scrape would show it (tests; None if absent)."""
        return self.registry.get_sample_value(name, labels or {})


class QueueStats(Protocol):
    """What the workqueue_* families read of a work queue (workqueue.WorkQueue): plain
    ints it keeps anyway, read without a lock (an int read is atomic)."""

    @property
    def name(self) -> str: ...
    @property
    def adds(self) -> int: ...
    @property
    def retries(self) -> int: ...
    def depth(self) -> int: ...


@dataclass(frozen=True)
class _Gauge:
    name: str
    help: str
    value: Callable[[ClusterSummary], int]


CLUSTER_GAUGES = (
    _Gauge("nodecluster_target_nodes", "spec.targetNodes", lambda s: s.target),
    _Gauge(
        "nodecluster_current_nodes",
        "ClusterNodes that exist (status.currentNodes)",
        lambda s: s.current,
    ),
    _Gauge(
        "nodecluster_ready_nodes", "Nodes whose machine runs (status.readyNodes)", lambda s: s.ready
    ),
    _Gauge("nodecluster_stopped_nodes", "Nodes whose machine is stopped", lambda s: s.stopped),
    _Gauge(
        "nodecluster_warm_nodes",
        "Warm-pool nodes, kept outside the target (status.warmNodes)",
        lambda s: s.warm,
    ),
    _Gauge(
        "nodecluster_unhealthy_nodes",
        "Nodes found unhealthy (status.unhealthyNodes)",
        lambda s: s.unhealthy,
    ),
    _Gauge(
        "nodecluster_updated_nodes", "Nodes built from the current profile", lambda s: s.updated
    ),
)


class FleetCollector(Collector):
    """The per-cluster, per-provider and per-queue families, computed at scrape time from
    snapshots of the summaries (see the module's docstring on threads)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        clusters = list(m.clusters.items())
        yield from _cluster_families(clusters)
        yield from _machine_families(list(m.machine_events.items()))
        yield from _provider_families(list(m.providers.items()))
        yield from _queue_families(m.queues)
        leader = GaugeMetricFamily(
            "nodecluster_leader",
            "1 when this replica acts (holds the leader Lease, or runs without election), "
            "0 while it stands by",
        )
        leader.add_metric([], 1 if m.leading else 0)
        yield leader


def _cluster_families(clusters: list[tuple[NsName, ClusterSummary]]) -> Iterator[Metric]:
    pair = ["namespace", "cluster"]
    info = GaugeMetricFamily(
        "nodecluster_info",
        "A NodeCluster served by this operator, and its NodeProvider",
        labels=[*pair, "provider"],
    )
    gauges = [GaugeMetricFamily(g.name, g.help, labels=pair) for g in CLUSTER_GAUGES]
    state = GaugeMetricFamily(
        "nodecluster_state",
        "status.state as a state set: 1 for the cluster's state, 0 for the others",
        labels=[*pair, "state"],
    )
    conditions = GaugeMetricFamily(
        "nodecluster_condition",
        "1 for each condition a NodeCluster has, by type, status and reason",
        labels=[*pair, "type", "status", "reason"],
    )
    fields = [(family, g.value) for family, g in zip(gauges, CLUSTER_GAUGES, strict=True)]
    for (namespace, name), s in clusters:
        info.add_metric([namespace, name, s.provider], 1)
        for family, value in fields:
            family.add_metric([namespace, name], value(s))
        for candidate in STATES:
            state.add_metric([namespace, name, candidate], 1 if candidate == s.state else 0)
        for ctype, cstatus, reason in s.conditions:
            conditions.add_metric([namespace, name, ctype, cstatus, reason], 1)
    yield info
    yield from gauges
    yield state
    yield conditions
    yield from _usage_families(clusters)


def _usage_families(clusters: list[tuple[NsName, ClusterSummary]]) -> Iterator[Metric]:
    """The cost families of clusters that have billed anything, brought up to now."""
    pair = ["namespace", "cluster"]
    rate = GaugeMetricFamily(
        "nodecluster_hourly_cost",
        "Estimated cost per hour of the machines a NodeCluster holds now (buckets' hourlyCost)",
        labels=pair,
    )
    machine_hours = CounterMetricFamily(
        "nodecluster_machine_hours", "Machine-hours since the NodeCluster was created", labels=pair
    )
    core_hours = CounterMetricFamily(
        "nodecluster_core_hours", "Core-hours since the NodeCluster was created", labels=pair
    )
    cost = CounterMetricFamily(
        "nodecluster_cost",
        "Estimated cost since the NodeCluster was created (unit of the buckets' hourlyCost)",
        labels=pair,
    )
    month = GaugeMetricFamily(
        "nodecluster_month_cost",
        "Estimated cost of the NodeCluster in the current calendar month (UTC)",
        labels=pair,
    )
    at = time.time()
    for (namespace, name), s in clusters:
        if s.usage is None:
            continue
        mh, ch, total, this_month = s.usage.now(at)
        labels = [namespace, name]
        rate.add_metric(labels, s.usage.hourly_cost)
        machine_hours.add_metric(labels, mh)
        core_hours.add_metric(labels, ch)
        cost.add_metric(labels, total)
        month.add_metric(labels, this_month)
    yield from (rate, machine_hours, core_hours, cost, month)


def _machine_families(
    events: list[tuple[NsName, dict[tuple[MachineEvent, str], int]]],
) -> Iterator[Metric]:
    families = {
        event: CounterMetricFamily(
            f"nodecluster_machines_{event}", text, labels=["namespace", "cluster", "reason"]
        )
        for event, text in MACHINE_EVENTS.items()
    }
    for (namespace, name), counts in events:
        for (event, reason), count in list(counts.items()):
            families[event].add_metric([namespace, name, reason], count)
    yield from families.values()


def _provider_families(providers: list[tuple[str, ProviderSummary]]) -> Iterator[Metric]:
    def family(name: str, text: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, text, labels=["provider"])

    nodes = family("nodeprovider_nodes", "Machines this installation holds through the provider")
    nodes_limit = family("nodeprovider_nodes_limit", "spec.quotas.maxNodes (absent if unset)")
    cores = family("nodeprovider_cores", "Cores of the machines this installation holds")
    cores_limit = family("nodeprovider_cores_limit", "spec.quotas.maxCores (absent if unset)")
    ready = family("nodeprovider_ready", "1 when the provider is Ready for this installation")
    cost = family(
        "nodeprovider_hourly_cost", "Cost per hour of the machines held or being created here"
    )
    cost_limit = family(
        "nodeprovider_hourly_cost_limit", "spec.quotas.maxHourlyCost (absent if unset)"
    )
    for name, s in providers:
        cost.add_metric([name], s.hourly_cost)
        if s.hourly_cost_limit is not None:
            cost_limit.add_metric([name], s.hourly_cost_limit)
        nodes.add_metric([name], s.nodes)
        cores.add_metric([name], s.cores)
        ready.add_metric([name], 1 if s.ready else 0)
        if s.nodes_limit is not None:
            nodes_limit.add_metric([name], s.nodes_limit)
        if s.cores_limit is not None:
            cores_limit.add_metric([name], s.cores_limit)
    yield from (nodes, nodes_limit, cores, cores_limit, ready, cost, cost_limit)


def _queue_families(queues: Sequence[QueueStats]) -> Iterator[Metric]:
    depth = GaugeMetricFamily("workqueue_depth", "Keys waiting in a work queue", labels=["name"])
    adds = CounterMetricFamily("workqueue_adds", "Keys added to a work queue", labels=["name"])
    retries = CounterMetricFamily(
        "workqueue_retries", "Keys run again after their reconcile failed", labels=["name"]
    )
    for queue in queues:
        depth.add_metric([queue.name], queue.depth())
        adds.add_metric([queue.name], queue.adds)
        retries.add_metric([queue.name], queue.retries)
    yield from (depth, adds, retries)


# The endpoint.


def parse_address(value: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::]:9090` for IPv6; port 0: any free port) as (host, port); ValueError
    saying what is wrong otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r}: expected HOST:PORT, e.g. 0.0.0.0:8080 or [::]:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: the port must be a number from 0 to 65535")
    return host, int(port)


@dataclass
class MetricsServer:
    """The endpoint, serving in a daemon thread until `close`."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def address(self) -> str:
        """`host:port` as bound (the port chosen when 0 was asked for)."""
        host, port = self.server.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(metrics: Metrics, address: str) -> MetricsServer:
    """Serve `metrics` at http://`address`/metrics (any path answers), in a daemon thread.
    The bound address is logged: with port 0 it is how one finds it."""
    host, port = parse_address(address)
    try:
        server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as err:  # in use, or not an address of this host
        raise SystemExit(f"cannot serve metrics at {address}: {err}") from err
    served = MetricsServer(server, thread)
    log.info("Metrics served at http://%s/metrics", served.address)
    return served
