"""kopf wiring: watches wake keys in work queues; the queues run the reconcilers.

Only `on.event` handlers and indexes are used. They make kopf write nothing of its own
(no progress annotations, no diff-base, no finalizer), so every API write the operator
makes is one the controllers chose: that is how a node costs at most three writes.
kopf still provides what it is good at: resilient watches, per-object ordering,
indexes that are complete before any handler runs, peering and the liveness probe.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import kopf

from nodecluster import GROUP, VERSION
from nodecluster.api.clusternode import ClusterNode
from nodecluster.api.nodeprovider import NodeProvider
from nodecluster.controllers.clusternode import reconcile_node
from nodecluster.controllers.kube import KubeClient
from nodecluster.controllers.nodecluster import reconcile_cluster
from nodecluster.controllers.nodeprovider import poll_provider, reconcile_provider
from nodecluster.controllers.operation import reconcile_operations
from nodecluster.controllers.workqueue import WorkQueue
from nodecluster.controllers.world import IndexedNode, Settings, World, node_view
from nodecluster.providers.registry import ProviderRegistry

log = logging.getLogger(__name__)


class NoEssence(kopf.AnnotationsDiffBaseStorage):
    """A diff-base storage for an operator without change-detecting handlers.

    kopf builds every object's "essence" on every watch event, to find what changed for
    on.create/on.update/on.field handlers: two deep copies of the body per event, about a
    tenth of the operator's CPU while a fleet converges. With only on.event handlers and
    indexes, nothing reads it, so the essence is empty. (Adding a change-detecting handler
    means going back to kopf.AnnotationsDiffBaseStorage.)
    """

    def build(
        self,
        *,
        body: kopf.Body,
        extra_fields: Any = None,
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()


def configure(settings: kopf.OperatorSettings, peering: str | None) -> None:
    """The project's kopf settings."""
    settings.persistence.finalizer = f"{GROUP}/kopf"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = NoEssence(
        prefix=GROUP, key="last-handled-configuration"
    )
    objects = logging.getLogger("kopf.objects")
    if objects.getEffectiveLevel() == logging.INFO:
        # "Handler 'x_event' succeeded." for every watch event: a line per event says
        # nothing (failures are still logged), and formatting it costs ~5% CPU under load.
        objects.setLevel(logging.WARNING)
    # Watches can go silent behind load balancers: reconnect well before that happens.
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 30
    # The initial listing in pages: at a restart with 10,000 clusters, one page is a
    # response of tens of megabytes held (and parsed) at once.
    settings.watching.chunk_size = 1000
    settings.posting.enabled = False  # Events are posted by the controllers, deliberately.
    settings.networking.request_timeout = 60
    if peering:
        # Two replicas must never reconcile at once: without the peering objects, refuse to run.
        settings.peering.mandatory = True


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Build the world once and hand it to every handler through memo."""
    configure(settings, memo.get("peering"))
    tunables = Settings()
    client = await KubeClient.connect(max_connections=tunables.api_connections)
    world = World(client=client, registry=ProviderRegistry(), settings=tunables)
    world.expectations.timeout = world.settings.expectation_timeout_seconds
    world.cluster_queue = WorkQueue(
        "NodeCluster", lambda k: reconcile_cluster(world, k), world.settings.cluster_concurrency
    )
    world.node_queue = WorkQueue(
        "ClusterNode", lambda k: reconcile_node(world, k), world.settings.concurrency
    )
    world.operation_queue = WorkQueue(
        "NodeClusterOperation", lambda k: reconcile_operations(world, k), 256
    )
    world.provider_queue = WorkQueue("NodeProvider", lambda k: reconcile_provider(world, k), 16)
    world.poll_queue = WorkQueue("ProviderPoll", lambda k: poll_provider(world, k), 16)
    memo["world"] = world
    tune_garbage_collector()


GC_THRESHOLDS = (20_000, 20, 20)
"""Allocations between young collections, and young collections between older ones."""


def tune_garbage_collector() -> None:
    """Make the cyclic garbage collector cheap for a process holding many objects.

    With the defaults (700, 10, 10) a converging fleet of 1,000 nodes ran a thousand
    collections, a quarter of the operator's CPU: every full collection walks every
    object, the imported modules' included. Those are frozen (never collected, they live
    as long as the process anyway), and collections run less often. Reference counting
    still frees almost everything at once; only garbage in reference cycles waits longer.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Finish in-flight reconciles, then close clients and drivers."""
    world: World | None = memo.get("world")
    if world is None:
        return
    for queue in (
        world.cluster_queue,
        world.node_queue,
        world.provider_queue,
        world.poll_queue,
        world.operation_queue,
    ):
        if queue is not None:
            await queue.close()
    await world.registry.close()
    await world.client.close()


# `async def` although it never awaits: kopf runs a plain `def` handler in a worker
# thread, two thread round trips for every ClusterNode event.
@kopf.index(GROUP, VERSION, "clusternodes")
async def clusternodes_by_cluster(
    body: kopf.Body, namespace: str | None, **_: Any
) -> dict[tuple[str, str], IndexedNode]:
    """(namespace, cluster) -> the node's planning view: the controllers' node cache,
    also the provider usage counted against quotas."""
    node = ClusterNode.model_validate(body)
    return {(namespace or "", node.spec.cluster_name): node_view(node)}


def _bind(world: World, kwargs: dict[str, Any]) -> None:
    if world.node_index is None:
        world.node_index = kwargs["clusternodes_by_cluster"]


@kopf.on.event(GROUP, VERSION, "nodeproviders")
async def nodeprovider_event(
    type: str, body: kopf.Body, name: str, memo: Any, **kwargs: Any
) -> None:
    """Keep the provider cache current and wake its reconcile."""
    world: World = memo["world"]
    _bind(world, kwargs)
    assert world.provider_queue is not None
    if type == "DELETED":
        world.bodies.forget(("NodeProvider", "", name))
        world.providers.pop(name, None)
        world.credentials.pop(name, None)
        world.provider_queue.forget(name)
        if world.cluster_queue is not None:
            for key in world.clusters_by_provider.get(name, set()):
                world.cluster_queue.add(key)
        return
    world.providers[name] = NodeProvider.model_validate(dict(body))
    if world.bodies.observe(("NodeProvider", "", name), dict(body)):
        world.provider_queue.add(name)


@kopf.on.event(GROUP, VERSION, "nodeclusters")
async def nodecluster_event(
    type: str, body: kopf.Body, name: str, namespace: str | None, memo: Any, **kwargs: Any
) -> None:
    """Wake the cluster's reconcile with the newest body."""
    world: World = memo["world"]
    _bind(world, kwargs)
    assert world.cluster_queue is not None
    namespace = namespace or ""
    key = (namespace, name)
    provider = str(body.get("spec", {}).get("providerRef", {}).get("name", ""))
    if key in world.pending_operations and world.operation_queue is not None:
        world.operation_queue.add(key)
    if type == "DELETED":
        world.cluster_locks.pop(key, None)
        world.cluster_queue.forget(key)
        world.bodies.forget(("NodeCluster", namespace, name))
        world.clusters_by_provider.get(provider, set()).discard(key)
        world.expectations.forget(key)
        world.progress_written.pop(key, None)
        return
    world.clusters_by_provider.setdefault(provider, set()).add(key)
    if world.bodies.observe(("NodeCluster", namespace, name), dict(body)):
        world.cluster_queue.add(key)


