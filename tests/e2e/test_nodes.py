"""Node integration on a real API server (`run --nodes`, issue 12): a scale-in drains the
machine's Node through the Eviction API as the PodDisruptionBudget allows, then deletes the
machine and the Node; a budget that allows nothing blocks the drain, visibly, until it does.

The local control plane has no kubelet, so the test plays one: it registers a Node for each
machine (spec.providerID = the simulator's provider id), keeps it Ready with a Lease
heartbeat (else kube-controller-manager's node lifecycle controller marks it Unknown and
its pods not Ready, which changes what the budget allows), and binds pods to it by
spec.nodeName, reporting them Running and Ready as a kubelet would. The disruption
controller of kube-controller-manager computes the budget, and kube-apiserver's eviction
subresource enforces it: nothing here is faked by the operator's own code. (With the kwok
driver, kwok plays the kubelet instead: tests/e2e/test_kwok_nodes.py.)
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

from kube import Kube, Operator, wait_for
from scenario import Scenario

HEARTBEAT_SECONDS = 5.0


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Kubelet:
    """Registers Nodes and keeps them Ready, as kubelets would (a Lease renewed every few
    seconds); binds pods to them and reports them Running and Ready."""

    def __init__(self, kube: Kube, prefix: str) -> None:
        self.kube = kube
        self.prefix = prefix
        self.nodes: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> Kubelet:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for name in self.nodes:
            self.kube.kubectl("delete", "node", name, "--wait=false", check=False)
            self.kube.kubectl(
                "delete", "lease", name, "-n", "kube-node-lease", "--wait=false", check=False
            )

    def register(self, cn: dict[str, Any]) -> str:
        name = f"{self.prefix}-{cn['metadata']['name']}"
        self.kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "spec": {"providerID": cn["status"]["providerId"]},
            }
        )
        self._lease(name)
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now(),
            "lastTransitionTime": now(),
        }
        self.kube.kubectl(
            "patch", "node", name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"conditions": [ready]}}),
        )  # fmt: skip
        self.nodes.append(name)
        return name

    def _lease(self, name: str) -> None:
        self.kube.apply(
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": {
                    "holderIdentity": name,
                    "leaseDurationSeconds": 40,
                    "renewTime": now_micro(),
                },
            },
            check=False,
        )

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            for name in list(self.nodes):
                self._lease(name)

    def run_pod(self, ns: str, name: str, node: str, app: str) -> None:
        self.kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
                "spec": {
                    "nodeName": node,
                    "terminationGracePeriodSeconds": 0,
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}],
                },
            }
        )
        status = {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now()},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now()},
            ],
        }
        self.kube.kubectl(
            "patch", "pod", name, "-n", ns, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}),
        )  # fmt: skip


def events(kube: Kube, ns: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in kube.items("events", ns) if e.get("reason") == reason]


def test_a_scale_in_drains_within_the_budget_and_a_budget_allowing_nothing_blocks_it(
    scenario: Scenario, kube: Kube, nodes_operator: Operator
) -> None:
    ns = scenario.ns
    scenario.make_provider(createLatencySeconds=1, deleteLatencySeconds=1)
    scenario.make_cluster(
        targetNodes=2,
        minNodes=0,
        profile={"machineType": "small", "nodeLabels": {"node-role.kubernetes.io/workers": ""}},
        policies={"deletion": {"drainTimeoutSeconds": 300}},
    )
    scenario.wait_converged(2)

    with Kubelet(kube, ns) as kubelet:
        by_cn = {cn["metadata"]["name"]: kubelet.register(cn) for cn in scenario.nodes()}

        def linked() -> bool:
            return all(
                (cn.get("status") or {}).get("nodeRef", {}).get("name")
                == by_cn[cn["metadata"]["name"]]
                for cn in scenario.nodes()
            )

        wait_for("every ClusterNode linked to its Node", linked, timeout=60)
        table = kube.kubectl("get", "clusternodes", "-n", ns).stdout
        assert "NODE" in table.splitlines()[0]
        assert all(node in table for node in by_cn.values())
        wait_for(
            "the profile's label on every Node",
            lambda: all(
                "node-role.kubernetes.io/workers"
                in (kube.get("node", n) or {}).get("metadata", {}).get("labels", {})
                for n in by_cn.values()
            ),
            timeout=60,
        )

        pods = {cn: f"web-{i}" for i, cn in enumerate(sorted(by_cn))}
        for cn, pod in pods.items():
            kubelet.run_pod(ns, pod, by_cn[cn], app="web")
        kube.apply(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "web", "namespace": ns},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
            }
        )
        wait_for(
            "the disruption controller to allow one disruption",
            lambda: kube.status("pdb", "web", ns).get("disruptionsAllowed") == 1,
            timeout=60,
        )

        # Within the budget: one node goes, its pod evicted, its Node deleted after it.
        scenario.patch_spec(targetNodes=1)
        scenario.wait_converged(1, timeout=120)
        [kept] = [cn["metadata"]["name"] for cn in scenario.nodes()]
        [gone] = [cn for cn in by_cn if cn != kept]
        wait_for("the drained Node deleted", lambda: kube.get("node", by_cn[gone]) is None)
        assert kube.get("pod", pods[gone], ns) is None
        assert kube.get("pod", pods[kept], ns) is not None
        assert [e["involvedObject"]["name"] for e in events(kube, ns, "Draining")] == [gone]
        assert not events(kube, ns, "DrainBlocked")

        # A budget that allows nothing: the drain waits, and says why.
        wait_for(
            "the budget to allow no disruption",
            lambda: kube.status("pdb", "web", ns).get("disruptionsAllowed") == 0,
            timeout=60,
        )
        scenario.patch_spec(targetNodes=0)

        def blocked() -> dict[str, Any] | None:
            drain = (kube.status("clusternode", kept, ns)).get("drain") or {}
            return drain if drain.get("blocked") else None

        drain = wait_for("the drain blocked by the budget", blocked, timeout=60)
        assert "disruption budget web" in drain["blocked"]
        node = kube.get("node", by_cn[kept]) or {}
        assert node["spec"].get("unschedulable") is True
        assert scenario.inventory.names(scenario.tag()) == {kept}  # the machine waits
        wait_for("one DrainBlocked Event", lambda: events(kube, ns, "DrainBlocked"))

        # The budget goes: the drain finishes, the machine and its Node go.
        kube.kubectl("delete", "pdb", "web", "-n", ns)
        scenario.wait_converged(0, timeout=120)
        wait_for("the last Node deleted", lambda: kube.get("node", by_cn[kept]) is None)
        assert kube.get("pod", pods[kept], ns) is None
        assert len(events(kube, ns, "DrainBlocked")) == 1
        assert not events(kube, ns, "DrainTimedOut")
