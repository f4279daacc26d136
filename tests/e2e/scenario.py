"""Builders shared by the end-to-end tests: a provider and a cluster per test, made from
the samples so the samples themselves are exercised."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kube import Inventory, Kube, Timeout, sample, wait_for


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
