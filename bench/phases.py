"""The benchmark's phases, in the order one run plays them.

baseline  -> the practical limit: the same client library, identity and concurrency as the
             operator, creating as many ClusterNodes and watching them appear
converge  -> the operator takes N NodeClusters x M nodes from apply to Deployed
scale-in  -> all of them to targetNodes 0, until Empty and the provider holds nothing
warm pool -> N nodes to ready with and without a warm pool, at a cloud's shape of latency
             (bench/warmpool.py; --skip-warm-pool leaves it out)
idle      -> memory per idle NodeCluster (1,000 vs 10,000), CPU of an idle fleet, and a
             restart with 10,000 NodeClusters: how long until settled, how many writes
failover  -> two replicas electing a leader on a Lease; the leader is killed (SIGKILL) and
             one cluster scaled: how long until the standby acts (last: it replaces the
             operator the other phases measured)

Each phase times what a user would observe through a watch, and reads the operator's
cost from the kernel (/proc) and the API server (audit log), never from the operator.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client as k8s

from bench.audit import AuditLog, Write, breakdown, conflicts, request_counts
from bench.cluster import say
from bench.process import CpuMeter, OperatorProcess, wait_settled
from bench.timeline import Series, cumulative, running_total
from bench.watch import Done, Tracker, in_state, present, ready_reported
from nodecluster import API_VERSION, GROUP, VERSION
from nodecluster.api.clusternode import ClusterNodeSpec
from nodecluster.api.nodecluster import NodeProfile, ProviderRef
from nodecluster.controllers.kube import KubeClient
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.planning.model import CLUSTER_LABEL

PROVIDER = "bench-sim"
MACHINE_TYPE = "small"
ZONES = ("zone-a", "zone-b", "zone-c")
PHASE_QUIET_SECONDS = 6.0
"""A phase's writes are counted until the operator was quiet this long: longer than any
delayed follow-up the operator schedules after a burst (the provider's usage refresh, 5 s)."""


@dataclass(frozen=True)
class Options:
    """What one run measures."""

    clusters: int = 100
    nodes_per_cluster: int = 10
    idle_small: int = 1000
    idle_large: int = 10000
    idle_window_seconds: float = 30.0
    latency_seconds: float = 0.0
    skip_idle: bool = False
    skip_failover: bool = False
    give_up_after: float = 900.0
    """How long converge and scale-in wait before the run fails (the --large fleet: more)."""

    @property
    def nodes(self) -> int:
        """Nodes of the converge phase (and ClusterNodes of the baseline)."""
        return self.clusters * self.nodes_per_cluster


@dataclass
class Bench:
    """Everything the phases share."""

    admin: KubeClient
    """system:masters: creates what a user would create."""
    operator_api: KubeClient
    """The operator's ServiceAccount, with the operator's connection pool (baseline writes)."""
    operator_watch_api: KubeClient
    """The operator's ServiceAccount again, for the baseline's watch (kopf watches on its
    own connections too, so the watch never waits for a pooled write connection)."""
    operator: OperatorProcess
    audit: AuditLog
    options: Options
    concurrency: int
    """The operator's reconcile concurrency (Settings.concurrency)."""
    control_plane: dict[str, int]
    """Process ids of etcd and kube-apiserver (and the controller manager)."""
    timelines: dict[str, tuple[Series, ...]] = field(default_factory=dict)
    """Per phase ("baseline", "converge"): what it observed over time, for the plot."""

    async def requests(self) -> Counter[str]:
        """Requests the API server has served so far, per verb and resource."""
        text = await self.admin.api.call_api(
            "/metrics",
            "GET",
            header_params={"Accept": "text/plain"},
            response_types_map={200: "str"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
        return request_counts(str(text))

    def meter(self) -> CpuMeter:
        """A CPU meter over every process that competes for this machine's cores."""
        pids = dict(self.control_plane)
        pids["bench"] = os.getpid()
        if self.operator.proc is not None:
            pids["operator"] = self.operator.pid
        return CpuMeter(pids)

    @property
    def inventory_path(self) -> Path:
        """The simulator's SQLite file for the benchmark's NodeProvider."""
        return self.operator.simulator_dir / f"{PROVIDER}.db"


async def gather_limited(jobs: list[Awaitable[Any]], limit: int) -> None:
    """Await the jobs concurrently, at most `limit` at once."""
    sem = asyncio.Semaphore(limit)

    async def one(job: Awaitable[Any]) -> None:
        async with sem:
            await job

    await asyncio.gather(*(one(j) for j in jobs))


def machines(path: Path) -> int:
    """Machines at the simulated provider (read-only: the bench never writes its file)."""
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute(
            "SELECT COUNT(*) FROM machines WHERE gone_at IS NULL OR gone_at > ?", (time.time(),)
        ).fetchone()
        return int(row[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def provisioning_times(path: Path) -> dict[str, float]:
    """When the provider got its last machine create, the longest one machine took to
    provision, and when the last one ran (wall clock: the operator's `time.time()`, as the
    simulator recorded it)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute(
            "SELECT MAX(created_at), MAX(ready_at - created_at), MAX(ready_at)"
            " FROM machines WHERE gone_at IS NULL"
        ).fetchone()
    finally:
        db.close()
    last, slowest, ready = (float(v or 0.0) for v in row)
    return {"last_create": last, "slowest": slowest, "last_ready": ready}


def machine_times(path: Path) -> list[tuple[float, float]]:
    """(created_at, ready_at) of every machine the provider holds: when it received the
    create, and when the machine ran (Unix times of the operator's clock)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute(
            "SELECT created_at, ready_at FROM machines WHERE gone_at IS NULL"
        ).fetchall()
    finally:
        db.close()
    return [(float(created), float(ready)) for created, ready in rows]


def creates_of(writes: list[Write], plural: str) -> list[float]:
    """When the server received each create of `plural` that it accepted."""
    return [w.at for w in writes if w.kind == f"create {plural}" and 200 <= w.code < 300]


async def wait_machines(path: Path, count: int, give_up_after: float = 300.0) -> float:
    """Wait until the provider holds exactly `count` machines; return monotonic time."""
    deadline = time.monotonic() + give_up_after
    while (have := machines(path)) != count:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"provider holds {have} machines, not {count}, after {give_up_after}s"
            )
        await asyncio.sleep(0.1)
    return time.monotonic()


def nodeprovider(latency: float) -> dict[str, Any]:
    """The simulator provider: no quota, latency as asked."""
    config: dict[str, Any] = {"seed": 1, "zones": list(ZONES)}
    if latency > 0:
        config |= {"createLatencySeconds": latency, "latencyJitter": 0.2}
    return {
        "apiVersion": API_VERSION,
        "kind": "NodeProvider",
        "metadata": {"name": PROVIDER},
        "spec": {
            "driver": "simulator",
            "config": config,
            "buckets": [
                {"zone": z, "machineType": MACHINE_TYPE, "cores": 2, "memoryMib": 4096}
                for z in ZONES
            ],
        },
    }


def nodecluster(namespace: str, name: str, target: int) -> dict[str, Any]:
    """A NodeCluster as a user would write it: defaults for everything but the size."""
    return {
        "apiVersion": API_VERSION,
        "kind": "NodeCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "providerRef": {"name": PROVIDER},
            "profile": {"machineType": MACHINE_TYPE},
            "targetNodes": target,
        },
    }


def baseline_node(namespace: str, index: int) -> dict[str, Any]:
    """A ClusterNode shaped like the operator's own, but without finalizer or owner."""
    spec = ClusterNodeSpec(
        cluster_name="baseline",
        provider_ref=ProviderRef(name="bench-absent"),
        profile=NodeProfile(machine_type=MACHINE_TYPE),
        profile_hash="0" * 16,
        zone=ZONES[index % len(ZONES)],
    )
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterNode",
        "metadata": {
            "name": f"baseline-{index:05d}",
            "namespace": namespace,
            "labels": {CLUSTER_LABEL: "baseline"},
        },
        "spec": spec.wire(),
    }


async def create_namespace(client: KubeClient, name: str) -> None:
    """Create a namespace (admin)."""
    namespace = k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name))
    await k8s.CoreV1Api(client.api).create_namespace(namespace)


