"""`python -m bench`: run every phase once and print one JSON object on stdout.

    python -m bench                 # 100 x 10 nodes, 1,000 / 10,000 idle clusters
    python -m bench --quick         # 10 x 10 nodes, 100 / 1,000 idle clusters: a smoke run
    python -m bench --latency 10    # provider create latency 10 s (jitter 0.2)
    python -m bench --skip-idle     # baseline, converge and scale-in (and failover) only
    python -m bench --skip-failover # without the last phase: two replicas, the leader killed
    python -m bench --out DIR       # where the JSON and the converge plot go (bench-out/)
    python -m bench --large         # on demand: 1 x 10,000 nodes, then 1,000 x 100 (~1 h)
    python -m bench --skip-warm-pool  # without timing N nodes to ready with / without a pool

The JSON goes to stdout and, with a PNG plot of the converge (bench/plot.py), to
DIR/bench-<UTC time>-<revision>.json and .png. Progress goes to stderr. Nothing here
asserts on time: the figures are for people and for comparing runs (bench/README.md says
what each one means and what it should be).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import large, phases, planning, plot, warmpool
from bench.audit import AuditLog, conflicts
from bench.cluster import ROOT, ControlPlane, connect, install, say, server_version
from bench.phases import Bench, Options
from bench.process import OperatorProcess, control_plane_pids
from bench.timeline import Series
from nodecluster.controllers.world import Settings

TARGETS = {
    "converge_ratio": "<= 1.5",
    # Issue 14: against the writes a managed node cannot do without (create + status).
    "converge_ratio_floor": "<= 1.3",
    "api_writes_per_node": "<= 3",
    "rss_kb_per_nodecluster": "<= 10",
    "idle_cpu_millicores_10k": "~ 0",
    "restart_writes_10k": "== 0",
    # The Lease's duration (15 s), then a retry period and the first reconcile.
    "failover_seconds": "<= 18",
}


def parse(argv: list[str] | None) -> tuple[Options, argparse.Namespace]:
    """Command line -> what to measure."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="10 clusters x 10 nodes, 100 / 1,000 idle clusters (a smoke run)",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="the simulator's createLatencySeconds (latencyJitter 0.2); default 0",
    )
    parser.add_argument("--skip-idle", action="store_true", help="skip the idle/restart phase")
    parser.add_argument(
        "--skip-failover",
        action="store_true",
        help="skip the failover phase (two replicas on a Lease, the leader killed)",
    )
    parser.add_argument(
        "--large",
        action="store_true",
        help="instead of the regular phases: one NodeCluster of 10,000 nodes (converge and "
        "scale-in against a floor baseline of 10,000), then 100,000 nodes in 1,000 clusters "
        "(memory per node, restart); on demand, most of an hour (bench/large.py)",
    )
    parser.add_argument(
        "--skip-planning",
        action="store_true",
        help="skip timing the planner at 10,000 and 100,000 nodes (in-process, ~15 s)",
    )
    parser.add_argument(
        "--skip-warm-pool",
        action="store_true",
        help="skip timing N nodes to ready with and without a warm pool (~30 s, bench/warmpool.py)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (logs, audit log)"
    )
    parser.add_argument(
        "--operator-source",
        type=Path,
        metavar="DIR",
        help="run the operator from another checkout, e.g. `git worktree add /tmp/old HEAD~1`, "
        "to compare against (the benchmark itself and its baseline stay this checkout's)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench-out",
        metavar="DIR",
        help="write the JSON and the converge plot (PNG) here too; default bench-out/",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the operator under cProfile (operator-N.prof in the kept work directory; "
        "profiling slows it down, so the figures of such a run are not comparable)",
    )
    args = parser.parse_args(argv)
    options = Options(
        latency_seconds=args.latency, skip_idle=args.skip_idle, skip_failover=args.skip_failover
    )
    if args.quick:
        options = Options(
            clusters=10,
            nodes_per_cluster=10,
            idle_small=100,
            idle_large=1000,
            latency_seconds=args.latency,
            skip_idle=args.skip_idle,
            skip_failover=args.skip_failover,
        )
    return options, args


def git_revision(checkout: Path) -> str:
    """The commit measured, with "+dirty" when its operator/ differs from it."""

    def git(*args: str) -> str:
        proc = subprocess.run(
            ["git", *args], cwd=checkout, capture_output=True, text=True, check=False
        )
        return proc.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "operator")
    return f"{head}+dirty" if dirty else head


def environment(cp: ControlPlane, operator_source: Path | None) -> dict[str, Any]:
    """Facts that explain the figures: versions, cores, memory, load."""
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "operator_source": str(operator_source or ROOT),
        "operator_revision": git_revision(operator_source or ROOT),
        "kubernetes": server_version(cp),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "kopf": version("kopf"),
        "kubernetes_asyncio": version("kubernetes_asyncio"),
    }


Timelines = dict[str, tuple[Series, ...]]


