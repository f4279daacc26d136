"""A NodeCluster on the kwok driver: the operator as a real process (the suite's), the sample
kwok NodeProvider, and kwok (the suite's `kwok` fixture) playing every machine's kubelet. At
every step the Nodes (`kubectl get nodes`) are audited against the ClusterNodes: one Node
per node, none without its node, Ready or NotReady as the cluster's state says, carrying
the node's identity as labels and its power state as the driver sets it."""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kube import ROOT, Kube, Operator, sample, service_account_kube, wait_for
from scenario import KWOK_TIMEOUT, KwokCluster, kwok_cluster_in

from kwok import KwokProcess
from nodecluster.providers.base import InvalidConfig, ProviderConfig
from nodecluster.providers.identity import NAMESPACE_TAG
from nodecluster.providers.kwok import KwokDriver
from nodecluster.providers.kwok.nodes import POWER, STOPPED_TAINT, ZONE
from nodecluster.testing.contract import delete_until_not_found, machine_spec

T = TypeVar("T")


@pytest.fixture
def kwok_cluster(
    kube: Kube, kwok: KwokProcess, operator: Operator, ns: str
) -> Iterator[KwokCluster]:
    with kwok_cluster_in(kube, kwok, ns) as cluster:
        yield cluster


def test_a_cluster_on_kwok_shows_its_nodes_scales_stops_starts_and_is_deleted(
    kwok_cluster: KwokCluster, kube: Kube
) -> None:
    kwok_cluster.make_cluster(targetNodes=2)
    kwok_cluster.wait("2 Ready Nodes, one per node", 2)
    shown = kube.kubectl(
        "get", "nodes", "--no-headers", "-l", f"{NAMESPACE_TAG}={kwok_cluster.ns}"
    ).stdout.splitlines()
    assert len(shown) == 2 and all(line.split()[1] == "Ready" for line in shown), shown

    kwok_cluster.patch(targetNodes=4)
    kwok_cluster.wait("4 Ready Nodes after scaling out", 4)
    per_zone = Counter(n["metadata"]["labels"][ZONE] for n in kwok_cluster.nodes())
    assert sorted(per_zone.values()) == [1, 1, 2]  # spread over the three zones

    kwok_cluster.patch(desiredState="Stopped")
    kwok_cluster.wait("every Node NotReady", 4, state="Stopped", ready="False")
    for node in kwok_cluster.nodes():
        assert node["metadata"]["annotations"][POWER] == "Off"
        assert STOPPED_TAINT in [t["key"] for t in node["spec"].get("taints") or []]
    kwok_cluster.patch(desiredState="Running")
    kwok_cluster.wait("every Node Ready again", 4)
    for node in kwok_cluster.nodes():
        assert STOPPED_TAINT not in [t["key"] for t in node["spec"].get("taints") or []]

    kwok_cluster.patch(targetNodes=1)
    kwok_cluster.wait("1 Node after scaling in", 1)

    kube.kubectl("delete", "nodecluster/workers", "-n", kwok_cluster.ns, "--timeout=90s")
    wait_for("no Node left", lambda: kwok_cluster.nodes() == [], timeout=KWOK_TIMEOUT)


def test_kill_9_during_scaling_neither_loses_nor_doubles_a_node(
    kwok_cluster: KwokCluster, operator: Operator
) -> None:
    rng = random.Random(12)
    kwok_cluster.make_cluster(targetNodes=2)
    kwok_cluster.wait("2 Nodes", 2)
    for target in (6, 3, 7, 2):
        kwok_cluster.patch(targetNodes=target)
        time.sleep(rng.uniform(0.0, 1.0))  # a random moment inside the scaling, not a wait
        operator.kill9()
        operator.start()
        kwok_cluster.wait(f"{target} Nodes after a kill -9", target)


