"""How long one plan takes for a large cluster: scale-in to 0, and a rollout.

The planner is pure and runs on the event loop, so while it plans, watches, every other
cluster and /healthz wait: its time at the sizes the schema allows is a latency every
user of the operator pays. Measured in-process on synthetic nodes (no API server): the
figure is the planner's own, not the controller's.

    python -m bench.planning [--nodes 10000 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

from nodecluster.api.nodecluster import NodeClusterSpec
from nodecluster.planning.model import Declared, NodeView, Observed
from nodecluster.planning.planner import plan

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ZONES = ("a", "b", "c")


def _spec(target: int, zones: bool) -> NodeClusterSpec:
    body = {
        "providerRef": {"name": "p"},
        "profile": {"machineType": "m"},
        "targetNodes": target,
        "maxNodes": 100_000,
    }
    if zones:
        body["policies"] = {"placement": {"zones": [{"name": z} for z in ZONES]}}
    return NodeClusterSpec.model_validate(body)


def _nodes(count: int, profile: str) -> tuple[NodeView, ...]:
    return tuple(
        NodeView(
            name=f"n-{i:06d}",
            created_at=NOW - timedelta(seconds=count - i),
            zone=ZONES[i % len(ZONES)],
            state="Running",
            ready=True,
            profile_hash=profile,
            has_machine=True,
        )
        for i in range(count)
    )


def time_plan(nodes: int, case: str) -> float:
    """Milliseconds of one plan: `scale-in` (every node to 0) or `rollout` (every node
    built from an older profile, default rolling update)."""
    target = 0 if case == "scale-in" else nodes
    spec = _spec(target, zones=True)
    declared = Declared(name="big", spec=spec, generation=2, profile_hash="new")
    views = _nodes(nodes, "new" if case == "scale-in" else "old")
    observed = Observed(nodes=views, now=NOW)
    start = time.perf_counter()
    plan(declared, observed)
    return round((time.perf_counter() - start) * 1000, 1)


async def _loop_hold(nodes: int, case: str) -> float:
    """The longest the event loop waited (ms) while the controller planned a cluster of
    `nodes` (controllers.nodecluster.planned: off the loop from 2,000 nodes): what every
    watch, reconcile and probe of the operator would wait at worst meanwhile."""
    from nodecluster.controllers.nodecluster import planned

    target = 0 if case == "scale-in" else nodes
    declared = Declared(
        name="big", spec=_spec(target, zones=True), generation=2, profile_hash="new"
    )
    observed = Observed(nodes=_nodes(nodes, "new" if case == "scale-in" else "old"), now=NOW)
    loop = asyncio.get_running_loop()
    worst = 0.0
    done = False

    async def tick() -> None:
        nonlocal worst
        last = loop.time()
        while not done:
            await asyncio.sleep(0.001)
            now = loop.time()
            worst = max(worst, now - last - 0.001)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    await planned(declared, observed)
    done = True
    await ticker
    return round(worst * 1000, 1)


PLAN_TARGETS = {
    "plan_ms_10k_nodes": "<= 50",
    "plan_ms_100k_nodes": "<= 1000",
    "plan_loop_hold_ms_100k_nodes": "<= 100",
}
"""Issue 14's targets: the slower of the two cases at each size."""


def figures(sizes: tuple[int, ...] = (10_000, 100_000)) -> dict[str, float]:
    """Every case at every size, plus the slower case per size under the keys of
    PLAN_TARGETS (`plan_ms_10k_nodes`, ...)."""
    out: dict[str, float] = {}
    for case in ("scale-in", "rollout"):
        time_plan(100, case)  # warm-up: first calls build what every later plan reuses
    for n in sizes:
        label = f"{n // 1000}k" if n % 1000 == 0 else str(n)
        for case in ("scale-in", "rollout"):
            key = case.replace("-", "_")
            out[f"plan_ms_{key}_{n}"] = time_plan(n, case)
            out[f"plan_loop_hold_ms_{key}_{n}"] = asyncio.run(_loop_hold(n, case))
        out[f"plan_ms_{label}_nodes"] = max(
            out[f"plan_ms_scale_in_{n}"], out[f"plan_ms_rollout_{n}"]
        )
        out[f"plan_loop_hold_ms_{label}_nodes"] = max(
            out[f"plan_loop_hold_ms_scale_in_{n}"], out[f"plan_loop_hold_ms_rollout_{n}"]
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, nargs="+", default=[10_000])
    args = parser.parse_args()
    print(json.dumps(figures(tuple(args.nodes))))


if __name__ == "__main__":
    main()