async def measure(
    cp: ControlPlane, work_dir: Path, options: Options, args: argparse.Namespace
) -> tuple[dict[str, Any], Timelines]:
    """Every phase against one control plane; the figures, and the phases over time."""
    identity = install(cp, work_dir)
    say(f"operator identity: {identity.username}")
    tunables = Settings()
    result: dict[str, Any] = {"environment": environment(cp, args.operator_source)}
    admin = await connect(cp.kubeconfig, 100)
    operator_api = await connect(identity.kubeconfig, tunables.api_connections)
    watch_api = await connect(identity.kubeconfig, 1)
    operator = OperatorProcess(
        identity.kubeconfig, work_dir, profile=args.profile, source=args.operator_source
    )
    bench = Bench(
        admin=admin,
        operator_api=operator_api,
        operator_watch_api=watch_api,
        operator=operator,
        audit=AuditLog(cp.audit_log, identity.username),
        options=options,
        concurrency=tunables.concurrency,
        control_plane=control_plane_pids(cp.work_dir),
    )
    try:
        if args.large:
            result |= await large.measure(bench, quick=args.quick)
            return result, bench.timelines
        result |= await phases.baseline(bench, "bench-baseline")
        result |= await phases.floor_baseline(bench, "bench-floor")
        await phases.start_operator(bench, options.latency_seconds)
        started = time.time()
        result |= await phases.converge(bench, "bench-converge")
        result["converge_ratio"] = round(result["converge_seconds"] / result["baseline_seconds"], 3)
        result["converge_ratio_floor"] = round(
            result["converge_seconds"] / result["floor_baseline_seconds"], 3
        )
        result["api_writes_per_node"] = result["converge_writes_per_node"]
        result["api_writes_breakdown"] = result["converge_writes_breakdown"]
        result |= await phases.scale_in(bench, "bench-converge")
        if not args.skip_warm_pool:
            # After scale-in's settle (its figures are taken), before idle's clusters.
            result |= await warmpool.warm_pool(bench, "bench-warm")
        if not options.skip_idle:
            result |= await phases.idle(bench, "bench-idle")
        result["conflicts_409"] = conflicts(bench.audit.between(started))
        if not options.skip_failover:
            # Last: it replaces the operator every other phase measured by two replicas.
            result |= await phases.failover(bench, "bench-converge")
    finally:
        operator.stop()
        for client in (admin, operator_api, watch_api):
            await client.close()
    result["environment"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return result, bench.timelines


def draw_converge(
    path: Path, result: dict[str, Any], timelines: Timelines, options: Options
) -> Path:
    """The converge above the baseline's fastest round, on one time axis."""
    revision = result["environment"]["operator_revision"]
    latency = f", provider latency {options.latency_seconds:g} s" if options.latency_seconds else ""
    title = (
        f"converge {result['converge_seconds']:.2f} s = {result['converge_ratio']:.1f} x baseline"
        f" ({result['baseline_seconds']:.2f} s), operator {revision}{latency}"
    )
    panels = [
        plot.Panel(
            f"operator: {options.clusters} NodeClusters x {options.nodes_per_cluster} nodes,"
            " created at 0 s, until all Deployed",
            timelines["converge"],
            result["converge_seconds"],
        ),
        plot.Panel(
            f"baseline: {options.nodes} ClusterNodes created by the operator's client and"
            " identity, no operator (fastest round)",
            timelines["baseline"],
            result["baseline_seconds"],
        ),
    ]
    return plot.draw(path, title, panels, options.nodes)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the JSON result."""
    options, args = parse(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="nodecluster-bench-"))
    say(f"work directory {work_dir}; options {options}")
    began = time.monotonic()
    ok = False
    # The planner's own time, in this process before anything else runs (issue 14).
    planned = {} if args.skip_planning or args.large else planning.figures()
    if planned:
        say(f"planning: {planned}")
    try:
        with ControlPlane(work_dir=work_dir / "controlplane") as cp:
            result, timelines = asyncio.run(measure(cp, work_dir, options, args))
        result |= planned
        ok = True
    finally:
        if ok and not (args.keep or args.profile):
            shutil.rmtree(work_dir, ignore_errors=True)
        else:
            say(f"logs kept in {work_dir}")
    revision = result["environment"]["operator_revision"]
    stem = args.out / f"bench-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{revision}"
    drawing = time.monotonic()
    if args.large:
        write(stem.with_suffix(".json"), summary(result, options, time.monotonic() - began, True))
        return 0
    try:
        # After the control plane has stopped: drawing competes with nothing measured.
        result["converge_plot"] = str(
            draw_converge(stem.with_suffix(".png"), result, timelines, options)
        )
        say(f"converge plot {result['converge_plot']} ({time.monotonic() - drawing:.1f}s)")
    finally:
        write(stem.with_suffix(".json"), summary(result, options, time.monotonic() - began))
    return 0


def summary(
    result: dict[str, Any], options: Options, wall_seconds: float, large_run: bool = False
) -> dict[str, Any]:
    """The run's JSON object: its options and targets first, the figures, the wall time."""
    targets = large.TARGETS if large_run else TARGETS | planning.PLAN_TARGETS
    return {
        "options": {
            "clusters": options.clusters,
            "nodes_per_cluster": options.nodes_per_cluster,
            "idle_small": options.idle_small,
            "idle_large": options.idle_large,
            "latency_seconds": options.latency_seconds,
            "skip_idle": options.skip_idle,
            "skip_failover": options.skip_failover,
            "large": large_run,
        },
        "targets": targets,
        **result,
        "wall_seconds": round(wall_seconds, 1),
    }


def write(path: Path, result: dict[str, Any]) -> None:
    """The JSON on stdout (as ever: `bench/run > x.json` keeps working) and into `path`."""
    text = json.dumps(result, indent=2) + "\n"
    sys.stdout.write(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    say(f"result {path}")


if __name__ == "__main__":
    raise SystemExit(main())
