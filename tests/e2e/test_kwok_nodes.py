"""Node integration end to end on the kwok driver (`run --nodes`, issue 12): the machines
are kwok's Nodes, so nothing here plays a kubelet. kwok makes the Nodes Ready, runs the pods
bound to them (its pod stages: Running and Ready at once, gone once deleted), and stops and
boots them as the driver asks; kube-controller-manager computes the PodDisruptionBudget and
kube-apiserver's eviction subresource enforces it. The operator links each ClusterNode to its
Node, keeps the profile's labels and taints on it, drains it within the budget before its
machine goes, and replaces a machine whose Node stays not Ready, but not one stopped on
purpose, whose Node is NotReady as long as it is stopped.

The local control plane has no scheduler: pods are bound by `spec.nodeName`, as a scheduler
would bind them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kube import Kube, Operator, wait_for
from scenario import (
    KWOK_TIMEOUT,
    KwokCluster,
    bind_pod,
    kwok_cluster_in,
    node_ready,
    operation_sample,
)

from kwok import KwokProcess
from nodecluster.providers.identity import NAMESPACE_TAG
from nodecluster.providers.kwok.nodes import KWOK_NODE, STOPPED_REASON

TAINT = {"key": "dedicated", "value": "web", "effect": "NoSchedule"}
PROFILE = {
    "machineType": "small",
    "labels": {"team": "batch"},
    "nodeLabels": {"node-role.kubernetes.io/web": "", "tier": "front"},
    "nodeTaints": [TAINT],
}


@pytest.fixture
def cluster(
    kube: Kube, kwok: KwokProcess, nodes_operator: Operator, ns: str
) -> Iterator[KwokCluster]:
    """A kwok NodeProvider, with the operator following Nodes."""
    with kwok_cluster_in(kube, kwok, ns) as made:
        yield made


def events(kube: Kube, ns: str, reason: str) -> list[str]:
    """The names of the objects Events of this reason are about, oldest first."""
    found = [e for e in kube.items("events", ns) if e.get("reason") == reason]
    found.sort(key=lambda e: e.get("firstTimestamp") or e.get("eventTime") or "")
    return [e["involvedObject"]["name"] for e in found]


def budget(kube: Kube, ns: str, min_available: int) -> None:
    kube.apply(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": "web"}}},
        }
    )


def allowed(kube: Kube, ns: str, disruptions: int) -> None:
    """Wait for kube-controller-manager's disruption controller to allow this many."""
    wait_for(
        f"the budget to allow {disruptions} disruptions",
        lambda: kube.status("pdb", "web", ns).get("disruptionsAllowed") == disruptions,
        timeout=60,
    )


def test_kwok_nodes_are_linked_labelled_and_drained_within_their_budget(
    cluster: KwokCluster, kube: Kube
) -> None:
    ns = cluster.ns
    cluster.make_cluster(
        targetNodes=2,
        minNodes=0,
        profile=PROFILE,
        policies={"deletion": {"criteria": "OldestFirst", "drainTimeoutSeconds": 300}},
    )
    cluster.wait("2 Ready Nodes", 2)
    by_cn = wait_for("every ClusterNode linked to its Ready Node", lambda: cluster.linked(2))

    # `kubectl get nodes` shows the cluster's machines, `kubectl get cn` their Nodes.
    shown = kube.kubectl("get", "nodes", "--no-headers", "-l", f"{NAMESPACE_TAG}={ns}").stdout
    assert sorted(line.split()[0] for line in shown.splitlines()) == sorted(by_cn.values())
    table = kube.kubectl("get", "clusternodes", "-n", ns).stdout.splitlines()
    assert "NODE" in table[0].split()
    assert all(node in "\n".join(table[1:]) for node in by_cn.values())

    def profiled(node: str) -> bool:
        body = kube.get("node", node) or {}
        labels = body.get("metadata", {}).get("labels", {})
        return (
            labels.get("tier") == "front"
            and "node-role.kubernetes.io/web" in labels
            and TAINT in (body.get("spec", {}).get("taints") or [])
        )

    wait_for(
        "the profile's labels and taint on every Node",
        lambda: all(profiled(node) for node in by_cn.values()),
        timeout=60,
    )

    pods = {cn: f"web-{i}" for i, cn in enumerate(sorted(by_cn))}
    for cn, pod in pods.items():
        bind_pod(kube, ns, pod, by_cn[cn])
    budget(kube, ns, min_available=1)
    allowed(kube, ns, 1)  # kwok reported both pods Running and Ready

    # Within the budget: one node goes, its pod evicted first, its Node with its machine.
    cluster.patch(targetNodes=1)
    cluster.wait("1 Node after a drained scale-in", 1)
    [kept] = cluster.members()
    [gone] = [cn for cn in by_cn if cn != kept]
    assert kube.get("node", by_cn[gone]) is None
    assert kube.get("pod", pods[gone], ns) is None
    assert kube.get("pod", pods[kept], ns) is not None
    assert events(kube, ns, "Draining") == [gone]
    assert events(kube, ns, "DrainBlocked") == []

    # A budget that allows nothing now: the drain waits, cordoned, and says why, once.
    allowed(kube, ns, 0)
    cluster.patch(targetNodes=0)

    def blocked() -> dict[str, Any] | None:
        drain = kube.status("clusternode", kept, ns).get("drain") or {}
        return drain if drain.get("blocked") else None

    drain = wait_for("the drain blocked by the budget", blocked, timeout=60)
    assert "disruption budget web" in drain["blocked"]
    node = kube.get("node", by_cn[kept]) or {}
    assert node["spec"].get("unschedulable") is True  # the machine waits, its Node cordoned
    assert kube.get("pod", pods[kept], ns) is not None
    wait_for("one DrainBlocked Event", lambda: events(kube, ns, "DrainBlocked") == [kept])

    # The budget relaxed: the drain finishes, then the machine and its Node go.
    budget(kube, ns, min_available=0)
    cluster.wait("no Node left after the drain", 0, state="Empty")
    assert kube.get("node", by_cn[kept]) is None
    assert kube.get("pod", pods[kept], ns) is None
    assert events(kube, ns, "Draining") == [gone, kept]
    assert events(kube, ns, "DrainBlocked") == [kept]
    assert events(kube, ns, "DrainTimedOut") == []


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fall_silent(kube: Kube, node: str) -> None:
    """The Node's kubelet falls silent: kwok stops managing it (its label selector no
    longer matches) and the Node's Ready goes Unknown, as the node lifecycle controller
    marks a Node whose kubelet stopped posting (only sooner than its grace period). The
    machine stays powered on: the driver reports it Running."""
    kube.kubectl("label", "node", node, f"{KWOK_NODE}-")
    unknown = {
        "type": "Ready",
        "status": "Unknown",
        "reason": "NodeStatusUnknown",
        "message": "Kubelet stopped posting node status.",
        "lastHeartbeatTime": now(),
        "lastTransitionTime": now(),
    }
    kube.kubectl(
        "patch", "node", node, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"conditions": [unknown]}}),
    )  # fmt: skip