def running(obj: dict[str, Any]) -> bool:
    """Done when a ClusterNode's status says its machine runs (the floor baseline's)."""
    return (obj.get("status") or {}).get("state") == "Running"


def running_status(index: int) -> dict[str, Any]:
    """The status the operator writes once a node's machine runs: one merge patch of about
    the same size (state, ids, zone, type, address, readiness, Ready condition)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "status": {
            "observedGeneration": 1,
            "state": "Running",
            "providerId": f"simulator://floor-{index:05d}",
            "machineName": f"floor-{index:05d}-0123456789",
            "zone": ZONES[index % len(ZONES)],
            "machineType": MACHINE_TYPE,
            "addresses": [{"type": "InternalIP", "address": f"10.0.{index // 250}.{index % 250}"}],
            "ready": True,
            "machineCreatedAt": now,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "MachineRunning",
                    "message": "the machine is running",
                    "lastTransitionTime": now,
                    "observedGeneration": 1,
                }
            ],
        }
    }


async def floor_baseline(bench: Bench, namespace: str, rounds: int = 3) -> dict[str, Any]:
    """The true limit of a managed node: the writes it cannot do without (its create and one
    status patch saying its machine runs), by the operator's client, identity and
    concurrency, each node's patch right after its create; timed until a watch has shown
    every node Running. `converge_ratio_floor` compares the operator with this, where
    `converge_ratio` compares it with creates alone (about two thirds of the API server's
    work: bench/README.md)."""
    count = bench.options.nodes
    writer = bench.operator_api
    await create_namespace(bench.admin, namespace)

    async def managed(index: int) -> None:
        body = baseline_node(namespace, index)
        body["metadata"]["name"] = f"floor-{index:05d}"
        await writer.create(CLUSTERNODES, namespace, body)
        await writer.patch(
            CLUSTERNODES, namespace, body["metadata"]["name"], running_status(index), status=True
        )

    async def round_(first: int, n: int) -> float:
        async with Tracker(bench.operator_watch_api, "clusternodes", namespace, running) as t:
            start = time.monotonic()
            await gather_limited([managed(i) for i in range(first, first + n)], bench.concurrency)
            seconds = await t.wait(n) - start
        await delete_all(bench.admin, "clusternodes", namespace)
        return seconds

    warmup = await round_(0, max(1, count // 10))
    results = [await round_(count * (i + 1), count) for i in range(rounds)]
    seconds = min(results)
    say(
        f"floor baseline: {count} ClusterNodes created, reported Running and watched in "
        f"{seconds:.2f}s (rounds: {', '.join(f'{r:.2f}' for r in results)})"
    )
    return {
        "floor_baseline_seconds": round(seconds, 3),
        "floor_baseline_rounds_seconds": [round(r, 3) for r in results],
        "floor_baseline_warmup_seconds": round(warmup, 3),
    }


async def baseline(bench: Bench, namespace: str, rounds: int = 3) -> dict[str, Any]:
    """Create `nodes` ClusterNodes as the operator's ServiceAccount; time until all watched.

    The operator is not running: nothing but this loop touches the API. A tenth as many
    objects are created (and deleted) first, so neither side pays for a cold server alone.
    Then `rounds` timed rounds: the fastest is the practical limit (the others show how
    much this machine's background load moves it).
    """
    count = bench.options.nodes
    writer = bench.operator_api
    await create_namespace(bench.admin, namespace)

    async def round_(first: int, n: int) -> tuple[float, dict[str, float], tuple[Series, ...]]:
        meter = bench.meter()
        async with Tracker(
            bench.operator_watch_api, "clusternodes", namespace, measure=present
        ) as tracker:
            meter.start()
            start, wall0 = time.monotonic(), time.time()
            await gather_limited(
                [
                    writer.create(CLUSTERNODES, namespace, baseline_node(namespace, i))
                    for i in range(first, first + n)
                ],
                bench.concurrency,
            )
            seconds = await tracker.wait(n) - start
            cpu = meter.stop()
            wall1 = time.time()
        await delete_all(bench.admin, "clusternodes", namespace)
        # Read after the deletion (admin's, not in the operator's writes): by then the
        # server has logged every create of the round.
        created = creates_of(bench.audit.between(wall0, wall1), CLUSTERNODES.plural)
        timeline = (
            cumulative("ClusterNodes created (API server)", "requested", created, wall0),
            running_total("ClusterNodes seen by the watch", "ready", tracker.events, start),
        )
        return seconds, cpu, timeline

    warmup, _, _ = await round_(0, max(1, count // 10))
    results = [await round_(count * (i + 1), count) for i in range(rounds)]
    seconds, cpu, bench.timelines["baseline"] = min(results, key=lambda r: r[0])
    say(
        f"baseline: {count} ClusterNodes created and watched in {seconds:.2f}s "
        f"(rounds: {', '.join(f'{r[0]:.2f}' for r in results)})"
    )
    return {
        "baseline_seconds": seconds,
        "baseline_rounds_seconds": [round(r[0], 3) for r in results],
        "baseline_warmup_seconds": round(warmup, 3),
        "baseline_cpu_seconds": cpu,
    }


async def delete_all(client: KubeClient, plural: str, namespace: str) -> None:
    """Delete every object of a kind in a namespace and wait until they are gone."""
    await k8s.CustomObjectsApi(client.api).delete_collection_namespaced_custom_object(
        GROUP, VERSION, namespace, plural
    )
    async with Tracker(client, plural, namespace) as tracker:
        await tracker.wait(0)


async def start_operator(bench: Bench, latency: float) -> None:
    """Create the NodeProvider, start the operator, wait until it reports the provider Ready
    and then has settled (so converge measures converging, not starting)."""
    admin = bench.admin
    await admin.create(NODEPROVIDERS, "", nodeprovider(latency))
    bench.operator.start()
    deadline = time.monotonic() + 120
    while True:
        bench.operator.check()
        np = await admin.get(NODEPROVIDERS, None, PROVIDER)
        if (np.get("status") or {}).get("phase") == "Ready":
            break
        if time.monotonic() > deadline:
            raise TimeoutError("the operator did not report the NodeProvider Ready in 120s")
        await asyncio.sleep(0.1)
    await wait_settled(bench.operator, bench.audit, quiet_seconds=PHASE_QUIET_SECONDS)
    say(f"operator {bench.operator.pid} running, provider {PROVIDER} Ready")


def write_figures(writes: list[Write], nodes: int, prefix: str) -> dict[str, Any]:
    """Writes per node, their breakdown, and conflicts, under a phase's prefix."""
    return {
        f"{prefix}_writes": len(writes),
        f"{prefix}_writes_per_node": round(len(writes) / max(nodes, 1), 3),
        f"{prefix}_writes_breakdown": breakdown(writes),
        f"{prefix}_conflicts_409": conflicts(writes),
    }


async def converge(bench: Bench, namespace: str) -> dict[str, Any]:
    """N NodeClusters x M nodes, created concurrently by admin, until all are Deployed."""
    o = bench.options
    admin = bench.admin
    await create_namespace(bench.admin, namespace)
    names = [f"conv-{i:04d}" for i in range(o.clusters)]
    done = in_state("Deployed", o.nodes_per_cluster)
    meter = bench.meter()
    async with Tracker(
        bench.admin, "nodeclusters", namespace, done, measure=ready_reported
    ) as tracker:
        requests0 = await bench.requests()
        meter.start()
        cpu0, start, wall0 = bench.operator.cpu_seconds(), time.monotonic(), time.time()
        await gather_limited(
            [
                admin.create(
                    NODECLUSTERS, namespace, nodecluster(namespace, n, o.nodes_per_cluster)
                )
                for n in names
            ],
            len(names),
        )
        deployed = await tracker.wait(o.clusters, give_up_after=o.give_up_after)
        cpu1, wall1 = bench.operator.cpu_seconds(), time.time()
        cpu = meter.stop()
        requests = await bench.requests() - requests0
    await wait_machines(bench.inventory_path, o.nodes, o.give_up_after)
    seconds = deployed - start
    times = provisioning_times(bench.inventory_path)
    say(f"converge: {o.clusters} x {o.nodes_per_cluster} Deployed in {seconds:.2f}s")
    _, settled_wall = await wait_settled(
        bench.operator, bench.audit, quiet_seconds=PHASE_QUIET_SECONDS
    )
    writes = bench.audit.between(wall0, settled_wall)
    in_window = bench.audit.between(wall0, wall1)
    provider = machine_times(bench.inventory_path)
    bench.timelines["converge"] = (
        cumulative(
            "ClusterNodes created (API server)",
            "requested",
            creates_of(writes, CLUSTERNODES.plural),
            wall0,
        ),
        cumulative("machine creates at the provider", "provider", (c for c, _ in provider), wall0),
        cumulative("machines running at the provider", "running", (r for _, r in provider), wall0),
        running_total("Ready nodes in NodeCluster status (watch)", "ready", tracker.events, start),
    )
    return {
        "converge_seconds": seconds,
        "operator_cpu_ms_per_node": round((cpu1 - cpu0) * 1000 / o.nodes, 3),
        "converge_writes_in_window": len(in_window),
        "converge_cpu_seconds": cpu,
        "converge_api_requests": dict(requests.most_common()),
        # Whether provider calls overlap: serialised, issuing the creates would take about
        # nodes x latency; overlapped, it takes what the API allows, and converge is about
        # that plus the slowest machine plus the last status writes.
        "converge_creates_issued_seconds": round(times["last_create"] - wall0, 3),
        "converge_slowest_machine_seconds": round(times["slowest"], 3),
        "converge_after_last_machine_seconds": round(wall0 + seconds - times["last_ready"], 3),
        **write_figures(writes, o.nodes, "converge"),
    }


async def scale_in(bench: Bench, namespace: str) -> dict[str, Any]:
    """Every converge cluster to targetNodes 0, until Empty and the provider holds nothing."""
    o = bench.options
    admin = bench.admin
    names = [f"conv-{i:04d}" for i in range(o.clusters)]
    meter = bench.meter()
    async with Tracker(bench.admin, "nodeclusters", namespace, in_state("Empty")) as tracker:
        requests0 = await bench.requests()
        meter.start()
        cpu0, start, wall0 = bench.operator.cpu_seconds(), time.monotonic(), time.time()
        await gather_limited(
            [admin.patch(NODECLUSTERS, namespace, n, {"spec": {"targetNodes": 0}}) for n in names],
            len(names),
        )
        empty = await tracker.wait(o.clusters, give_up_after=o.give_up_after)
    gone = await wait_machines(bench.inventory_path, 0, o.give_up_after)
    cpu1 = bench.operator.cpu_seconds()
    cpu = meter.stop()
    requests = await bench.requests() - requests0
    seconds = max(empty, gone) - start
    say(f"scale-in: {o.clusters} clusters Empty, provider empty in {seconds:.2f}s")
    _, settled_wall = await wait_settled(
        bench.operator, bench.audit, quiet_seconds=PHASE_QUIET_SECONDS
    )
    writes = bench.audit.between(wall0, settled_wall)
    return {
        "scale_in_seconds": seconds,
        "scale_in_cpu_ms_per_node": round((cpu1 - cpu0) * 1000 / o.nodes, 3),
        "scale_in_cpu_seconds": cpu,
        "scale_in_api_requests": dict(requests.most_common()),
        **write_figures(writes, o.nodes, "scale_in"),
    }


async def add_idle_clusters(bench: Bench, namespace: str, first: int, count: int) -> float:
    """Create `count` more Empty NodeClusters (admin); return seconds until all are Empty."""
    admin = bench.admin
    async with Tracker(bench.admin, "nodeclusters", namespace, in_state("Empty")) as tracker:
        start = time.monotonic()
        await gather_limited(
            [
                admin.create(NODECLUSTERS, namespace, nodecluster(namespace, f"idle-{i:05d}", 0))
                for i in range(first, first + count)
            ],
            100,
        )
        return await tracker.wait(first + count, give_up_after=1800) - start


async def idle(bench: Bench, namespace: str) -> dict[str, Any]:
    """Memory per idle NodeCluster, idle CPU, and a restart, at 1,000 / 10,000 clusters.

    The converge phase's clusters, now Empty, count towards the totals.
    """
    o = bench.options
    await create_namespace(bench.admin, namespace)
    small = o.idle_small - o.clusters
    seconds = await add_idle_clusters(bench, namespace, 0, small)
    await wait_settled(bench.operator, bench.audit, quiet_seconds=PHASE_QUIET_SECONDS)
    rss_small = bench.operator.rss_kb()
    say(f"idle: {o.idle_small} NodeClusters Empty ({seconds:.1f}s), VmRSS {rss_small} KiB")

    wall0 = time.time()
    seconds = await add_idle_clusters(bench, namespace, small, o.idle_large - o.idle_small)
    _, settled_wall = await wait_settled(
        bench.operator, bench.audit, quiet_seconds=PHASE_QUIET_SECONDS
    )
    writes = bench.audit.between(wall0, settled_wall)
    rss_large = bench.operator.rss_kb()
    added = o.idle_large - o.idle_small
    say(f"idle: {o.idle_large} NodeClusters Empty ({seconds:.1f}s), VmRSS {rss_large} KiB")

    cpu0, start, wall0 = bench.operator.cpu_seconds(), time.monotonic(), time.time()
    await asyncio.sleep(o.idle_window_seconds)
    cpu1, end = bench.operator.cpu_seconds(), time.monotonic()
    idle_writes = bench.audit.between(wall0)
    millicores = (cpu1 - cpu0) * 1000 / (end - start)
    say(f"idle: {millicores:.1f} millicores over {end - start:.0f}s")

    bench.operator.kill()
    start, wall0 = time.monotonic(), time.time()
    bench.operator.start()
    settled, settled_wall = await wait_settled(bench.operator, bench.audit)
    restart_cpu = bench.operator.cpu_seconds()
    await asyncio.sleep(PHASE_QUIET_SECONDS)
    restart_writes = bench.audit.between(wall0)
    late_writes = bench.audit.between(settled_wall)
    say(f"restart: settled after {settled - start:.2f}s, {len(restart_writes)} writes")
    return {
        "rss_kb_per_nodecluster": round((rss_large - rss_small) / added, 3),
        "rss_kb_at_small": rss_small,
        "rss_kb_at_large": rss_large,
        "idle_create_writes_per_nodecluster": round(len(writes) / added, 3),
        "idle_create_writes_breakdown": breakdown(writes),
        "idle_cpu_millicores_10k": round(millicores, 2),
        "idle_writes_10k": len(idle_writes),
        "restart_seconds_10k": round(settled - start, 3),
        "restart_writes_10k": len(restart_writes),
        "restart_writes_after_settled_10k": len(late_writes),
        "restart_cpu_seconds_10k": round(restart_cpu, 2),
        "restart_rss_kb_10k": bench.operator.rss_kb(),
    }


LEASE_NAME = "nodecluster-operator"
"""The Lease of manifests/base (the chart's default: its full name), whose RBAC the
operator's ServiceAccount has: get and patch on it, create, in LEASE_NAMESPACE only."""
LEASE_NAMESPACE = "nodecluster-system"
LEASES = frozenset({"leases"})
FAILOVER_CLUSTER = "conv-0000"


def replicas(bench: Bench) -> tuple[OperatorProcess, OperatorProcess]:
    """Two operators as the chart runs them: --leader-elect on the chart's Lease, default
    timings (15 s / 10 s / 2 s), each named as a pod would be, one simulator directory."""
    o = bench.operator
    args = ("--leader-elect", "--lease-name", LEASE_NAME, "--lease-namespace", LEASE_NAMESPACE)

    def replica(who: str) -> OperatorProcess:
        return OperatorProcess(
            o.kubeconfig,
            o.work_dir,
            source=o.source,
            name=f"replica-{who}",
            args=args,
            env={"POD_NAME": f"bench-replica-{who}"},
        )

    return replica("a"), replica("b")


async def lease_holder(bench: Bench) -> str:
    """The Lease's holderIdentity ("" when there is no Lease or no holder)."""
    coordination = k8s.CoordinationV1Api(bench.admin.api)
    try:
        lease = await coordination.read_namespaced_lease(LEASE_NAME, LEASE_NAMESPACE)
    except k8s.ApiException as err:
        if err.status == 404:
            return ""
        raise
    return str(lease.spec.holder_identity or "")


async def wait_holder(bench: Bench, prefix: str, give_up_after: float = 120.0) -> str:
    """Wait until a process of the replica `prefix` holds the Lease; return its identity."""
    deadline = time.monotonic() + give_up_after
    while not (holder := await lease_holder(bench)).startswith(f"{prefix}_"):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{prefix} does not hold the Lease after {give_up_after}s: {holder!r}"
            )
        await asyncio.sleep(0.1)
    return holder


