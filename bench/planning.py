"""How long one plan takes for a large cluster: scale-in to 0, and a rollout.

The planner is pure and runs on the event loop, so while it plans, watches, every other
cluster and /healthz wait: its time at the sizes the schema allows is a latency every
user of the operator pays. Measured in-process on synthetic nodes (no API server): the
figure is the planner's own, not the controller's.

    python -m bench.planning [--nodes 10000 100000]
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, nargs="+", default=[10_000])
    args = parser.parse_args()
    out = {}
    for n in args.nodes:
        for case in ("scale-in", "rollout"):
            out[f"plan_ms_{case.replace('-', '_')}_{n}"] = time_plan(n, case)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
