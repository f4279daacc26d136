"""`build_world`: the one place that builds what the controllers share.

Everything is constructed here, the work queues included, and handed down: by kopf's
memo in production (`handlers.py`), by `nodecluster.testing.Harness` in tests, by the
benchmarks. Nothing is optional and nothing is patched in after construction.
"""

from __future__ import annotations

from nodecluster.clock import Clock
from nodecluster.controllers.clusternode import reconcile_node
from nodecluster.controllers.kubeapi import KubeApi
from nodecluster.controllers.nodecluster import reconcile_cluster
from nodecluster.controllers.nodeprovider import poll_provider, reconcile_provider
from nodecluster.controllers.operation import reconcile_operations
from nodecluster.controllers.workqueue import WorkQueue
from nodecluster.controllers.world import NodeIndex, ProviderBook, Queues, Settings, World
from nodecluster.providers.registry import ProviderRegistry


def build_world(
    settings: Settings,
    api: KubeApi,
    registry: ProviderRegistry,
    clock: Clock,
    node_index: NodeIndex,
) -> World:
    """The controllers' world. Must be called inside the event loop that will run it."""
    # The queues' handlers reach the world through this closure; it is assigned below,
    # before any queue can run a handler (queues only run keys added to them).
    queues = Queues(
        cluster=WorkQueue(
            "NodeCluster", lambda key: reconcile_cluster(world, key), settings.cluster_concurrency
        ),
        node=WorkQueue("ClusterNode", lambda key: reconcile_node(world, key), settings.concurrency),
        operation=WorkQueue(
            "NodeClusterOperation",
            lambda key: reconcile_operations(world, key),
            settings.operation_concurrency,
        ),
        provider=WorkQueue(
            "NodeProvider",
            lambda name: reconcile_provider(world, name),
            settings.provider_concurrency,
        ),
        poll=WorkQueue(
            "ProviderPoll", lambda name: poll_provider(world, name), settings.provider_concurrency
        ),
    )
    world = World(
        api=api,
        clock=clock,
        settings=settings,
        node_index=node_index,
        queues=queues,
        providers=ProviderBook(api=api, registry=registry, clock=clock),
    )
    return world