def readme_rbac(account: str, namespace: str) -> list[dict[str, Any]]:
    """The README's ClusterRole and binding for the kwok driver, bound to this account."""
    text = (ROOT / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    block = next(b for b in blocks if "nodecluster-operator-kwok-nodes" in b)
    docs = [doc for doc in yaml.safe_load_all(block) if doc]
    for doc in docs:
        for subject in doc.get("subjects", []):
            subject.update(name=account, namespace=namespace)
    return docs


async def drive(kubeconfig: dict[str, Any]) -> list[str]:
    """Every call of the driver, through a kubeconfig Secret; the states it saw."""
    config = sample("nodeprovider-kwok.yaml")["spec"]["config"]
    driver = KwokDriver(
        ProviderConfig(
            name="rbac-check", config=config, credentials={"kubeconfig": yaml.safe_dump(kubeconfig)}
        )
    )
    try:
        seen: list[str] = [(await driver.create(machine_spec("rbac-1"))).state]
        seen += [(await driver.stop("rbac-1")).state, (await driver.start("rbac-1")).state]
        seen += [m.name for m in await driver.list()]
        await delete_until_not_found(driver, "rbac-1")
        return seen
    finally:
        await driver.close()


def test_the_readme_rbac_is_all_the_driver_needs_through_a_kubeconfig_secret(
    kube: Kube, kwok: KwokProcess, ns: str, tmp_path: Path
) -> None:
    """As a ServiceAccount bound to exactly the README's ClusterRole, from a Secret's
    self-contained kubeconfig (a token, the CA inline): every call works. Without the
    binding the API server refuses, and the refusal is InvalidConfig, naming the verb."""
    kube.kubectl("create", "serviceaccount", "kwok-driver", "-n", ns)
    user = service_account_kube(kube, "kwok-driver", ns, tmp_path / "sa.kubeconfig")
    kubeconfig = yaml.safe_load(user.kubeconfig.read_text())
    cluster = kubeconfig["clusters"][0]["cluster"]
    ca = Path(cluster.pop("certificate-authority")).read_bytes()
    cluster["certificate-authority-data"] = base64.b64encode(ca).decode()

    with pytest.raises(InvalidConfig, match="forbidden"):
        asyncio.run(drive(kubeconfig))

    rbac = readme_rbac("kwok-driver", ns)
    kube.apply(rbac)
    try:
        seen = wait_for("the binding to take effect", lambda: _allowed(kubeconfig), timeout=30)
        assert seen == ["Provisioning", "Stopped", "Provisioning", "rbac-1"]
    finally:
        kube.kubectl("delete", "-f", "-", input=yaml.safe_dump_all(rbac), check=False)


def _allowed(kubeconfig: dict[str, Any]) -> list[str] | None:
    try:
        return asyncio.run(drive(kubeconfig))
    except InvalidConfig:
        return None  # RBAC not seen by the API server's authorizer yet


def test_pods_run_on_a_kwok_node_and_a_drain_evicts_them(
    kube: Kube, kwok: KwokProcess, ns: str
) -> None:
    """What Node integration builds on: a pod bound to one of the driver's Nodes runs
    (Ready, so PodDisruptionBudgets count it), and `kubectl drain` (cordon, then the
    Eviction API) empties the Node, kwok's pod stages playing the kubelet's part."""
    config = sample("nodeprovider-kwok.yaml")["spec"]["config"] | {"readyDelaySeconds": 0}
    config["kubeconfig"] = str(kube.kubeconfig)
    provider = ProviderConfig(name=f"drain-{ns}"[:63], config=config)

    def with_driver(action: Callable[[KwokDriver], Awaitable[T]]) -> T:
        async def run() -> T:
            driver = KwokDriver(provider)
            try:
                return await action(driver)
            finally:
                await driver.close()

        return asyncio.run(run())

    node = with_driver(lambda d: d.create(machine_spec(f"drain-{ns}"[:50]))).name
    try:
        wait_for("the Node Running", lambda: with_driver(lambda d: d.get(node)).state == "Running")
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "app", "namespace": ns},
                "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1"}]},
            }
        )
        wait_for(
            "the pod Running and Ready",
            lambda: kube.condition("pod", "app", "Ready", ns).get("status") == "True",
        )
        # --force: the pod has no controller to make it again elsewhere; still evicted.
        kube.kubectl("drain", node, "--ignore-daemonsets", "--force", "--timeout=60s")
        assert kube.get("pod", "app", ns) is None
        assert (kube.get("node", node) or {})["spec"].get("unschedulable") is True
    finally:
        with_driver(lambda d: delete_until_not_found(d, node))
