"""`build_world`: the one place that builds what the controllers share.

Everything is constructed here, the work queues included, and handed down: by kopf's
memo in production (`handlers.py`), by `nodecluster.testing.Harness` in tests, by the
benchmarks. Nothing is optional and nothing is patched in after construction.

`load_providers` fills the provider cache before the watches start, for the same callers.
"""

from __future__ import annotations

from nodecluster.api.nodeprovider import NodeProvider
from nodecluster.clock import Clock
from nodecluster.controllers.clusternode import reconcile_node
from nodecluster.controllers.failures import reporting
from nodecluster.controllers.kubeapi import NODEPROVIDERS, KubeApi
from nodecluster.controllers.metrics import Metrics
from nodecluster.controllers.nodecluster import reconcile_cluster
from nodecluster.controllers.nodeprovider import poll_provider, reconcile_provider
from nodecluster.controllers.operation import reconcile_operations
from nodecluster.controllers.relist import audit_relist
from nodecluster.controllers.workqueue import WorkQueue
from nodecluster.controllers.world import (
    ClusterIndex,
    KubeNodeIndex,
    NodeIndex,
    NodeLinks,
    ProviderBook,
    Queues,
    Settings,
    World,
)
from nodecluster.providers.registry import ProviderRegistry

# The reconcilers as the queues run them: a failure they do not handle themselves is
# written on the object and posted as one Warning Event before the retry (failures.py).
_cluster = reporting("NodeCluster", reconcile_cluster)
_node = reporting("ClusterNode", reconcile_node)
_operations = reporting("NodeClusterOperation", reconcile_operations)
_provider = reporting("NodeProvider", reconcile_provider)


def build_world(
    settings: Settings,
    api: KubeApi,
    registry: ProviderRegistry,
    clock: Clock,
    node_index: NodeIndex,
    cluster_index: ClusterIndex,
    kube_nodes: KubeNodeIndex | None = None,
    metrics: Metrics | None = None,
) -> World:
    """The controllers' world. Must be called inside the event loop that will run it.
    `kube_nodes` (the Kubernetes Nodes by provider id) is needed with `settings.nodes`.
    `metrics`: those the endpoint serves, made before the world so that the endpoint is up
    from the process's start (`run --metrics-address`); else the world's own."""
    if settings.nodes and kube_nodes is None:
        raise ValueError("Node integration (settings.nodes) needs the index of Nodes")
    # The queues' handlers reach the world through this closure; it is assigned below,
    # before any queue can run a handler (queues only run keys added to them).
    queues = Queues(
        cluster=WorkQueue(
            "NodeCluster",
            lambda key: _cluster(world, key),
            settings.cluster_concurrency,
        ),
        node=WorkQueue(
            "ClusterNode",
            lambda key: _node(world, key),
            settings.concurrency,
        ),
        operation=WorkQueue(
            "NodeClusterOperation",
            lambda key: _operations(world, key),
            settings.operation_concurrency,
        ),
        provider=WorkQueue(
            "NodeProvider",
            lambda name: _provider(world, name),
            settings.provider_concurrency,
        ),
        poll=WorkQueue(
            "ProviderPoll", lambda name: poll_provider(world, name), settings.provider_concurrency
        ),
        relist=WorkQueue("Relist", lambda plural: audit_relist(world, plural), 3),
    )
    world = World(
        api=api,
        clock=clock,
        settings=settings,
        node_index=node_index,
        cluster_index=cluster_index,
        queues=queues,
        providers=ProviderBook(
            api=api,
            registry=registry,
            clock=clock,
            credentials_refresh_seconds=settings.credentials_refresh_seconds,
        ),
        node_links=NodeLinks(kube_nodes) if settings.nodes and kube_nodes is not None else None,
        metrics=metrics if metrics is not None else Metrics(),
    )
    world.metrics.watch_queues(queues.all())
    registry.observe_calls(world.metrics.provider_call)
    return world


async def load_providers(world: World) -> None:
    """Put every NodeProvider into the provider cache, before any reconcile can run.

    kopf delivers each kind's initial listing from its own watcher, in no fixed order, and
    the cache is otherwise filled only by NodeProvider events. After a restart, a cluster
    or node listed before its provider was reconciled against no provider: it reported
    `ProviderNotFound` for a moment, and an operation waiting on that cluster failed
    because it said Stalled. One list call at startup (a handful of objects) removes the
    race. Only the specs are cached, as `events.on_provider_event` caches them; each
    provider's own reconcile still runs when its watch event comes.
    """
    for body in await world.api.list(NODEPROVIDERS, None):
        provider = NodeProvider.model_validate(body)
        world.providers.specs[provider.metadata.name] = provider
