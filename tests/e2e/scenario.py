"""Builders shared by the end-to-end tests: a provider and a cluster per test, made from
the samples so the samples themselves are exercised."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kube import Inventory, Kube, Timeout, sample, wait_audited, wait_for

from kwok import KwokProcess
from nodecluster.providers.identity import (
    CLUSTER_TAG,
    INSTALLATION_TAG,
    NAMESPACE_TAG,
    NODE_TAG,
    NODE_UID_TAG,
)
from nodecluster.providers.kwok.nodes import PROVIDER, ZONE

KWOK_TIMEOUT = 90.0
KWOK_ZONES = {"zone-a", "zone-b", "zone-c"}


class Scenario:
    """One test's provider (its own SQLite inventory) and cluster, in its own namespace."""

    def __init__(self, kube: Kube, ns: str, workdir: Path) -> None:
        self.kube = kube
        self.ns = ns
        self.provider = f"sim-{ns}"
        self.inventory = Inventory(workdir / f"{ns}.db")

    def make_provider(self, spec: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
        """The sample simulator NodeProvider with these driver settings (and spec fields)."""
        np = sample("nodeprovider-simulator.yaml")
        np["metadata"]["name"] = self.provider
        np["spec"]["config"] = {"path": str(self.inventory.path), "seed": 7, **config}
        np["spec"].setdefault("quotas", {})["maxNodes"] = 200
        np["spec"].update(spec or {})
        self.kube.apply(np)
        return np

    def cluster(self, name: str = "workers", **spec: Any) -> dict[str, Any]:
        nc = sample("nodecluster-basic.yaml")
        nc["metadata"]["name"] = name
        nc["metadata"]["namespace"] = self.ns
        nc["spec"]["providerRef"]["name"] = self.provider
        nc["spec"].update(spec)
        return nc

    def make_cluster(self, name: str = "workers", **spec: Any) -> dict[str, Any]:
        nc = self.cluster(name, **spec)
        self.kube.apply(nc)
        return nc

    def patch_spec(self, name: str = "workers", **fields: Any) -> None:
        """`kubectl patch --type=merge` of the cluster's spec, as a user would."""
        self.kube.kubectl(
            "patch",
            f"nodecluster/{name}",
            "-n",
            self.ns,
            "--type=merge",
            "-p",
            json.dumps({"spec": fields}),
        )

    def tag(self, name: str = "workers") -> str:
        return f"{self.ns}/{name}"

    def nc(self, name: str = "workers") -> dict[str, Any]:
        return self.kube.get("nodecluster", name, self.ns) or {}

    def nodes(self, name: str = "workers") -> list[dict[str, Any]]:
        return self.kube.items("clusternode", self.ns, f"nodecluster.io/cluster={name}")

    def wait_state(self, state: str, name: str = "workers", timeout: float = 90) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            obj = self.nc(name)
            st = obj.get("status") or {}
            gen = obj.get("metadata", {}).get("generation")
            if st.get("state") == state and st.get("observedGeneration") == gen:
                return obj
            return None

        return wait_for(f"NodeCluster {self.ns}/{name} in state {state}", probe, timeout)

    def wait_converged(
        self, count: int, name: str = "workers", timeout: float = 90
    ) -> dict[str, Any]:
        """Deployed with `count` ready nodes, and exactly those machines at the provider."""

        def probe() -> dict[str, Any] | None:
            obj = self.nc(name)
            st = obj.get("status") or {}
            if st.get("state") != ("Empty" if count == 0 else "Deployed"):
                return None
            if st.get("readyNodes", 0) != count or st.get("currentNodes", 0) != count:
                return None
            if st.get("observedGeneration") != obj["metadata"]["generation"]:
                return None
            cns = {n["metadata"]["name"] for n in self.nodes(name)}
            if len(cns) != count or self.inventory.names(self.tag(name)) != cns:
                return None
            return obj

        try:
            return wait_for(f"{self.ns}/{name} converged at {count} nodes", probe, timeout)
        except Timeout as err:
            raise Timeout(f"{err}; then: {self.convergence_report(name)}") from None

    def convergence_report(self, name: str = "workers") -> str:
        """What a convergence timeout reports: enough to see which part did not converge."""
        obj = self.nc(name)
        nodes = self.nodes(name)
        cns = {n["metadata"]["name"] for n in nodes}
        machines = self.inventory.names(self.tag(name))
        return json.dumps(
            {
                "status": {k: v for k, v in (obj.get("status") or {}).items() if k != "zones"},
                "generation": obj.get("metadata", {}).get("generation"),
                "nodes": {
                    n["metadata"]["name"]: (n.get("status") or {}).get("state") for n in nodes
                },
                "machines_without_node": sorted(machines - cns),
                "nodes_without_machine": sorted(cns - machines),
            }
        )


def operation_sample(action_file: str) -> dict[str, Any]:
    """An operation from manifests/samples/operations/."""
    return sample(f"operations/operation-{action_file}.yaml")


class Operations:
    """Create NodeClusterOperations from the samples and wait for their outcome."""

    def __init__(self, scenario: Scenario) -> None:
        self.sc = scenario

    def run(
        self, sample_name: str, name: str | None = None, cluster: str = "workers", **spec: Any
    ) -> str:
        op = operation_sample(sample_name)
        op["metadata"]["name"] = name or op["metadata"]["name"]
        op["metadata"]["namespace"] = self.sc.ns
        op["spec"]["clusterName"] = cluster
        op["spec"].update(spec)
        self.sc.kube.apply(op)
        return str(op["metadata"]["name"])

    def get(self, name: str) -> dict[str, Any]:
        return self.sc.kube.get("nodeclusteroperation", name, self.sc.ns) or {}

    def wait(self, name: str, phase: str = "Succeeded", timeout: float = 90) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            op = self.get(name)
            got = (op.get("status") or {}).get("phase")
            if got in ("Succeeded", "Failed") and got != phase:
                raise AssertionError(f"operation {name} ended {got}: {op['status'].get('message')}")
            return op if got == phase else None

        return wait_for(f"operation {name} {phase}", probe, timeout)


def ready_of(node: dict[str, Any]) -> str:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return str(condition["status"])
    return "None"


class DriverCluster:
    """One test's NodeProvider of a real driver and its NodeCluster `workers`: what the
    aws and kwok tests share (each adds its provider and its audit of the machines)."""

    def __init__(self, kube: Kube, ns: str, provider: str) -> None:
        self.kube = kube
        self.ns = ns
        self.provider = provider

    def cluster_defaults(self, nc: dict[str, Any]) -> None:
        """The driver's own changes to the sample NodeCluster (none by default)."""

    def make_cluster(self, **spec: Any) -> None:
        nc = sample("nodecluster-basic.yaml")
        nc["metadata"]["namespace"] = self.ns
        nc["spec"]["providerRef"]["name"] = self.provider
        self.cluster_defaults(nc)
        nc["spec"].update(spec)
        self.kube.apply(nc)

    def patch(self, **fields: Any) -> None:
        self.kube.kubectl(
            "patch", "nodecluster/workers", "-n", self.ns, "--type=merge",
            "-p", json.dumps({"spec": fields}),
        )  # fmt: skip

    def cluster_nodes(self) -> list[dict[str, Any]]:
        return self.kube.items("clusternode", self.ns, "nodecluster.io/cluster=workers")

    def not_in_state(self, state: str) -> str | None:
        """None when the cluster is `state` for its current generation; else what it is."""
        nc = self.kube.get("nodecluster", "workers", self.ns) or {}
        status = nc.get("status") or {}
        if status.get("state") != state or status.get("observedGeneration") != (
            nc.get("metadata", {}).get("generation")
        ):
            return f"state {status.get('state')}, not {state} (or not observed yet)"
        return None


def one_machine_each(owners: Counter[str | None], message: str) -> None:
    """Fail with `message` when any node has more than one machine (`owners`: node ->
    machines): a doubled machine is a bug, never something to wait out."""
    doubled = {owner: n for owner, n in owners.items() if n > 1}
    if doubled:
        raise AssertionError(f"{message}: {doubled}")


class KwokCluster(DriverCluster):
    """One test's kwok NodeProvider (the sample) and its NodeCluster `workers`."""

    def __init__(self, kube: Kube, ns: str) -> None:
        super().__init__(kube, ns, f"kwok-{ns}")
        self.installation = kube.installation_id()

    def make_provider(self) -> None:
        np = sample("nodeprovider-kwok.yaml")
        np["metadata"]["name"] = self.provider
        np["spec"]["config"]["readyDelaySeconds"] = 0.5
        self.kube.apply(np)

    def members(self) -> dict[str, dict[str, Any]]:
        """The cluster's ClusterNodes by name."""
        return {cn["metadata"]["name"]: cn for cn in self.cluster_nodes()}

    def linked(self, count: int) -> dict[str, str] | None:
        """ClusterNode -> Node name, once each of `count` ClusterNodes names its machine's
        Node (`run --nodes`; a kwok Node has its machine's name) and says it is Ready."""
        found = {}
        for name, cn in self.members().items():
            status = cn.get("status") or {}
            ref = (status.get("nodeRef") or {}).get("name")
            ready = node_ready(cn).get("status") == "True"
            if ref is None or ref != status.get("machineName") or not ready:
                return None
            found[name] = ref
        return found if len(found) == count else None

    def nodes(self) -> list[dict[str, Any]]:
        """This provider's Kubernetes Nodes."""
        return self.kube.items("node", selector=f"{PROVIDER}={self.provider}")

    def audit(self, count: int, state: str = "Deployed", ready: str = "True") -> str | None:
        """None when the cluster is `state` with `count` nodes, each with exactly one Node,
        Ready as `ready` says, labelled with its identity; else what differs."""
        if (differs := self.not_in_state(state)) is not None:
            return differs
        members = {n["metadata"]["name"]: n for n in self.cluster_nodes()}
        nodes = self.nodes()
        per_member = Counter(n["metadata"]["labels"].get(NODE_TAG) for n in nodes)
        one_machine_each(per_member, "ClusterNodes with more than one Node")
        if len(members) != count or set(per_member) != set(members):
            return f"ClusterNodes {sorted(members)} vs Nodes of {sorted(map(str, per_member))}"
        for node in nodes:
            labels = node["metadata"]["labels"]
            member = members[labels[NODE_TAG]]
            name = node["metadata"]["name"]
            if ready_of(node) != ready:
                return f"Node {name} Ready={ready_of(node)}, not {ready}"
            wanted = {
                INSTALLATION_TAG: self.installation,
                NAMESPACE_TAG: self.ns,
                CLUSTER_TAG: "workers",
                NODE_UID_TAG: member["metadata"]["uid"],
            }
            assert {key: labels.get(key) for key in wanted} == wanted, name
            assert labels[ZONE] in KWOK_ZONES
            member_status = member.get("status") or {}
            if (member_status.get("providerId"), member_status.get("machineName")) != (
                f"kwok://{name}",
                name,
            ):
                return f"ClusterNode {labels[NODE_TAG]} does not name Node {name} yet"
        return None

    def wait(self, what: str, count: int, **kwargs: Any) -> None:
        wait_audited(what, lambda: self.audit(count, **kwargs), timeout=KWOK_TIMEOUT)


def node_ready(cn: dict[str, Any]) -> dict[str, Any]:
    """A ClusterNode's NodeReady condition (`run --nodes`; {} while it has none)."""
    for condition in (cn.get("status") or {}).get("conditions") or []:
        if condition["type"] == "NodeReady":
            return dict(condition)
    return {}


def bind_pod(kube: Kube, ns: str, name: str, node: str, app: str = "web") -> None:
    """A pod bound to `node` by spec.nodeName, as a scheduler binds one (the local control
    plane has none), tolerating every taint, as one scheduled there would have to; kwok
    runs it if it manages the Node."""
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
            "spec": {
                "nodeName": node,
                "tolerations": [{"operator": "Exists"}],
                "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}],
            },
        }
    )


@contextmanager
def kwok_cluster_in(kube: Kube, kwok: KwokProcess, ns: str) -> Iterator[KwokCluster]:
    """A test's kwok NodeProvider, made; afterwards its clusters and the provider deleted,
    and no Node of it left behind (kwok still running: a test must not have killed it)."""
    cluster = KwokCluster(kube, ns)
    cluster.make_provider()
    yield cluster
    done = kube.kubectl("delete", "nodeclusters", "--all", "-n", ns, "--timeout=90s", check=False)
    kube.kubectl("delete", "nodeprovider", cluster.provider, "--timeout=30s", check=False)
    kwok.check_alive()
    assert done.returncode == 0, f"deleting the test's clusters failed: {done.stderr}"
    assert cluster.nodes() == [], "Nodes left behind"
