"""The `--large` run: the sizes users run, on demand (not CI: it takes most of an hour).

large   -> one NodeCluster of 10,000 nodes from apply to Deployed, then to targetNodes 0
           until Empty and the provider holds nothing; both against the floor baseline
           of 10,000 managed nodes (create + one status patch each, no operator)
fleet   -> 100,000 nodes across 1,000 NodeClusters of 100, on a freshly started operator:
           its memory per node, then a restart with all of them (time, writes, CPU)

The phases are the regular run's (phases.py), played with other sizes, so a figure here
means what its namesake means there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from bench import phases
from bench.audit import breakdown
from bench.cluster import say
from bench.phases import PHASE_QUIET_SECONDS, Bench
from bench.process import wait_settled

LARGE_NODES = 10_000
FLEET_CLUSTERS = 1_000
FLEET_NODES_PER_CLUSTER = 100

TARGETS = {
    "large_converge_ratio_floor": "<= 1.3",
    "large_scale_in_ratio_floor": "<= 1.3",
    "rss_kb_per_node_100k": "<= 5",
    "restart_writes_100k": "== 0",
}


FLEET_GIVE_UP_SECONDS = 3600.0
"""100,000 nodes take ~20-40 min to converge on 2 shared cores; a phase waits this long."""


def sized(bench: Bench, clusters: int, nodes_per_cluster: int) -> Bench:
    """The same clients, operator and audit log, measuring another size."""
    options = dataclasses.replace(
        bench.options,
        clusters=clusters,
        nodes_per_cluster=nodes_per_cluster,
        give_up_after=FLEET_GIVE_UP_SECONDS,
    )
    return dataclasses.replace(bench, options=options, timelines={})


async def large_cluster(bench: Bench, namespace: str, shrink: int) -> dict[str, Any]:
    """One NodeCluster of 10,000 nodes: converge, then scale-in, against the floor."""
    one = sized(bench, 1, LARGE_NODES // shrink)
    floor = await phases.floor_baseline(one, "bench-large-floor", rounds=1)
    await phases.start_operator(one, 0.0)
    converged = await phases.converge(one, namespace)
    scaled = await phases.scale_in(one, namespace)
    floor_seconds = floor["floor_baseline_seconds"]
    out: dict[str, Any] = {"large_floor_baseline_seconds": floor_seconds}
    for key in ("seconds", "writes_per_node", "writes_breakdown", "cpu_seconds"):
        out[f"large_converge_{key}"] = converged[f"converge_{key}"]
        out[f"large_scale_in_{key}"] = scaled[f"scale_in_{key}"]
    out["large_operator_cpu_ms_per_node"] = converged["operator_cpu_ms_per_node"]
    out["large_converge_ratio_floor"] = round(converged["converge_seconds"] / floor_seconds, 3)
    out["large_scale_in_ratio_floor"] = round(scaled["scale_in_seconds"] / floor_seconds, 3)
    out["large_converge_slowest_machine_seconds"] = converged["converge_slowest_machine_seconds"]
    return out


async def fleet(bench: Bench, namespace: str, shrink: int) -> dict[str, Any]:
    """100,000 nodes in 1,000 clusters on a fresh operator: memory per node, and a restart.

    The operator is started again first, so the memory the 10,000-node cluster left in
    its allocator does not hide what the fleet takes."""
    many = sized(bench, FLEET_CLUSTERS // shrink, FLEET_NODES_PER_CLUSTER // shrink)
    nodes = many.options.nodes
    many.operator.kill()
    many.operator.start()
    await wait_settled(many.operator, many.audit, quiet_seconds=PHASE_QUIET_SECONDS)
    rss_before = many.operator.rss_kb()
    converged = await phases.converge(many, namespace)
    await wait_settled(many.operator, many.audit, quiet_seconds=PHASE_QUIET_SECONDS)
    rss_after = many.operator.rss_kb()
    say(f"fleet: {nodes} nodes, VmRSS {rss_before} -> {rss_after} KiB")

    many.operator.kill()
    start, wall0 = time.monotonic(), time.time()
    many.operator.start()
    settled, _ = await wait_settled(many.operator, many.audit, give_up_after=FLEET_GIVE_UP_SECONDS)
    restart_cpu = many.operator.cpu_seconds()
    await asyncio.sleep(PHASE_QUIET_SECONDS)  # (as the regular restart: late writes count)
    restart_writes = many.audit.between(wall0)
    say(f"fleet restart: settled after {settled - start:.2f}s, {len(restart_writes)} writes")
    return {
        "fleet_nodes": nodes,
        "fleet_converge_seconds": converged["converge_seconds"],
        "fleet_writes_per_node": converged["converge_writes_per_node"],
        "fleet_operator_cpu_ms_per_node": converged["operator_cpu_ms_per_node"],
        "rss_kb_before_fleet": rss_before,
        "rss_kb_at_100k": rss_after,
        "rss_kb_per_node_100k": round((rss_after - rss_before) / nodes, 3),
        "restart_seconds_100k": round(settled - start, 3),
        "restart_writes_100k": len(restart_writes),
        "restart_writes_breakdown_100k": breakdown(restart_writes),
        "restart_cpu_seconds_100k": round(restart_cpu, 2),
        "restart_rss_kb_100k": many.operator.rss_kb(),
    }


async def measure(bench: Bench, quick: bool = False) -> dict[str, Any]:
    """Both large phases, in order (the operator started by the first). `quick`: at a
    hundredth of the size (100 nodes; 10 x 10), a smoke run of the code, not a figure."""
    shrink = 100 if quick else 1
    result = await large_cluster(bench, "bench-large", shrink)
    try:
        result |= await fleet(bench, "bench-fleet", 10 if quick else 1)
    except (TimeoutError, RuntimeError) as err:
        # The large cluster's figures stand; say what the fleet did not do.
        say(f"fleet: {err}")
        result["fleet_error"] = str(err)
    return result
