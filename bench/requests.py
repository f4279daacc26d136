"""`python -m bench.requests`: what one request costs the API server, by kind of request.

The converge figure is bound by kube-apiserver CPU on a small machine, so the question
"could the operator's writes be cheaper?" is answered here, by measurement: N ClusterNodes
are created and then have their status patched, as the operator does it (its
ServiceAccount, its client, its concurrency), and the server's CPU (utime+stime from
/proc) is divided by N. Variants show what does and does not matter:

- `status_full`: the status the operator writes for a running machine;
  `status_small`: three fields only (does the size of the status matter?);
- `*_no_cel`: the same against a ClusterNode CRD stripped of its CEL rules (do the
  `self == oldSelf` immutability rules cost anything on every update?).

Each figure is the median of `--rounds` rounds. Prints one JSON object; never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench.cluster import ROOT, ControlPlane, connect, install, say
from bench.phases import baseline_node, gather_limited
from bench.process import control_plane_pids, cpu_seconds_of
from nodecluster.api.clusternode import ClusterNode
from nodecluster.controllers.kube import KubeClient
from nodecluster.controllers.kubeapi import CLUSTERNODES
from nodecluster.controllers.world import Settings
from nodecluster.planning.nodestatus import status_from_machine
from nodecluster.providers.base import Machine

CLUSTERNODE_CRD = ROOT / "crds" / "nodecluster.io_clusternodes.yaml"


def without_cel(node: Any) -> Any:
    """A copy of a CRD document with every x-kubernetes-validations removed."""
    if isinstance(node, dict):
        return {k: without_cel(v) for k, v in node.items() if k != "x-kubernetes-validations"}
    if isinstance(node, list):
        return [without_cel(v) for v in node]
    return node


def running_status(namespace: str, index: int, full: bool) -> dict[str, Any]:
    """The status the operator writes when this node's machine runs (its own
    `status_from_machine`), or a three-field one."""
    if not full:
        return {"state": "Running", "providerId": f"sim://bench/{index}", "ready": True}
    body = baseline_node(namespace, index)
    body["metadata"]["generation"] = 1  # as the API server sets it on create
    node = ClusterNode.model_validate(body)
    now = datetime.now(UTC)
    machine = Machine(
        name=node.metadata.name,
        provider_id=f"sim://zone-a/i-{index:08d}",
        cluster=f"{namespace}/{node.spec.cluster_name}",
        state="Running",
        machine_type=node.spec.profile.machine_type,
        zone=node.spec.zone,
        cores=2,
        created_at=now,
        addresses=(("InternalIP", f"10.0.{index // 250}.{index % 250}"),),
    )
    return status_from_machine(node, machine, now).wire()


async def quiet(pid: int, give_up_after: float = 60.0) -> None:
    """Wait until the API server is idle (under 5% of a core over 1 s): the previous
    round's namespace deletion or a CRD change must not be billed to the next round."""
    deadline = time.monotonic() + give_up_after
    while time.monotonic() < deadline:
        before = cpu_seconds_of(pid)
        await asyncio.sleep(1.0)
        if cpu_seconds_of(pid) - before < 0.05:
            return


async def one_round(
    cp: ControlPlane, client: KubeClient, namespace: str, n: int, full: bool, limit: int
) -> tuple[float, float]:
    """(create ms, status patch ms) of kube-apiserver CPU per request, for n nodes."""
    cp.kubectl("create", "namespace", namespace)
    apiserver = control_plane_pids(cp.work_dir)["kube-apiserver"]
    await quiet(apiserver)
    before = cpu_seconds_of(apiserver)
    await gather_limited(
        [client.create(CLUSTERNODES, namespace, baseline_node(namespace, i)) for i in range(n)],
        limit,
    )
    created = cpu_seconds_of(apiserver)
    await gather_limited(
        [
            client.patch(
                CLUSTERNODES,
                namespace,
                f"baseline-{i:05d}",
                {"status": running_status(namespace, i, full)},
                status=True,
            )
            for i in range(n)
        ],
        limit,
    )
    patched = cpu_seconds_of(apiserver)
    cp.kubectl("delete", "namespace", namespace, "--timeout=300s")
    return 1000 * (created - before) / n, 1000 * (patched - created) / n


async def measure(cp: ControlPlane, work: Path, n: int, rounds: int) -> dict[str, Any]:
    """Every variant, `rounds` times each, medians in ms of server CPU per request."""
    identity = install(cp, work)
    settings = Settings()
    client = await connect(identity.kubeconfig, settings.api_connections)
    samples: dict[str, list[float]] = {}
    stripped = work / "clusternodes-no-cel.yaml"
    docs = [without_cel(d) for d in yaml.safe_load_all(CLUSTERNODE_CRD.read_text())]
    stripped.write_text(yaml.safe_dump_all(docs))
    try:
        # Variants alternate round by round, so a drift of the server over the run
        # (a growing etcd, a warming cache) is spread over all of them alike.
        for r in range(rounds):
            for crd in ("", "_no_cel"):
                cp.apply_crds([stripped if crd else CLUSTERNODE_CRD])
                for full in (True, False):
                    shape = "full" if full else "small"
                    say(f"round {r + 1}/{rounds}: CRD{crd or ' as generated'}, {shape} status")
                    ns = f"req{crd.replace('_', '-')}-{shape}-{r}"
                    create, patch = await one_round(cp, client, ns, n, full, settings.concurrency)
                    samples.setdefault(f"create{crd}", []).append(create)
                    samples.setdefault(f"status_{shape}{crd}", []).append(patch)
    finally:
        await client.close()
    result: dict[str, Any] = {
        "requests_per_round": n,
        "rounds": rounds,
        "unit": "ms of kube-apiserver CPU per request (median of rounds)",
    }
    for key, values in samples.items():
        result[f"{key}_ms"] = round(statistics.median(values), 2)
        result[f"{key}_rounds_ms"] = [round(v, 2) for v in values]
    return result


def main(argv: list[str] | None = None) -> int:
    """Run every variant against a fresh local control plane; print JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.requests", description=__doc__)
    parser.add_argument("-n", type=int, default=1000, help="requests per kind and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nodecluster-requests-") as tmp:
        work = Path(tmp)
        with ControlPlane(work_dir=work / "controlplane") as cp:
            result = asyncio.run(measure(cp, work, args.n, args.rounds))
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
