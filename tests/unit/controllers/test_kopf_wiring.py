"""The kopf wiring (`handlers.py`): settings, startup and cleanup, the handlers, `run_operator`.

Nothing here starts kopf: the functions kopf would call are called directly, with
`KubeClient.connect` answering a FakeKube and `kopf.run` replaced by a recorder.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from nodecluster import API_VERSION
from nodecluster.clock import LoopClock, SystemClock
from nodecluster.controllers import handlers
from nodecluster.controllers.assembly import build_world
from nodecluster.controllers.kube import KubeClient
from nodecluster.controllers.kubeapi import CLUSTERNODES
from nodecluster.controllers.metrics import Metrics
from nodecluster.controllers.world import ClusterBookIndex, NodeBookIndex, Settings, World
from nodecluster.providers.base import ProviderConfig
from nodecluster.providers.identity import default_installation_id
from nodecluster.providers.registry import ProviderRegistry
from nodecluster.testing import FakeKube, LocalClusterIndex, LocalKubeNodeIndex, LocalNodeIndex

NODE_BODY: dict[str, Any] = {
    "apiVersion": API_VERSION,
    "kind": "ClusterNode",
    "metadata": {"name": "web-x1", "namespace": "team-a", "resourceVersion": "7"},
    "spec": {
        "clusterName": "web",
        "providerRef": {"name": "sim"},
        "profile": {"machineType": "small"},
    },
}


@pytest.fixture
def kopf_objects_logger() -> Iterator[logging.Logger]:
    """kopf's per-object logger, its level put back afterwards."""
    logger = logging.getLogger("kopf.objects")
    level = logger.level
    yield logger
    logger.setLevel(level)


@pytest.fixture
def gc_restored() -> Iterator[None]:
    """Put the garbage collector back as it was (startup tunes it for the process)."""
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


# -- configure -------------------------------------------------------------------------------


