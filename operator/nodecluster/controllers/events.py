"""What a watch event does: keep the caches current and wake the right work queue.

These functions are the whole of the operator's reaction to the watch. kopf calls them
from `handlers.py`; the in-process test harness (`nodecluster.testing`) calls the same
functions with the fake API's events, so what is tested is what runs. They never call
the API or a provider: an event only wakes a key, and the queue's reconcile reads the
world afresh (level-triggered).

`type` is the watch event's type ("ADDED", "MODIFIED", "DELETED", or None for the
initial listing, as kopf passes it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nodecluster.api.nodeprovider import NodeProvider
from nodecluster.controllers.hooks import hook_news
from nodecluster.controllers.world import PROVIDER_REFRESH_SECONDS, World
from nodecluster.planning.kubenode import link_stale, node_facts


def key_of(body: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name) of an object's body ("" for a cluster-scoped one's namespace)."""
    meta = body.get("metadata", {})
    return str(meta.get("namespace") or ""), str(meta.get("name", ""))


AUDITED = ("nodeproviders", "nodeclusters", "clusternodes")
"""The kinds audited after a new listing (relist.py): those whose deletions the operator
must see. Operations are read afresh by each run of their cluster's queue."""


def _note(world: World, kind: str, type: str | None, key: tuple[str, str]) -> None:
    """Note the event for the relist audit, and audit every kind when the watches begin
    a new listing (world.Relists, relist.py)."""
    if world.relists.saw(kind, type, key, world.clock.monotonic()):
        for audited in AUDITED:
            world.queues.relist.add(audited)


def on_provider_event(world: World, type: str | None, body: Mapping[str, Any]) -> None:
    """Keep the provider cache current and wake its reconcile. A deleted provider wakes
    what used it, to say it is gone: its clusters, and the nodes no cluster speaks for."""
    _, name = key_of(body)
    _note(world, "nodeproviders", type, ("", name))
    if type == "DELETED":
        world.forget_provider(name)
        for key in world.clusters_of(name):
            world.queues.cluster.add(key)
        for node in world.loose_nodes(name):
            world.queues.node.add(node)
        return
    cache_key = ("NodeProvider", "", name)
    fresh = world.bodies.observe(cache_key, dict(body))
    # The newest known, not this event's: a watch behind our own finalizer write must
    # not make the cache forget the finalizer (inuse.hold_for_create reads it there).
    world.providers.specs[name] = NodeProvider.model_validate(
        world.bodies.get(cache_key) or dict(body)
    )
    if fresh:
        world.queues.provider.add(name)


def on_cluster_event(world: World, type: str | None, body: Mapping[str, Any]) -> None:
    """Wake the cluster's reconcile with the newest body. A cluster added or gone changes
    what uses its provider: the provider looks again soon (inuse.py)."""
    namespace, name = key_of(body)
    key = (namespace, name)
    _note(world, "nodeclusters", type, key)
    if key in world.book.pending_operations:
        world.queues.operation.add(key)
    if type in ("ADDED", "DELETED"):  # (the initial listing's provider reconcile counts it)
        provider = str(body.get("spec", {}).get("providerRef", {}).get("name", ""))
        world.queues.provider.add(provider, delay=PROVIDER_REFRESH_SECONDS)
    if type == "DELETED":
        world.forget_cluster(key)
        return
    if world.bodies.observe(("NodeCluster", namespace, name), dict(body)):
        world.queues.cluster.add(key)