@kopf.on.event(GROUP, VERSION, "clusternodes")
async def clusternode_event(
    type: str, body: kopf.Body, name: str, namespace: str | None, memo: Any, **kwargs: Any
) -> None:
    """Wake the node's own reconcile, and (debounced) its cluster's."""
    world: World = memo["world"]
    _bind(world, kwargs)
    assert world.node_queue is not None and world.cluster_queue is not None
    namespace = namespace or ""
    key = (namespace, name)
    cluster = str(body.get("spec", {}).get("clusterName", ""))
    if cluster:
        parent = (namespace, cluster)
        world.cluster_queue.add(parent, delay=world.settings.child_debounce_seconds)
        if parent in world.pending_operations and world.operation_queue is not None:
            world.operation_queue.add(parent, delay=world.settings.child_debounce_seconds)
    if type == "DELETED":
        world.node_queue.forget(key)
        world.bodies.forget(("ClusterNode", namespace, name))
        return
    needs_work = _needs_work(body, retry_due=world.node_queue.knows(key))
    fresh = world.bodies.observe(("ClusterNode", namespace, name), dict(body), keep=needs_work)
    if fresh and needs_work:
        world.node_queue.add(key)


def _needs_work(body: kopf.Body, retry_due: bool) -> bool:
    """Whether a ClusterNode event asks its controller to act now.

    The node controller's own status writes come back as events; waking it for those
    would cost a reconcile and a provider call each. Work is needed when the object is
    being deleted, its spec changed (generation), it has no machine yet and no reported
    error, or its power state differs from the request. Errors and settling machines are
    retried by the queue's own timers, with backoff: `retry_due` says whether this
    process has one for the node. After a restart there is none, so the first sighting of
    such a node (in the initial listing) starts its reconcile; otherwise a node whose
    create failed just before a kill -9 would wait forever for a retry nobody scheduled.
    A Failed machine is its cluster's to replace, never the node's to retry.
    """
    meta = body.get("metadata", {})
    status = body.get("status") or {}
    spec = body.get("spec", {})
    if meta.get("deletionTimestamp"):
        return True
    if status.get("observedGeneration") != meta.get("generation"):
        return True
    if status.get("message"):
        return not retry_due
    if status.get("providerId") is None:
        return True
    state = status.get("state")
    if state in ("Running", "Stopped"):
        return bool(state != spec.get("powerState", "Running"))
    return state != "Failed" and not retry_due


@kopf.on.event(GROUP, VERSION, "nodeclusteroperations")
async def operation_event(
    type: str, body: kopf.Body, namespace: str | None, memo: Any, **kwargs: Any
) -> None:
    """Operations run per cluster, one at a time, in creation order: wake that cluster's."""
    world: World = memo["world"]
    _bind(world, kwargs)
    cluster = str(body.get("spec", {}).get("clusterName", ""))
    if world.operation_queue is not None and cluster and type != "DELETED":
        world.operation_queue.add((namespace or "", cluster))