def test_configure_sets_the_projects_kopf_settings(kopf_objects_logger: logging.Logger) -> None:
    settings = kopf.OperatorSettings()

    handlers.configure(settings, peering=None)

    persistence = settings.persistence
    assert persistence.finalizer == "nodecluster.io/kopf"
    assert isinstance(persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert persistence.progress_storage.prefix == "nodecluster.io"
    assert isinstance(persistence.diffbase_storage, handlers.NoEssence)
    assert persistence.diffbase_storage.prefix == "nodecluster.io"
    assert persistence.diffbase_storage.key == "last-handled-configuration"
    watching = settings.watching
    assert (watching.server_timeout, watching.client_timeout) == (270, 300)
    assert watching.connect_timeout == 30
    assert watching.chunk_size == 1000
    assert settings.posting.enabled is False
    assert settings.networking.request_timeout == 60
    assert settings.peering.mandatory is False


def test_configure_with_peering_refuses_to_run_without_the_peering_objects(
    kopf_objects_logger: logging.Logger,
) -> None:
    settings = kopf.OperatorSettings()

    handlers.configure(settings, peering="nodecluster")

    assert settings.peering.mandatory is True


def test_configure_quietens_kopfs_line_per_handled_event(
    kopf_objects_logger: logging.Logger,
) -> None:
    kopf_objects_logger.setLevel(logging.INFO)

    handlers.configure(kopf.OperatorSettings(), peering=None)

    assert kopf_objects_logger.level == logging.WARNING


def test_configure_leaves_a_debug_log_level_alone(kopf_objects_logger: logging.Logger) -> None:
    kopf_objects_logger.setLevel(logging.DEBUG)

    handlers.configure(kopf.OperatorSettings(), peering=None)

    assert kopf_objects_logger.level == logging.DEBUG


def test_the_diff_base_storage_builds_an_empty_essence() -> None:
    storage = handlers.NoEssence(prefix="nodecluster.io", key="last-handled-configuration")

    assert storage.build(body=kopf.Body(NODE_BODY)) == {}


# -- startup and cleanup ---------------------------------------------------------------------


async def test_startup_builds_the_world_into_memo(
    monkeypatch: pytest.MonkeyPatch,
    fake: FakeKube,
    kopf_objects_logger: logging.Logger,
    gc_restored: None,
) -> None:
    connected: list[dict[str, Any]] = []

    async def connect(cls: type[KubeClient], **kwargs: Any) -> FakeKube:
        connected.append(kwargs)
        return fake

    monkeypatch.setattr(KubeClient, "connect", classmethod(connect))
    settings = kopf.OperatorSettings()
    memo = kopf.Memo(peering="nodecluster")
    index = LocalNodeIndex()

    await handlers.startup(settings=settings, memo=memo, clusternodes_by_cluster=index)

    world = memo["world"]
    try:
        assert isinstance(world, World)
        assert world.api is fake
        # Listed before the watches (NodeBookIndex): kopf's index only serves patterns.
        assert isinstance(world.node_index, NodeBookIndex)
        assert world.node_index is not index
        assert isinstance(world.cluster_index, ClusterBookIndex)
        assert world.cluster_index.complete  # seeded by a list (of no clusters here)
        assert isinstance(world.clock, SystemClock)
        # No id given: the default name and the (fake) Kubernetes cluster's identity.
        installation = default_installation_id("default", fake.cluster_identity)
        assert world.settings == Settings(installation_id=installation)
        assert "simulator" in world.providers.registry.names
        assert [c["max_connections"] for c in connected] == [Settings().api_connections]
        assert isinstance(connected[0]["clock"], SystemClock)
        assert settings.persistence.finalizer == "nodecluster.io/kopf"  # configured
        assert settings.peering.mandatory is True  # with memo's peering
        assert gc.get_threshold() == handlers.GC_THRESHOLDS
    finally:
        await world.queues.close()


def test_the_garbage_collector_is_tuned_for_a_process_holding_many_objects(
    gc_restored: None,
) -> None:
    handlers.tune_garbage_collector()

    assert gc.get_threshold() == handlers.GC_THRESHOLDS
    assert gc.get_freeze_count() > 0


async def test_cleanup_without_a_world_does_nothing() -> None:
    await handlers.cleanup(memo=kopf.Memo())


async def test_cleanup_finishes_running_reconciles_then_closes_queues_drivers_and_api(
    fake: FakeKube, clock: LoopClock, tmp_path: Path
) -> None:
    registry = ProviderRegistry()
    world = build_world(Settings(), fake, registry, clock, LocalNodeIndex(), LocalClusterIndex())
    config = ProviderConfig(name="sim", config={"path": str(tmp_path / "sim.db")}, clock=clock)
    await registry.driver_for("simulator", config)
    fake.add(CLUSTERNODES, NODE_BODY)
    fake.slow("get", "clusternodes", 30)  # a reconcile in flight, waiting on the API
    world.queues.node.add(("team-a", "web-x1"))

    await handlers.cleanup(memo=kopf.Memo(world=world))

    # It ran to its end (its provider does not exist: it said so) before the API closed.
    assert [c.outcome for c in fake.calls_of("get", "clusternodes")] == ["ok"]
    status = fake.stored(CLUSTERNODES, "team-a", "web-x1")["status"]  # type: ignore[index]
    assert status["conditions"][0]["reason"] == "ProviderNotFound"
    assert registry.cached("sim") is None
    assert fake.closed
    world.queues.node.add(("team-a", "web-x2"))
    assert world.queues.node.pending() == 0  # closed: accepts no more work


# -- the handlers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handler", "delegate"),
    [
        ("nodeprovider_event", "on_provider_event"),
        ("nodecluster_event", "on_cluster_event"),
        ("clusternode_event", "on_node_event"),
        ("operation_event", "on_operation_event"),
    ],
)
async def test_each_event_handler_hands_the_event_to_the_world(
    monkeypatch: pytest.MonkeyPatch, handler: str, delegate: str
) -> None:
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(handlers, delegate, lambda *args: seen.append(args))
    world = object()
    body = kopf.Body(NODE_BODY)

    await getattr(handlers, handler)(
        type="MODIFIED", body=body, memo=kopf.Memo(world=world), logger=logging.getLogger()
    )

    assert seen == [(world, "MODIFIED", body)]


async def test_the_node_index_keys_each_node_by_its_namespace_and_cluster() -> None:
    entry = await handlers.clusternodes_by_cluster(body=kopf.Body(NODE_BODY))

    [(key, view)] = entry.items()
    assert key == ("team-a", "web")
    assert (view.name, view.provider, view.machine_type) == ("web-x1", "sim", "small")
    assert not view.has_machine


