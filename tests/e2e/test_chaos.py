"""Faults lose nothing: random kill -9s of the operator during scale-out, scale-in and
deletion and while ScaleOut / ScaleIn / RemoveNodes operations run, a flaky and slow
provider, and an API server restart mid-reconcile.

After every fault the system must converge, and an audit must find the simulator's
inventory equal to the ClusterNodes, equal to what was declared: zero machines leaked,
zero doubled; and every operation must end Succeeded, having moved the target exactly
once. The number of kill -9 iterations is NODECLUSTER_CHAOS_ITERATIONS
(20 by default, as CI runs it; 200 or more on demand):

    NODECLUSTER_CHAOS_ITERATIONS=200 tools/test tests/e2e/test_chaos.py
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kube import Kube, Operator, Timeout, wait_for
from scenario import Operations, Scenario

ITERATIONS = int(os.environ.get("NODECLUSTER_CHAOS_ITERATIONS", "20"))
REPORT = os.environ.get("NODECLUSTER_CHAOS_REPORT")


@dataclass(frozen=True)
class Findings:
    """What one look at a cluster found: the provider's machines, the ClusterNodes and
    the declared count, and from them every way a machine can be lost."""

    machines: set[str]
    nodes: set[str]
    declared: int
    doubled: list[str]
    """Machine names the provider created more than once, over the whole test so far."""

    @property
    def leaked(self) -> list[str]:
        """Machines at the provider that no ClusterNode owns."""
        return sorted(self.machines - self.nodes)

    @property
    def without_machine(self) -> list[str]:
        """ClusterNodes whose machine does not exist."""
        return sorted(self.nodes - self.machines)

    @property
    def missing(self) -> int:
        """Declared nodes that do not exist at all (fewer ClusterNodes than declared)."""
        return max(0, self.declared - len(self.nodes))

    @property
    def surplus(self) -> int:
        """ClusterNodes beyond the declared count (a scale-in that left some behind)."""
        return max(0, len(self.nodes) - self.declared)


def survey(sc: Scenario, declared: int, name: str = "workers") -> Findings:
    """The provider's inventory, the ClusterNodes and the create calls, read once."""
    created = Counter(c["name"] for c in sc.inventory.calls("create") if c["outcome"] == "created")
    return Findings(
        machines=sc.inventory.names(sc.tag(name)),
        nodes={n["metadata"]["name"] for n in sc.nodes(name)},
        declared=declared,
        doubled=sorted(n for n, k in created.items() if k > 1),
    )


def audit(sc: Scenario, expected: int, name: str = "workers") -> Findings:
    """Inventory == ClusterNodes == declared; no machine name was ever created twice."""
    found = survey(sc, expected, name)
    assert found.machines == found.nodes, f"leaked: {found.leaked}, lost: {found.without_machine}"
    assert len(found.nodes) == expected, f"{len(found.nodes)} nodes for a target of {expected}"
    assert not found.doubled, f"machines created twice: {found.doubled}"
    return found


@dataclass
class Losses:
    """What a test's audits found lost, summed: the figure its report gives.

    Reported, not asserted: the audits assert. Counting from the findings (rather than
    writing 0 because the asserts passed) keeps the figure true if an audit is loosened."""

    by_kind: Counter[str] = field(default_factory=Counter)
    doubled: set[str] = field(default_factory=set)

    def add(self, found: Findings) -> None:
        self.by_kind["leaked"] += len(found.leaked)
        self.by_kind["without_machine"] += len(found.without_machine)
        self.by_kind["missing"] += found.missing
        self.by_kind["surplus"] += found.surplus
        # The create log covers the whole test, so a doubled name counts once, not per audit.
        self.doubled |= set(found.doubled)

    def report(self) -> dict[str, object]:
        kinds = {k: self.by_kind[k] for k in ("missing", "without_machine", "leaked", "surplus")}
        kinds["doubled"] = len(self.doubled)
        return {"losses": sum(kinds.values()), "losses_by_kind": kinds}