async def first_write(
    bench: Bench, since: float, keep: Callable[[Write], bool], give_up_after: float = 120.0
) -> float:
    """Unix time of the operator's first accepted write after `since` that `keep` keeps."""
    deadline = time.monotonic() + give_up_after
    while True:
        found = [w.at for w in bench.audit.between(since) if keep(w) and 200 <= w.code < 300]
        if found:
            return min(found)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no operator write {give_up_after}s after the leader's kill")
        await asyncio.sleep(0.1)


async def wait_cluster(
    bench: Bench, namespace: str, done: Done, give_up_after: float = 120.0
) -> float:
    """Wait until FAILOVER_CLUSTER is `done` (polled: one object, no watch to set up, and
    nothing of this phase is measured in requests); return monotonic time."""
    deadline = time.monotonic() + give_up_after
    while not done(await bench.admin.get(NODECLUSTERS, namespace, FAILOVER_CLUSTER)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{FAILOVER_CLUSTER} not done {give_up_after}s after the kill")
        await asyncio.sleep(0.1)
    return time.monotonic()


async def failover(bench: Bench, namespace: str) -> dict[str, Any]:
    """Kill the leader of two replicas, scale one cluster by +1: how long until the standby
    writes (its first reconcile), and that it converges the cluster alone.

    The operator of the other phases is stopped (gracefully) and two replicas take its
    place: `a` first, so that it leads, then `b`, which stands by with warm caches (it has
    listed and watched everything). Once both are quiet (the leader's Lease renewals aside),
    `a` is killed with SIGKILL, as a node failure would: no release of the Lease, so `b`
    must wait for the Lease to expire (its duration, 15 s, after `b` last saw it renewed).
    Right after the kill one NodeCluster is scaled by +1: `failover_seconds` is from the
    kill until the server received the operator's first write that is not to the Lease
    (audit log), i.e. the standby's first reconcile that acts; `failover_lease_seconds`
    until it took the Lease; `failover_converge_seconds` until the cluster was Deployed
    with its new node, the provider then holding exactly that many machines.
    """
    o = bench.options
    bench.operator.stop()
    a, b = replicas(bench)
    try:
        a.start()
        await wait_holder(bench, "bench-replica-a")
        b.start()
        await wait_settled(a, bench.audit, quiet_seconds=PHASE_QUIET_SECONDS, ignore=LEASES)
        await wait_settled(b, bench.audit, quiet_seconds=2.0, ignore=LEASES)
        cluster = await bench.admin.get(NODECLUSTERS, namespace, FAILOVER_CLUSTER)
        target = int(cluster["spec"]["targetNodes"]) + 1
        machines_before = machines(bench.inventory_path)
        start, killed = time.monotonic(), time.time()
        a.kill()
        await bench.admin.patch(
            NODECLUSTERS, namespace, FAILOVER_CLUSTER, {"spec": {"targetNodes": target}}
        )
        acted = await first_write(bench, killed, lambda w: w.resource not in LEASES)
        took = await first_write(bench, killed, lambda w: w.resource in LEASES)
        deployed = await wait_cluster(bench, namespace, in_state("Deployed", target))
        await wait_machines(bench.inventory_path, machines_before + 1)
        holder = await wait_holder(bench, "bench-replica-b", give_up_after=0)
        b.check()
        say(
            f"failover: {holder} took the Lease {took - killed:.2f}s after the leader's kill, "
            f"wrote {acted - killed:.2f}s after it, {FAILOVER_CLUSTER} Deployed with {target} "
            f"node(s) {deployed - start:.2f}s after it"
        )
        return {
            "failover_seconds": round(acted - killed, 3),
            "failover_lease_seconds": round(took - killed, 3),
            "failover_converge_seconds": round(deployed - start, 3),
            "failover_clusters": o.idle_large if not o.skip_idle else o.clusters,
        }
    finally:
        b.stop()  # gracefully: it releases the Lease
        a.kill()
