"""Faults lose nothing: random kill -9s of the operator during scale-out, scale-in and
deletion, a flaky and slow provider, and an API server restart mid-reconcile.

After every fault the system must converge, and an audit must find the simulator's
inventory equal to the ClusterNodes, equal to what was declared: zero machines leaked,
zero doubled. The number of kill -9 iterations is NODECLUSTER_CHAOS_ITERATIONS
(20 by default, as CI runs it; 200 or more on demand):

    NODECLUSTER_CHAOS_ITERATIONS=200 tools/test tests/e2e/test_chaos.py
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from kube import Kube, Operator, wait_for
from scenario import Scenario

ITERATIONS = int(os.environ.get("NODECLUSTER_CHAOS_ITERATIONS", "20"))
REPORT = os.environ.get("NODECLUSTER_CHAOS_REPORT")


def audit(sc: Scenario, expected: int, name: str = "workers") -> None:
    """Inventory == ClusterNodes == declared; no machine name was ever created twice."""
    machines = sc.inventory.names(sc.tag(name))
    nodes = {n["metadata"]["name"] for n in sc.nodes(name)}
    assert machines == nodes, (
        f"leaked: {sorted(machines - nodes)}, lost: {sorted(nodes - machines)}"
    )
    assert len(nodes) == expected, f"{len(nodes)} nodes for a target of {expected}"
    created = Counter(c["name"] for c in sc.inventory.calls("create") if c["outcome"] == "created")
    doubled = sorted(n for n, k in created.items() if k > 1)
    assert not doubled, f"machines created twice: {doubled}"


def _record(result: dict[str, object]) -> None:
    if REPORT:
        with Path(REPORT).open("a") as out:
            out.write(json.dumps(result) + "\n")


SEED = int(os.environ.get("NODECLUSTER_CHAOS_SEED", "1"))


def kill_9_rounds(
    scenario: Scenario, operator: Operator, kube: Kube, rng: random.Random, iterations: int
) -> dict[str, object]:
    """Scale out, scale in or delete at random; kill -9 the operator at a random point of
    the work; restart it; wait for convergence and audit. Returns what was injected."""
    faults = Counter[str]()
    target = audits = 0
    for i in range(iterations):
        phase = rng.choice(["scale-out", "scale-in", "delete"])
        exists = bool(scenario.nc())
        if not exists:
            target = 0
        if (phase == "delete" and not exists) or (phase == "scale-in" and target == 0):
            phase = "scale-out"  # nothing to delete or shrink: the fault lands on a creation
        if phase == "delete":
            kube.kubectl("delete", "nodecluster/workers", "-n", scenario.ns, "--wait=false")
            target = 0
        else:
            target = (
                rng.randint(target + 1, target + 8)
                if phase == "scale-out"
                else rng.randint(0, target - 1)
            )
            scenario.make_cluster(targetNodes=target, minNodes=0, maxNodes=50, policies={})
        time.sleep(rng.uniform(0.0, 1.2))  # the fault lands at a random point of the work
        try:
            operator.kill9()
            faults[phase] += 1
        finally:
            operator.start()

        if phase == "delete":
            wait_for(f"iteration {i}: cluster deleted", lambda: scenario.nc() == {}, timeout=120)
            assert scenario.inventory.names(scenario.tag()) == set(), "machines leaked by deletion"
            assert scenario.nodes() == []
        else:
            scenario.wait_converged(target, timeout=120)
            audit(scenario, target)
        audits += 1
    # Reached only if every audit passed: nothing leaked, lost or doubled.
    return {"iterations": iterations, "faults": dict(faults), "audits_passed": audits, "losses": 0}


def test_random_kill_9_during_scale_out_scale_in_and_deletion(
    scenario: Scenario, operator: Operator, kube: Kube
) -> None:
    scenario.make_provider(createLatencySeconds=0.4, deleteLatencySeconds=0.3, latencyJitter=0.5)
    result = kill_9_rounds(scenario, operator, kube, random.Random(SEED), ITERATIONS)
    _record({"test": "kill9", **result})


def test_kill_9_while_the_provider_fails_and_times_out(
    scenario: Scenario, operator: Operator, kube: Kube
) -> None:
    # Faults together: a crash in the middle of retrying a failed or timed-out call, and
    # failures that struck after the call took effect, must still lose nothing.
    scenario.make_provider(
        createLatencySeconds=0.3,
        deleteLatencySeconds=0.2,
        latencyJitter=0.5,
        failureRate=0.2,
        timeoutRate=0.05,
        timeoutSeconds=0.5,
    )
    iterations = max(5, ITERATIONS // 4)
    result = kill_9_rounds(scenario, operator, kube, random.Random(SEED + 1), iterations)
    outcomes = Counter(c["outcome"] for c in scenario.inventory.calls())
    assert outcomes["failed"] > 0, f"no provider failure was injected: {outcomes}"
    _record({"test": "kill9-flaky-provider", **result, "calls": dict(outcomes)})


def test_flaky_and_slow_provider_loses_nothing(scenario: Scenario, kube: Kube) -> None:
    np = scenario.make_provider(failureRate=0.3, timeoutRate=0.1, timeoutSeconds=1.0)
    for target in (8, 3, 10, 0):
        scenario.make_cluster(targetNodes=target, minNodes=0, maxNodes=20, policies={})
        scenario.wait_converged(target, timeout=180)
        audit(scenario, target)
    outcomes = Counter(c["outcome"] for c in scenario.inventory.calls())
    assert outcomes["failed"] > 0 and outcomes["timeout"] > 0, (
        f"no faults were injected: {outcomes}"
    )
    _record({"test": "flaky-provider", "calls": dict(outcomes), "losses": 0})
    del np


def test_a_provider_that_hangs_is_cut_off_and_loses_nothing(scenario: Scenario) -> None:
    # A third of the calls would hang for ten minutes; the NodeProvider allows one second.
    scenario.make_provider(
        spec={"callTimeoutSeconds": 1}, timeoutRate=0.3, timeoutSeconds=600, failureRate=0.0
    )
    for target in (6, 2, 0):
        scenario.make_cluster(targetNodes=target, minNodes=0, maxNodes=20, policies={})
        # Converging well within the hang proves the hung calls were abandoned and retried.
        scenario.wait_converged(target, timeout=120)
        audit(scenario, target)
    hung = Counter(c["op"] for c in scenario.inventory.calls() if c["outcome"] == "timeout")
    assert hung["create"] > 0, f"no create call hung: {dict(hung)}"
    _record({"test": "hanging-provider", "hung_calls": dict(hung), "losses": 0})


def test_api_server_restart_mid_reconcile(scenario: Scenario, kube: Kube) -> None:
    if kube.control_plane is None:
        pytest.skip("needs the local control plane to restart its API server")
    scenario.make_provider(createLatencySeconds=2, latencyJitter=0.5)
    scenario.make_cluster(targetNodes=12, minNodes=0, maxNodes=20, policies={})
    wait_for(
        "creation under way", lambda: len(scenario.inventory.names(scenario.tag())) >= 3, timeout=60
    )

    kube.control_plane.restart_apiserver(downtime=2.0)

    scenario.wait_converged(12, timeout=180)
    audit(scenario, 12)
    scenario.make_cluster(targetNodes=4, minNodes=0, maxNodes=20, policies={})
    time.sleep(0.3)  # let the scale-in start, so the restart lands mid-reconcile
    kube.control_plane.restart_apiserver(downtime=1.0)
    scenario.wait_converged(4, timeout=180)
    audit(scenario, 4)
    _record({"test": "apiserver-restart", "restarts": 2, "losses": 0})
