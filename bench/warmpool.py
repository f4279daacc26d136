"""The warm pool's point, measured: time to N ready nodes with and without a warm pool.

Two NodeClusters of a NodeProvider of their own whose machines take WARM_CREATE_SECONDS to
create and WARM_POWER_SECONDS to start (the simulator, no jitter: a cloud's minutes and
seconds, scaled down): one with a Stopped warm pool of N, one without. Once the pool is
full (status.warmNodes N, WarmPool True), both are scaled from 0 to N in the same moment,
and each is timed until it reports Deployed with N ready nodes for its new generation (as
a user's `kubectl wait` would see it, polled every 0.1 s). The pool's nodes only need a
start; the other cluster's need a create. Cheap on purpose (N nodes, ~30 s), so it runs
in every `bench/run`; `--skip-warm-pool` leaves it out.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.cluster import say
from bench.phases import MACHINE_TYPE, ZONES, Bench, create_namespace, nodecluster
from bench.watch import in_state
from nodecluster import API_VERSION
from nodecluster.controllers.kubeapi import NODECLUSTERS, NODEPROVIDERS, KubeNotFound

WARM_PROVIDER = "bench-warm"
WARM_NODES = 5
WARM_CREATE_SECONDS = 10.0
WARM_POWER_SECONDS = 1.0
GIVE_UP_SECONDS = 180.0


def warm_provider() -> dict[str, Any]:
    """The simulator with a cloud's shape of latency: creates slow, starts fast."""
    return {
        "apiVersion": API_VERSION,
        "kind": "NodeProvider",
        "metadata": {"name": WARM_PROVIDER},
        "spec": {
            "driver": "simulator",
            "config": {
                "seed": 1,
                "zones": list(ZONES),
                "createLatencySeconds": WARM_CREATE_SECONDS,
                "powerLatencySeconds": WARM_POWER_SECONDS,
            },
            "buckets": [
                {"zone": z, "machineType": MACHINE_TYPE, "cores": 2, "memoryMib": 4096}
                for z in ZONES
            ],
        },
    }


def cluster(namespace: str, name: str, pool: int | None) -> dict[str, Any]:
    body = nodecluster(namespace, name, 0)
    body["spec"]["providerRef"]["name"] = WARM_PROVIDER
    if pool is not None:
        body["spec"]["warmPool"] = {"size": pool, "state": "Stopped"}
    return body


def pool_full(obj: dict[str, Any], size: int) -> bool:
    status = obj.get("status") or {}
    full = any(
        c.get("type") == "WarmPool" and c.get("status") == "True"
        for c in status.get("conditions", [])
    )
    return full and status.get("warmNodes") == size


async def wait_until(bench: Bench, namespace: str, name: str, done: Any, what: str) -> float:
    """Poll one NodeCluster until `done(obj)`; return the monotonic time it was seen."""
    deadline = time.monotonic() + GIVE_UP_SECONDS
    while not done(await bench.admin.get(NODECLUSTERS, namespace, name)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{namespace}/{name}: not {what} after {GIVE_UP_SECONDS}s")
        await asyncio.sleep(0.1)
    return time.monotonic()


async def warm_pool(bench: Bench, namespace: str) -> dict[str, Any]:
    """`warm_pool_time_to_ready_s`: seconds to N ready nodes, with and without a pool."""
    admin = bench.admin
    await admin.create(NODEPROVIDERS, "", warm_provider())
    await create_namespace(admin, namespace)
    await admin.create(NODECLUSTERS, namespace, cluster(namespace, "with-pool", WARM_NODES))
    await admin.create(NODECLUSTERS, namespace, cluster(namespace, "without-pool", None))
    filled = time.monotonic()
    await wait_until(
        bench, namespace, "with-pool", lambda o: pool_full(o, WARM_NODES), "a full pool"
    )
    say(f"warm pool: {WARM_NODES} warm nodes stopped in {time.monotonic() - filled:.1f}s")

    async def scale(name: str) -> float:
        start = time.monotonic()
        await admin.patch(NODECLUSTERS, namespace, name, {"spec": {"targetNodes": WARM_NODES}})
        done = in_state("Deployed", WARM_NODES)
        return await wait_until(bench, namespace, name, done, "Deployed") - start

    with_pool, without_pool = await asyncio.gather(scale("with-pool"), scale("without-pool"))
    say(
        f"warm pool: {WARM_NODES} nodes ready in {with_pool:.2f}s with a pool, "
        f"{without_pool:.2f}s without (create {WARM_CREATE_SECONDS:g}s, "
        f"start {WARM_POWER_SECONDS:g}s)"
    )
    for name in ("with-pool", "without-pool"):
        await admin.delete(NODECLUSTERS, namespace, name)
    await _gone(bench, namespace)
    await admin.delete(NODEPROVIDERS, None, WARM_PROVIDER)
    return {
        "warm_pool_time_to_ready_s": {
            "with_pool": round(with_pool, 3),
            "without_pool": round(without_pool, 3),
            "nodes": WARM_NODES,
            "create_latency_s": WARM_CREATE_SECONDS,
            "power_latency_s": WARM_POWER_SECONDS,
        }
    }


async def _gone(bench: Bench, namespace: str) -> None:
    """Wait until both clusters (and so their machines) are gone."""
    deadline = time.monotonic() + GIVE_UP_SECONDS
    for name in ("with-pool", "without-pool"):
        while True:
            try:
                await bench.admin.get(NODECLUSTERS, namespace, name)
            except KubeNotFound:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{namespace}/{name} not deleted after {GIVE_UP_SECONDS}s")
            await asyncio.sleep(0.2)