def test_a_kwok_node_not_ready_is_replaced_and_a_stopped_one_is_not(
    cluster: KwokCluster, kube: Kube
) -> None:
    """Two machines, one stopped on purpose (a StopNodes operation: its Node NotReady,
    `MachineStopped`), then the other's Node not Ready for another reason. Only the second
    is replaced, once nodeNotReadyTimeoutSeconds is over; by then the stopped one's Node has
    been NotReady for longer, so had it been judged it would have gone first."""
    ns = cluster.ns
    health = {"nodeNotReadyTimeoutSeconds": 5, "recovery": "Recreate"}
    cluster.make_cluster(targetNodes=2, minNodes=0, policies={"health": health})
    cluster.wait("2 Ready Nodes", 2)
    by_cn = wait_for("every ClusterNode linked to its Ready Node", lambda: cluster.linked(2))
    stopped, broken = sorted(by_cn)

    stop = operation_sample("stop-nodes")
    stop["metadata"]["namespace"] = ns
    stop["spec"]["nodes"] = {"names": [stopped]}
    kube.apply(stop)

    def stopped_node() -> bool:
        cn = cluster.members().get(stopped) or {}
        ready = node_ready(cn)
        state = (cn.get("status") or {}).get("state")
        return (state, ready.get("status"), ready.get("reason")) == (
            "Stopped",
            "False",
            STOPPED_REASON,
        )

    wait_for("the stopped machine's Node NotReady (MachineStopped)", stopped_node, timeout=60)

    fall_silent(kube, by_cn[broken])

    def replaced() -> set[str] | None:
        names = set(cluster.members())
        return names if broken not in names and len(names) == 2 else None

    now_members = wait_for(
        "the machine whose Node fell silent replaced", replaced, timeout=KWOK_TIMEOUT
    )
    assert stopped in now_members
    assert stopped_node()  # still there, still stopped
    assert events(kube, ns, "NodeRemediated") == ["workers"]
    [remediated] = [e for e in kube.items("events", ns) if e.get("reason") == "NodeRemediated"]
    assert broken in remediated["message"] and stopped not in remediated["message"]
    wait_for("the silent Node deleted", lambda: kube.get("node", by_cn[broken]) is None)

    # Started again, the stopped machine rejoins: its Node Ready, the cluster whole.
    start = operation_sample("start-nodes")
    start["metadata"]["namespace"] = ns
    start["spec"]["nodes"] = {"names": [stopped]}
    kube.apply(start)
    cluster.wait("2 Ready Nodes again, the stopped one among them", 2)
    assert stopped in cluster.members()
    assert len(events(kube, ns, "NodeRemediated")) == 1
