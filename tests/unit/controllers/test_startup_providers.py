"""kopf's startup handler knows every NodeProvider before any watch starts.

Nothing here starts kopf: `handlers.startup` is called directly, with `KubeClient.connect`
answering a FakeKube (as in test_kopf_wiring.py).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
from conftest import provider_body

from nodecluster.controllers import handlers
from nodecluster.controllers.kube import KubeClient
from nodecluster.controllers.kubeapi import NODECLUSTERS, NODEPROVIDERS, KubeError
from nodecluster.providers.identity import default_installation_id
from nodecluster.testing import FakeKube, LocalNodeIndex


@pytest.fixture
def connect_to_fake(monkeypatch: pytest.MonkeyPatch, fake: FakeKube) -> None:
    async def connect(cls: type[KubeClient], **_: Any) -> FakeKube:
        return fake

    monkeypatch.setattr(KubeClient, "connect", classmethod(connect))


@pytest.fixture
def gc_restored() -> Iterator[None]:
    """Put the garbage collector back as it was (startup tunes it for the process)."""
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


async def start(memo: kopf.Memo) -> None:
    await handlers.startup(
        settings=kopf.OperatorSettings(),
        memo=memo,
        clusternodes_by_cluster=LocalNodeIndex(),
    )


async def test_startup_loads_every_node_provider_before_any_watch_event(
    fake: FakeKube, connect_to_fake: None, gc_restored: None, tmp_path: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(tmp_path / "a.db", name="sim"))
    fake.add(NODEPROVIDERS, provider_body(tmp_path / "b.db", name="other", driver="simulator"))
    memo = kopf.Memo()

    await start(memo)

    world = memo["world"]
    try:
        specs = world.providers.specs
        assert sorted(specs) == ["other", "sim"]
        assert specs["other"].spec.driver == "simulator"
        assert world.providers.problem("sim") is None  # no ProviderNotFound for its clusters
        # The cluster's identity and the providers' entries (for the default installation
        # id: an upgraded installation keeps its earlier one), then the providers.
        # And the NodeClusters, so that every provider's users are known from the start.
        assert [(c.verb, c.resource) for c in fake.calls] == [
            ("get", "namespaces"),
            ("list", "nodeproviders"),
            ("list", "clusternodes"),
            ("list", "nodeclusters"),
            ("list", "nodeproviders"),
        ]
        # Their own reconciles run when their watch events come, as before.
        assert world.queues.provider.pending() == 0
    finally:
        await world.queues.close()


async def test_startup_fails_and_closes_its_client_when_the_providers_cannot_be_listed(
    fake: FakeKube, connect_to_fake: None, gc_restored: None
) -> None:
    fake.fail("list", "nodeproviders", 403)
    memo = kopf.Memo()

    with pytest.raises(KubeError):
        await start(memo)

    assert "world" not in memo
    assert fake.closed


async def test_without_an_id_the_installation_is_named_by_its_kubernetes_cluster(
    fake: FakeKube, connect_to_fake: None, gc_restored: None
) -> None:
    memo = kopf.Memo(installation_id=None, installation_name="ops.nc")

    await start(memo)

    world = memo["world"]
    try:
        expected = default_installation_id("ops.nc", fake.cluster_identity)
        assert world.settings.installation_id == expected
        assert expected.startswith("ops.nc.")
    finally:
        await world.queues.close()


async def test_a_given_installation_id_is_used_verbatim_without_reading_the_cluster(
    fake: FakeKube, connect_to_fake: None, gc_restored: None
) -> None:
    memo = kopf.Memo(installation_id="prod-eu", installation_name="ops.nc")

    await start(memo)

    world = memo["world"]
    try:
        assert world.settings.installation_id == "prod-eu"
        assert ("get", "namespaces") not in [(c.verb, c.resource) for c in fake.calls]
    finally:
        await world.queues.close()


async def test_an_unreadable_cluster_identity_stops_the_operator_with_what_to_do(
    fake: FakeKube, connect_to_fake: None, gc_restored: None
) -> None:
    fake.fail("get", "namespaces", 403)
    memo = kopf.Memo(installation_name="ops.nc")

    with pytest.raises(kopf.PermanentError, match=r"operator\.installationId"):
        await start(memo)

    assert "world" not in memo
    assert fake.closed


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        # Upgraded: the providers' status knows this installation by its name alone, the
        # id earlier versions gave it, which its machines carry: it is kept.
        (["ops.nc"], "ops.nc"),
        (["ops.nc", "other.rel"], "ops.nc"),
        # Already named by the cluster (the old entry is another's or left over): the new id.
        (["ops.nc", "NEW"], "NEW"),
        # Another installation's old entry is none of this one's business.
        (["other.rel"], "NEW"),
        ([], "NEW"),
    ],
)
async def test_an_installation_upgraded_from_a_name_only_id_keeps_it(
    fake: FakeKube,
    connect_to_fake: None,
    gc_restored: None,
    tmp_path: Path,
    entries: list[str],
    expected: str,
) -> None:
    new = default_installation_id("ops.nc", fake.cluster_identity)
    body = provider_body(tmp_path / "a.db", name="sim")
    view = {"phase": "Ready", "nodes": 3}
    body["status"] = {"installations": {new if e == "NEW" else e: view for e in entries}}
    fake.add(NODEPROVIDERS, body)
    memo = kopf.Memo(installation_id=None, installation_name="ops.nc")

    await start(memo)

    world = memo["world"]
    try:
        assert world.settings.installation_id == (new if expected == "NEW" else expected)
    finally:
        await world.queues.close()


def cluster_body(name: str, namespace: str = "team-a", provider: str = "sim") -> dict[str, Any]:
    return {
        "apiVersion": "nodecluster.io/v1alpha1",
        "kind": "NodeCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"providerRef": {"name": provider}, "targetNodes": 0},
    }


@pytest.mark.parametrize(
    ("namespaces", "seen"),
    [((), {("team-a", "web"), ("team-b", "db")}), (("team-a",), {("team-a", "web")})],
)
async def test_startup_knows_every_cluster_of_a_provider_before_any_watch_event(
    fake: FakeKube,
    connect_to_fake: None,
    gc_restored: None,
    tmp_path: Path,
    namespaces: tuple[str, ...],
    seen: set[tuple[str, str]],
) -> None:
    fake.add(NODEPROVIDERS, provider_body(tmp_path / "a.db", name="sim"))
    fake.add(NODECLUSTERS, cluster_body("web"))
    fake.add(NODECLUSTERS, cluster_body("db", namespace="team-b"))
    memo = kopf.Memo(installation_id="i", namespaces=list(namespaces))

    await start(memo)

    world = memo["world"]
    try:
        assert world.clusters_of("sim") == seen
        assert world.cluster_index.complete
    finally:
        await world.queues.close()


async def test_with_namespace_patterns_the_clusters_are_never_complete_so_none_is_let_go(
    fake: FakeKube, connect_to_fake: None, gc_restored: None, tmp_path: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(tmp_path / "a.db", name="sim"))
    memo = kopf.Memo(installation_id="i", namespaces=["team-*"])

    await start(memo)

    world = memo["world"]
    try:
        assert not world.cluster_index.complete
        assert ("list", "nodeclusters") not in [(c.verb, c.resource) for c in fake.calls]
    finally:
        await world.queues.close()


@pytest.mark.parametrize("status", [429, 503])
async def test_an_api_server_not_ready_yet_is_tried_again_within_a_second(
    fake: FakeKube, connect_to_fake: None, gc_restored: None, status: int
) -> None:
    # "storage is (re)initializing": a CRD just installed, as `tools/run` does it.
    fake.fail("list", "nodeclusters", status)
    memo = kopf.Memo(installation_id="i")

    with pytest.raises(kopf.TemporaryError) as raised:
        await start(memo)

    assert raised.value.delay == handlers.STARTUP_RETRY_SECONDS == 1.0
    assert "world" not in memo
    assert fake.closed