async def test_the_cluster_index_keys_each_cluster_by_its_provider_from_its_events() -> None:
    body = {
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {"providerRef": {"name": "sim"}},
    }
    index = ClusterBookIndex()
    world = SimpleNamespace(cluster_index=index, book=SimpleNamespace(pending_operations=()))

    with contextlib.suppress(AttributeError):  # the rest of on_cluster_event: not here
        await handlers.nodecluster_event(
            type=None, body=kopf.Body(body), memo=kopf.Memo(world=world)
        )
    assert list(index["sim"]) == [("team-a", "web")]

    moved = {**body, "spec": {"providerRef": {"name": "other"}}}
    index.update("MODIFIED", moved)
    assert "sim" not in index and list(index["other"]) == [("team-a", "web")]
    index.update("DELETED", moved)
    assert "other" not in index


def test_every_watched_kind_has_its_handler_registered_with_kopf() -> None:
    # kopf keeps its registrations in private attributes (kopf is pinned in pyproject).
    registry = kopf.get_default_registry()
    watched = {
        h.fn.__name__: (h.selector.group, h.selector.version, h.selector.any_name)
        for h in registry._watching.get_all_handlers()
    }
    assert {name: watched.get(name) for name in handlers.__dict__ if name in watched} == {
        "nodeprovider_event": ("nodecluster.io", "v1alpha1", "nodeproviders"),
        "nodecluster_event": ("nodecluster.io", "v1alpha1", "nodeclusters"),
        "clusternode_event": ("nodecluster.io", "v1alpha1", "clusternodes"),
        "operation_event": ("nodecluster.io", "v1alpha1", "nodeclusteroperations"),
    }
    indexes = {h.id: h.selector.any_name for h in registry._indexing.get_all_handlers()}
    # None at import: a kopf index makes kopf's restart quadratic in the objects indexed
    # (world.NodeBookIndex, world.ClusterBookIndex). Only `--namespace` patterns, which no
    # list can serve, register kopf's index of ClusterNodes (run_operator).
    assert "clusternodes_by_cluster" not in indexes
    assert "nodeclusters" not in indexes.values()


def test_namespace_patterns_register_kopfs_index_of_clusternodes() -> None:
    registry = kopf.OperatorRegistry()
    handlers.watch_node_index(registry)
    handlers.watch_node_index(registry)  # (once, however often asked)
    indexes = [(h.id, h.selector.any_name) for h in registry._indexing.get_all_handlers()]
    assert indexes == [("clusternodes_by_cluster", CLUSTERNODES.plural)]
    assert handlers.patterned(("team-*",)) and not handlers.patterned(("team-a", "b"))


# -- run_operator ----------------------------------------------------------------------------