def _record(result: dict[str, object]) -> None:
    if REPORT:
        with Path(REPORT).open("a") as out:
            out.write(json.dumps(result) + "\n")


SEED = int(os.environ.get("NODECLUSTER_CHAOS_SEED", "1"))


def kill_9_rounds(
    scenario: Scenario,
    operator: Operator,
    kube: Kube,
    rng: random.Random,
    iterations: int,
    spec: dict[str, Any] | None = None,
    pool: int = 0,
) -> dict[str, object]:
    """Scale out, scale in or delete at random; kill -9 the operator at a random point of
    the work; restart it; wait for convergence and audit. Returns what was injected and
    what the audits counted lost. `spec` is merged into every cluster written (policies
    default to none); with `pool` > 0 it must declare a warm pool of that size, and each
    audit counts the pool's machines too."""
    spec = {"policies": {}, **(spec or {})}
    faults = Counter[str]()
    losses = Losses()
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
            scenario.make_cluster(targetNodes=target, minNodes=0, maxNodes=50, **spec)
        # Not a wait for anything: the seeded random moment the fault lands, from before the
        # operator has seen the change to after it has finished the work.
        time.sleep(rng.uniform(0.0, 1.2))
        try:
            operator.kill9()
            faults[phase] += 1
        finally:
            operator.start()

        if phase == "delete":
            wait_for(f"iteration {i}: cluster deleted", lambda: scenario.nc() == {}, timeout=120)
            found = survey(scenario, 0)
            assert found.machines == set(), "machines leaked by deletion"
            assert found.nodes == set()
        elif pool:
            wait_pool_converged(scenario, target, pool, timeout=120)
            found = audit(scenario, target + pool)
            assert len(serving(scenario)) == target, f"serving nodes for a target of {target}"
        else:
            scenario.wait_converged(target, timeout=120)
            found = audit(scenario, target)
        losses.add(found)
        audits += 1
    return {
        "iterations": iterations,
        "faults": dict(faults),
        "audits_passed": audits,
        **losses.report(),
    }


def test_random_kill_9_during_scale_out_scale_in_and_deletion(
    scenario: Scenario, operator: Operator, kube: Kube
) -> None:
    scenario.make_provider(createLatencySeconds=0.4, deleteLatencySeconds=0.3, latencyJitter=0.5)
    result = kill_9_rounds(scenario, operator, kube, random.Random(SEED), ITERATIONS)
    _record({"test": "kill9", **result})


POOL_LABEL = "nodecluster.io/pool"


def serving(sc: Scenario) -> list[dict[str, Any]]:
    """The cluster's ClusterNodes outside its warm pool."""
    return [n for n in sc.nodes() if n["metadata"].get("labels", {}).get(POOL_LABEL) != "warm"]


def wait_pool_converged(sc: Scenario, target: int, pool: int, timeout: float) -> None:
    """Converged with a warm pool: `target` serving nodes ready, the pool full (WarmPool
    True), and exactly their machines at the provider (audited after by `audit`)."""

    def probe() -> bool:
        obj = sc.nc()
        st = obj.get("status") or {}
        if st.get("observedGeneration") != obj.get("metadata", {}).get("generation"):
            return False
        counts = (st.get("state"), st.get("readyNodes", 0), st.get("currentNodes", 0))
        if counts != ("Deployed" if target else "Empty", target, target):
            return False
        full = any(
            c["type"] == "WarmPool" and c["status"] == "True" for c in st.get("conditions", [])
        )
        every = {n["metadata"]["name"] for n in sc.nodes()}
        return (
            full
            and st.get("warmNodes") == pool
            and len(every) == target + pool
            and sc.inventory.names(sc.tag()) == every
        )

    try:
        wait_for(f"{sc.ns}/workers converged at {target} nodes and {pool} warm", probe, timeout)
    except Timeout as err:
        raise Timeout(f"{err}; then: {sc.convergence_report()}") from None


