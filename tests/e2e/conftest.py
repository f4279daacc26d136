"""Fixtures of the end-to-end suite: a real API server, the real CRDs, the operator as a
real process, and the simulator's inventory as the provider-side truth.

The suite runs against any cluster: set E2E_KUBECONFIG to use one, e.g.
kind elsewhere. With neither, it starts the local control plane built from Go modules
(tools/controlplane.py). Tests drive the operator only as users would: kubectl and the
manifests under manifests/samples/.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from kube import Kube, Operator, wait_for  # noqa: E402
from scenario import Scenario  # noqa: E402

from kwok import KwokProcess  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    """An API server with the project's CRDs installed."""
    kubeconfig = os.environ.get("E2E_KUBECONFIG")
    crds = sorted((ROOT / "crds").glob("*.yaml"))
    if kubeconfig:
        k = Kube(Path(kubeconfig), kubectl_bin=os.environ.get("KUBECTL", "kubectl"))
        k.apply_crds(crds)
        yield k
        return
    from controlplane import ControlPlane

    workdir = tmp_path_factory.mktemp("controlplane")
    with ControlPlane(work_dir=workdir) as cp:
        k = Kube(Path(cp.kubeconfig), kubectl_bin=str(cp.bin_dir / "kubectl"), control_plane=cp)
        k.apply_crds(crds)
        yield k


@pytest.fixture(scope="session")
def kwok(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KwokProcess]:
    """kwok, the kubelet of the `kwok` driver's Nodes, running against that API server
    (tools/kwok.py: the driver's stages, only Nodes labelled kwok.x-k8s.io/node=fake).

    Proven before any test uses it: a probe Node must become Ready. If kwok cannot start
    or does not make the probe Ready, every test that needs it fails with kwok's log,
    never skips: a driver whose tests quietly did not run would look tested."""
    binary = kube.control_plane.bin_dir / "kwok" if kube.control_plane is not None else None
    process = KwokProcess(
        kube.kubeconfig, tmp_path_factory.mktemp("kwok") / "kwok.log", binary=binary
    )
    process.start()
    try:
        _prove_kwok(kube, process)
        yield process
    finally:
        process.stop()


def _prove_kwok(kube: Kube, process: KwokProcess) -> None:
    """A Node as the driver makes them becomes Ready (and goes again)."""
    name = f"kwok-probe-{secrets.token_hex(3)}"
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {"kwok.x-k8s.io/node": "fake", "nodecluster.io/provider": "probe"},
                "annotations": {"nodecluster.io/boot-id": "probe"},
            },
        }
    )
    try:

        def ready() -> bool:
            process.check_alive()
            node = kube.get("node", name) or {}
            conditions = (node.get("status") or {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        try:
            wait_for(f"kwok to make the probe Node {name} Ready", ready, timeout=60)
        except AssertionError as err:
            raise AssertionError(f"{err}\nkwok's log:\n{process.log_tail()}") from None
    finally:
        kube.kubectl("delete", "node", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """The operator, running as its own process against that API server, its metrics
    served on a free port of the loopback (`Operator.scrape`)."""
    op = Operator(
        kube, tmp_path_factory.mktemp("operator"), extra_args=["--metrics-address", "127.0.0.1:0"]
    )
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def nodes_operator(kube: Kube, operator: Operator) -> Iterator[Operator]:
    """The operator with Node integration (`run --nodes`), in place of the session's for
    one test (never two operators at once: both would act on every cluster)."""
    with_nodes = Operator(kube, operator.workdir, extra_args=["--nodes"])
    operator.stop()
    with_nodes.start()
    try:
        yield with_nodes
    finally:
        with_nodes.stop()
        operator.start()


@pytest.fixture
def ns(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    slug = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())
    name = f"e2e-{slug[5:40].strip('-')}-{secrets.token_hex(2)}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def scenario(kube: Kube, operator: Operator, ns: str) -> Iterator[Scenario]:
    """A provider with its own inventory, for a cluster in this test's namespace."""
    sc = Scenario(kube, ns, operator.workdir)
    yield sc
    # Leave nothing behind at the provider: clusters first (their finalizers delete
    # the machines), then the provider.
    done = kube.kubectl("delete", "nodeclusters", "--all", "-n", ns, "--timeout=90s", check=False)
    kube.kubectl("delete", "nodeprovider", sc.provider, "--timeout=30s", check=False)
    # A cluster that cannot be deleted is a bug worth a failure, not a silent leftover.
    assert done.returncode == 0, f"deleting the test's clusters failed: {done.stderr}"