def on_node_event(world: World, type: str | None, body: Mapping[str, Any]) -> None:
    """Count what the node holds of its provider (the index took the event already), wake
    the node's own reconcile, and (debounced) its cluster's."""
    world.usage.observe_body(type, body)
    namespace, name = key_of(body)
    key = (namespace, name)
    _note(world, "clusternodes", type, key)
    cluster = str(body.get("spec", {}).get("clusterName", ""))
    if cluster:
        parent = (namespace, cluster)
        world.queues.cluster.add(parent, delay=world.settings.child_debounce_seconds)
        if parent in world.book.pending_operations:
            world.queues.operation.add(parent, delay=world.settings.child_debounce_seconds)
    links = world.node_links
    provider_id = (body.get("status") or {}).get("providerId") if links is not None else None
    if type == "DELETED":
        if links is not None and provider_id and links.owners.get(provider_id) == key:
            del links.owners[provider_id]
        world.queues.node.forget(key)
        world.bodies.forget(("ClusterNode", namespace, name))
        return
    work = needs_work(body, retry_due=world.queues.node.knows(key))
    if links is not None and provider_id:
        links.owners[provider_id] = key
        work = work or link_stale(body, links.node_of(provider_id))
    fresh = world.bodies.observe(("ClusterNode", namespace, name), dict(body), keep=work)
    if fresh and work:
        world.queues.node.add(key)


def on_kube_node_event(world: World, type: str | None, body: Mapping[str, Any]) -> None:
    """A Kubernetes Node changed (`run --nodes`): wake the ClusterNode whose machine it is,
    when something it says of the Node may be out of date (NodeFacts.relevant).

    The initial listing wakes nothing: each ClusterNode's own listing event compares what
    its status says with the Node (on_node_event, link_stale), so a restart reconciles only
    the nodes whose Node changed while the operator was away."""
    links = world.node_links
    facts = node_facts(body)
    if links is None or facts is None:
        return
    pid = facts.provider_id
    if type == "DELETED":
        links.seen.pop(pid, None)
        changed = True
    else:
        digest = hash(facts.relevant())
        changed = links.seen.get(pid) != digest
        links.seen[pid] = digest
    owner = links.owners.get(pid)
    if changed and type is not None and owner is not None:
        world.queues.node.add(owner)


def on_operation_event(world: World, type: str | None, body: Mapping[str, Any]) -> None:
    """Operations run per cluster, one at a time, in creation order: wake that cluster's."""
    namespace, name = key_of(body)
    _note(world, "nodeclusteroperations", type, (namespace, name))
    cluster = str(body.get("spec", {}).get("clusterName", ""))
    if cluster and type != "DELETED":
        world.queues.operation.add((namespace, cluster))


def needs_work(body: Mapping[str, Any], retry_due: bool) -> bool:
    """Whether a ClusterNode event asks its controller to act now.

    The node controller's own status writes come back as events; waking it for those
    would cost a reconcile and a provider call each. Work is needed when the object is
    being deleted, its spec changed (generation), it has no machine yet and no reported
    error, or its power state differs from the request. Errors and settling machines are
    retried by the queue's own timers, with backoff: `retry_due` says whether this
    process has one for the node. After a restart there is none, so the first sighting of
    such a node (in the initial listing) starts its reconcile; otherwise a node whose
    create failed just before a kill -9 would wait forever for a retry nobody scheduled.
    A node waiting on a lifecycle hook is woken by news for that hook (hooks.hook_news).
    A Failed machine is its cluster's to replace, never the node's to retry.
    """
    meta = body.get("metadata", {})
    status = body.get("status") or {}
    spec = body.get("spec", {})
    if meta.get("deletionTimestamp"):
        return True
    if status.get("observedGeneration") != meta.get("generation"):
        return True
    if hook_news(body):
        return True
    if status.get("message"):
        return not retry_due
    if status.get("providerId") is None:
        return True
    state = status.get("state")
    if state in ("Running", "Stopped"):
        return bool(state != spec.get("powerState", "Running"))
    return state != "Failed" and not retry_due


WATCHED = {
    "nodeproviders": on_provider_event,
    "nodeclusters": on_cluster_event,
    "clusternodes": on_node_event,
    "nodeclusteroperations": on_operation_event,
}
"""The handler of each watched kind (plural), for whoever delivers the watch."""

WATCHED_WITH_NODES = {**WATCHED, "nodes": on_kube_node_event}
"""The same with Node integration (`run --nodes`): Kubernetes Nodes are watched too."""