class HookCompleter:
    """Completes every node's Launch hook `configure` with Continue, as a Job would: a
    thread that looks every half second (kubectl), while the operator is killed around it."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.completed: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HookCompleter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for node in self.sc.nodes():
                wait = (node.get("status") or {}).get("lifecycleHook") or {}
                name = node["metadata"]["name"]
                if wait.get("name") != "configure":
                    continue
                proc = self.sc.kube.kubectl(
                    "annotate", f"clusternode/{name}", "-n", self.sc.ns, "--overwrite",
                    "hooks.nodecluster.io/configure=Continue", check=False,
                )  # fmt: skip
                if proc.returncode == 0:
                    self.completed.add(name)


def test_random_kill_9_with_a_warm_pool_and_launch_hooks(
    scenario: Scenario, operator: Operator, kube: Kube
) -> None:
    """The kill -9 rounds with a warm pool (promotions on scale-out, returns on scale-in,
    refills) and a Launch hook every new node waits on, warm ones included: the audit counts
    the pool's machines with the serving ones, and nothing is leaked, lost or doubled."""
    scenario.make_provider(
        createLatencySeconds=0.4, deleteLatencySeconds=0.3, powerLatencySeconds=0.2,
        latencyJitter=0.5,
    )  # fmt: skip
    hooks = [{"name": "configure", "transition": "Launch", "timeoutSeconds": 300}]
    spec = {
        "warmPool": {"size": 2, "state": "Stopped", "reuseOnScaleIn": True},
        "policies": {"lifecycleHooks": hooks},
    }
    iterations = max(4, ITERATIONS // 4)
    with HookCompleter(scenario) as hooks_done:
        result = kill_9_rounds(
            scenario, operator, kube, random.Random(SEED + 3), iterations, spec=spec, pool=2
        )
    assert hooks_done.completed, "no node waited on the Launch hook"
    _record({"test": "kill9-warm-pool", **result, "hooks_completed": len(hooks_done.completed)})


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
    losses = Losses()
    for target in (8, 3, 10, 0):
        scenario.make_cluster(targetNodes=target, minNodes=0, maxNodes=20, policies={})
        scenario.wait_converged(target, timeout=180)
        losses.add(audit(scenario, target))
    outcomes = Counter(c["outcome"] for c in scenario.inventory.calls())
    assert outcomes["failed"] > 0 and outcomes["timeout"] > 0, (
        f"no faults were injected: {outcomes}"
    )
    _record({"test": "flaky-provider", "calls": dict(outcomes), **losses.report()})
    del np


def test_a_provider_that_hangs_is_cut_off_and_loses_nothing(scenario: Scenario) -> None:
    # A third of the calls would hang for ten minutes; the NodeProvider allows one second.
    scenario.make_provider(
        spec={"callTimeoutSeconds": 1}, timeoutRate=0.3, timeoutSeconds=600, failureRate=0.0
    )
    losses = Losses()
    for target in (6, 2, 0):
        scenario.make_cluster(targetNodes=target, minNodes=0, maxNodes=20, policies={})
        # Converging well within the hang proves the hung calls were abandoned and retried.
        scenario.wait_converged(target, timeout=120)
        losses.add(audit(scenario, target))
    hung = Counter(c["op"] for c in scenario.inventory.calls() if c["outcome"] == "timeout")
    assert hung["create"] > 0, f"no create call hung: {dict(hung)}"
    _record({"test": "hanging-provider", "hung_calls": dict(hung), **losses.report()})


def test_api_server_restart_mid_reconcile(scenario: Scenario, kube: Kube) -> None:
    if kube.control_plane is None:
        pytest.skip("needs the local control plane to restart its API server")
    scenario.make_provider(createLatencySeconds=2, latencyJitter=0.5)
    scenario.make_cluster(targetNodes=12, minNodes=0, maxNodes=20, policies={})
    wait_for(
        "creation under way", lambda: len(scenario.inventory.names(scenario.tag())) >= 3, timeout=60
    )

    kube.control_plane.restart_apiserver(downtime=2.0)

    losses = Losses()
    scenario.wait_converged(12, timeout=180)
    losses.add(audit(scenario, 12))
    scenario.make_cluster(targetNodes=4, minNodes=0, maxNodes=20, policies={})

    def scale_in_under_way() -> bool:
        # Scale-in deletes ClusterNodes: one being deleted, or gone, means it has started.
        nodes = scenario.nodes()
        return len(nodes) < 12 or any(n["metadata"].get("deletionTimestamp") for n in nodes)

    # The restart must land mid-reconcile, so wait until the scale-in has begun.
    wait_for("the scale-in under way", scale_in_under_way, timeout=60)
    kube.control_plane.restart_apiserver(downtime=1.0)
    scenario.wait_converged(4, timeout=180)
    losses.add(audit(scenario, 4))
    _record({"test": "apiserver-restart", "restarts": 2, **losses.report()})


def test_a_node_deleted_while_the_watches_are_away_is_noticed(
    scenario: Scenario, kube: Kube, operator: Operator
) -> None:
    """The API server restarts while the operator is frozen, and a ClusterNode is removed
    by hand before the operator runs again: its watches resume from a version the new API
    server no longer has (410 Gone), kopf lists every kind again, and no DELETED event
    comes for the node. The audit after a new listing notices it (controllers/relist.py):
    the cluster makes a node in its place and collects the machine left behind. Without
    it the cluster counted the gone node for ever (a CI failure of the test above)."""
    if kube.control_plane is None:
        pytest.skip("needs the local control plane to restart its API server")
    assert operator.proc is not None
    scenario.make_provider()
    scenario.make_cluster(targetNodes=3, minNodes=0, maxNodes=5, policies={})
    scenario.wait_converged(3)
    gone = sorted(n["metadata"]["name"] for n in scenario.nodes())[0]
    ns = ["-n", scenario.ns]

    os.killpg(operator.proc.pid, signal.SIGSTOP)
    try:
        kube.control_plane.restart_apiserver()
        unfinalize = '{"metadata":{"finalizers":null}}'
        kube.kubectl("patch", "clusternode", gone, *ns, "--type=merge", "-p", unfinalize)
        kube.kubectl("delete", "clusternode", gone, *ns, "--wait=false")
    finally:
        os.killpg(operator.proc.pid, signal.SIGCONT)

    scenario.wait_converged(3, timeout=180)
    assert gone not in {n["metadata"]["name"] for n in scenario.nodes()}
    assert "is gone: deleted while the watch was away" in operator.log_path.read_text(
        errors="replace"
    )


OPERATION_SAMPLES = {"ScaleOut": "scale-out", "ScaleIn": "scale-in", "RemoveNodes": "remove-nodes"}
OPERATIONS_MAX_TARGET = 12
"""Above this target only ScaleIn and RemoveNodes are drawn: the test stays minutes long."""


def kill_moment(op: dict[str, Any], cluster: dict[str, Any], before: int) -> str:
    """Where in an operation's life a kill -9 landed, read while the operator is down: its
    phase, and whether spec.targetNodes had already moved. "unseen, target set" is the
    window the exactly-once fix closed (effect made, not yet recorded); the fixed operator
    records first, so it cannot be in it."""
    phase = str((op.get("status") or {}).get("phase") or "unseen")
    if phase in ("Succeeded", "Failed"):
        return "ended"
    moved = (cluster.get("spec") or {}).get("targetNodes") != before
    return f"{phase}, target {'set' if moved else 'not set'}"


def test_random_kill_9_while_operations_run(
    scenario: Scenario, operator: Operator, kube: Kube
) -> None:
    # One operation after another, each created once the previous one ended, so the target
    # each must reach is plain arithmetic; the operator is killed once while each runs.
    scenario.make_provider(createLatencySeconds=0.4, deleteLatencySeconds=0.3, latencyJitter=0.5)
    target = 4
    scenario.make_cluster(targetNodes=target, minNodes=0, maxNodes=50, policies={})
    scenario.wait_converged(target, timeout=120)
    ops = Operations(scenario)
    rng = random.Random(SEED + 2)
    actions, kills = Counter[str](), Counter[str]()
    moment: dict[str, str] = {}
    losses = Losses()
    names: list[str] = []
    operations = ITERATIONS
    for i in range(operations):
        action = rng.choice(["ScaleOut", "ScaleIn", "RemoveNodes"])
        if target == 0:
            action = "ScaleOut"  # nothing to shrink or remove
        elif target >= OPERATIONS_MAX_TARGET and action == "ScaleOut":
            action = rng.choice(["ScaleIn", "RemoveNodes"])
        spec: dict[str, Any]
        if action == "ScaleOut":
            count = rng.randint(1, 5)
            spec, expected = {"count": count}, target + count
        elif action == "ScaleIn":
            count = rng.randint(1, min(3, target))
            spec, expected = {"count": count}, target - count
        else:
            live = sorted(n["metadata"]["name"] for n in scenario.nodes())
            chosen = rng.sample(live, rng.randint(1, min(2, len(live))))
            spec, expected = {"nodes": {"names": chosen}}, target - len(chosen)
        name = ops.run(OPERATION_SAMPLES[action], name=f"op-{i:03d}-{action.lower()}", **spec)
        names.append(name)
        actions[action] += 1
        # Not a wait for anything: the seeded random moment the fault lands, from before the
        # operator has seen the operation to after it has ended. Log-uniform over 1 ms to
        # 1.25 s: an operation's first steps (intent, target, record) are milliseconds apart,
        # its last (convergence) seconds; uniform pauses put nearly every kill in the latter.
        time.sleep(10 ** rng.uniform(-3.0, 0.1))
        try:
            operator.kill9()
            kills[action] += 1
            moment[name] = kill_moment(ops.get(name), scenario.nc(), target)
        finally:
            operator.start()

        try:
            op = ops.wait(name, timeout=120)  # fails at once if the operation ended Failed
        except AssertionError as err:
            raise AssertionError(f"operation {i}, killed at {moment[name]}: {err}") from None
        assert scenario.nc()["spec"]["targetNodes"] == expected, (
            f"operation {i} ({action} {spec}) from {target}, killed at {moment[name]}: "
            f"{op['status']}"
        )
        # Its audit trail says the same: the target it moved, or the nodes it removed.
        status = op["status"]
        if action == "RemoveNodes":
            removed = {r["name"]: r["result"] for r in status["nodes"]}
            assert removed == dict.fromkeys(spec["nodes"]["names"], "OK"), f"operation {i}"
        else:
            moved = (status.get("previousTarget"), status.get("newTarget"))
            assert moved == (target, expected), f"operation {i} ({action}): {status}"
        target = expected
        scenario.wait_converged(target, timeout=120)
        losses.add(audit(scenario, target))

    events = kube.items("events", scenario.ns)
    succeeded = Counter(
        e["involvedObject"]["name"]
        for e in events
        if e["involvedObject"].get("kind") == "NodeClusterOperation"
        and e.get("reason") == "OperationSucceeded"
    )
    on_cluster = Counter(
        e["message"].split(" ", 1)[0]
        for e in events
        if e["involvedObject"].get("kind") == "NodeCluster"
        and e.get("reason") == "OperationSucceeded"
    )
    # Exactly one for every operation, wherever the kill landed: the Event is posted
    # before the final status write, under a name of the operation's own, so a restarted
    # operator that posts it again posts nothing (before, one killed between that write
    # and the Event that followed it had none).
    after_end = [n for n in names if moment[n] == "ended"]
    result = {
        "test": "kill9-operations",
        "operations": operations,
        "kills": sum(kills.values()),
        "actions": dict(actions),
        "kills_by_action": dict(kills),
        "kill_moments": dict(Counter(moment.values())),
        "final_target": target,
        "succeeded_events": sum(succeeded.values()),
        "events_lost_after_end": sum(1 for n in after_end if not succeeded[n]),
        **losses.report(),
    }
    _record(result)
    wrong = {
        n: (succeeded[n], on_cluster[n]) for n in names if (succeeded[n], on_cluster[n]) != (1, 1)
    }
    assert not wrong, (
        f"OperationSucceeded Events per operation (on it, on its cluster), where wrong: "
        f"{wrong}; {moment}"
    )
