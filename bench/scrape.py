"""What the metrics endpoint costs at fleet size: the CPU of one scrape and the memory of
the per-cluster summaries, with 10,000 NodeClusters (controllers/metrics.py).

    python -m bench.scrape [--clusters 10000] [--scrapes 5]

Prints JSON. A scrape is `generate_latest` of the operator's registry, what the endpoint
runs for each request (in its own thread): timed as process CPU, the median of a few. The
memory is what tracemalloc sees allocated by filling the summaries as the NodeCluster
controller does, per cluster: a Deployed cluster of 3 nodes with its creates counted, and an
idle one (Empty, as the bench's idle phase makes them: no machine ever counted). The keys
(namespace and name) exist in the operator anyway and are made before measuring. Figures to
compare run to run; nothing asserts on them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc
from datetime import UTC, datetime

from prometheus_client import generate_latest

from nodecluster.api.common import Condition
from nodecluster.api.nodecluster import ClusterState, NodeClusterStatus
from nodecluster.controllers.metrics import Metrics, ProviderSummary, summarize

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def converged_status(state: ClusterState = "Deployed", nodes: int = 3) -> NodeClusterStatus:
    """A converged cluster's status, as the planner derives it."""
    return NodeClusterStatus(
        state=state,
        current_nodes=nodes,
        ready_nodes=nodes,
        updated_nodes=nodes,
        stopped_nodes=0,
        unhealthy_nodes=0,
        conditions=[
            Condition(type="Ready", status="True", reason="Converged", last_transition_time=NOW),
            Condition(type="Reconciling", status="False", reason="Converged"),
            Condition(type="Stalled", status="False", reason="Progressing"),
            Condition(type="Degraded", status="False", reason="AsExpected"),
        ],
    )


def keys(clusters: int) -> list[tuple[str, str]]:
    """(namespace, name) of `clusters` clusters in 100 namespaces."""
    return [(f"team-{i % 100:03d}", f"cluster-{i:05d}") for i in range(clusters)]


def fill(metrics: Metrics, names: list[tuple[str, str]], idle: bool = False) -> None:
    """The clusters `names` reported, as their controller reports them."""
    status = converged_status("Empty", 0) if idle else converged_status()
    for key in names:
        metrics.cluster_seen(key, summarize("sim", 0 if idle else 3, status))
        if not idle:
            metrics.machine_event(key, "created", "ScaleOut", 3)
    nodes = 0 if idle else 3 * len(names)
    metrics.provider_seen("sim", ProviderSummary(nodes, None, 2 * nodes, None, True))


def bytes_per_cluster(names: list[tuple[str, str]], idle: bool) -> tuple[Metrics, int]:
    """Metrics filled with `names`, and the bytes allocated per cluster doing so."""
    metrics = Metrics()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    fill(metrics, names, idle)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return metrics, round((after - before) / len(names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clusters", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=5)
    args = parser.parse_args()

    names = keys(args.clusters)
    _, idle_bytes = bytes_per_cluster(names, idle=True)
    metrics, deployed_bytes = bytes_per_cluster(names, idle=False)

    seconds = []
    size = 0
    for _ in range(args.scrapes):
        start = time.process_time()
        size = len(generate_latest(metrics.registry))
        seconds.append(time.process_time() - start)
    print(
        json.dumps(
            {
                "clusters": args.clusters,
                "metrics_scrape_cpu_seconds": round(statistics.median(seconds), 3),
                "metrics_scrape_bytes": size,
                "metrics_bytes_per_deployed_cluster": deployed_bytes,
                "metrics_bytes_per_idle_cluster": idle_bytes,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