@pytest.fixture
def kopf_run(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """kopf.run and kopf.configure, recorded instead of run."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "run", lambda **kwargs: calls.append({"run": kwargs}))
    monkeypatch.setattr(kopf, "configure", lambda **kwargs: calls.append({"configure": kwargs}))
    logger = logging.getLogger("kubernetes_asyncio")
    monkeypatch.setattr(logger, "level", logger.level)
    return calls


def test_run_operator_watches_every_namespace_standalone_by_default(
    kopf_run: list[dict[str, Any]],
) -> None:
    handlers.run_operator([], liveness=None, peering=None)

    [configure, run] = kopf_run
    assert configure == {"configure": {"verbose": False, "debug": False}}
    kwargs = run["run"]
    memo = kwargs.pop("memo")
    assert kwargs == {
        "clusterwide": True,
        "namespaces": [],
        "liveness_endpoint": None,
        "standalone": True,
        "peering_name": None,
    }
    assert isinstance(memo, kopf.Memo)
    # The metrics the world will use, made before it (the endpoint serves from the start).
    assert isinstance(memo.pop("metrics"), Metrics)
    assert memo == {
        "peering": None,
        "installation_id": None,
        "installation_name": "default",
        "namespaces": [],
        "nodes": False,
        "lease": None,
        "receiver_address": None,
    }


def test_run_operator_serves_the_given_namespaces_with_peering_and_a_probe(
    kopf_run: list[dict[str, Any]],
) -> None:
    handlers.run_operator(
        ["team-a", "team-b"],
        liveness="http://0.0.0.0:8080/healthz",
        peering="nodecluster",
        verbose=True,
        debug=True,
    )

    [configure, run] = kopf_run
    assert configure == {"configure": {"verbose": True, "debug": True}}
    kwargs = run["run"]
    memo = kwargs.pop("memo")
    assert isinstance(memo.pop("metrics"), Metrics)
    assert memo == {
        "peering": "nodecluster",
        "installation_id": None,
        "installation_name": "default",
        "namespaces": ["team-a", "team-b"],
        "nodes": False,
        "lease": None,
        "receiver_address": None,
    }
    assert kwargs == {
        "clusterwide": False,
        "namespaces": ["team-a", "team-b"],
        "liveness_endpoint": "http://0.0.0.0:8080/healthz",
        "standalone": False,
        "peering_name": "nodecluster",
    }


def test_run_operator_never_lets_the_http_client_log_bodies(
    kopf_run: list[dict[str, Any]],
) -> None:
    logging.getLogger("kubernetes_asyncio").setLevel(logging.DEBUG)

    handlers.run_operator([], liveness=None, peering=None, debug=True)

    assert logging.getLogger("kubernetes_asyncio").level == logging.WARNING


# -- Node integration (--nodes) --------------------------------------------------------------


def test_nodes_are_watched_only_through_watch_kube_nodes() -> None:
    registry = kopf.OperatorRegistry()

    handlers.watch_kube_nodes(registry)
    handlers.watch_kube_nodes(registry)  # once is enough: a second call adds nothing

    indexes = [
        (h.id, h.selector.group, h.selector.version, h.selector.any_name)
        for h in registry._indexing.get_all_handlers()
    ]
    assert indexes == [("nodes_by_provider_id", "", "v1", "nodes")]
    watching = [(h.id, h.selector.any_name) for h in registry._watching.get_all_handlers()]
    assert watching == [("kube_node_event", "nodes")]
    # The default registry (the decorators at import) names no Node handler at all.
    default = kopf.get_default_registry()
    assert "nodes" not in {h.selector.any_name for h in default._indexing.get_all_handlers()}


def test_run_operator_with_nodes_watches_them_and_tells_startup(
    kopf_run: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    registered: list[object] = []
    monkeypatch.setattr(handlers, "watch_kube_nodes", registered.append)

    handlers.run_operator([], liveness=None, peering=None, nodes=True)

    assert registered == [kopf.get_default_registry()]
    assert kopf_run[1]["run"]["memo"]["nodes"] is True


def test_receivers_are_watched_only_through_watch_receivers(
    kopf_run: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = kopf.OperatorRegistry()
    handlers.watch_receivers(registry)
    handlers.watch_receivers(registry)  # once is enough

    watching = [(h.id, h.selector.any_name) for h in registry._watching.get_all_handlers()]
    assert watching == [("receiver_event", "nodeclusterreceivers")]
    # Without --receiver-address nothing watches them (their CRD and RBAC are optional).
    default = kopf.get_default_registry()
    assert "nodeclusterreceivers" not in {
        h.selector.any_name for h in default._watching.get_all_handlers()
    }
    registered: list[object] = []
    monkeypatch.setattr(handlers, "watch_receivers", registered.append)
    handlers.run_operator([], liveness=None, peering=None, receiver_address="127.0.0.1:0")
    assert registered == [kopf.get_default_registry()]
    assert kopf_run[1]["run"]["memo"]["receiver_address"] == "127.0.0.1:0"


async def test_startup_with_nodes_links_the_world_to_the_node_index(
    monkeypatch: pytest.MonkeyPatch, fake: FakeKube, gc_restored: None
) -> None:
    async def connect(cls: type[KubeClient], **kwargs: Any) -> FakeKube:
        return fake

    monkeypatch.setattr(KubeClient, "connect", classmethod(connect))
    memo = kopf.Memo(installation_id="test", nodes=True)
    kube_nodes = LocalKubeNodeIndex()

    await handlers.startup(
        settings=kopf.OperatorSettings(),
        memo=memo,
        clusternodes_by_cluster=LocalNodeIndex(),
        nodeclusters_by_provider=LocalClusterIndex(),
        nodes_by_provider_id=kube_nodes,
    )

    world = memo["world"]
    try:
        assert world.settings.nodes is True
        assert world.node_links is not None
        assert world.node_links.index is kube_nodes
    finally:
        await world.queues.close()
