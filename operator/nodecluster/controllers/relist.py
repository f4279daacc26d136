"""The audit after a watch listed its kind again: objects deleted while it was away.

A watch answered `410 Gone` is started over by kopf from a fresh list (world.Relists says
when that happens and why an API server restart makes it happen), and the DELETED events
of the objects deleted in between never come. What the operator keeps from events alone
would keep them for ever: a node its cluster counts, so the cluster says Scaling and never
settles; a cluster its provider counts, so the provider is never let go; a provider whose
clusters are never told it is gone.

So when a listing begins, the kind is listed once more here, a page at a time, and every
object the operator holds that is neither in that list nor shown by an event since the
list began is gone: it is forgotten as its DELETED event would have made it forgotten.
The list is one consistent snapshot, taken after the object was last seen and after the
watch broke; an object created or re-created after the snapshot is shown by an event
after the list began, so it is never taken for gone. Whether kopf's own listing has
finished meanwhile does not matter.

It costs one list per listing kopf makes again (kopf lists the whole kind then too), and
nothing otherwise. With `--namespace` patterns nothing can be listed: there is no audit,
as there is no startup list (handlers.patterned), and the operator relies on kopf's index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from nodecluster.controllers.events import (
    key_of,
    on_cluster_event,
    on_node_event,
    on_provider_event,
)
from nodecluster.controllers.expectations import NsName
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS, Kind
from nodecluster.controllers.world import ClusterBookIndex, NodeBookIndex, World

log = logging.getLogger(__name__)


async def audit_relist(world: World, plural: str) -> None:
    """List `plural` and forget what the operator holds of it that is gone (see above)."""
    audit = _audit(world, plural)
    if audit is None:
        return
    kind, known, gone = audit
    touched = world.relists.touched[plural] = set()
    try:
        present: set[NsName] = set()
        namespaces = world.settings.namespaces if kind.namespaced else ()
        for namespace in namespaces or (None,):
            async for page in world.api.pages(kind, namespace):
                present.update(key_of(body) for body in page)
        missing = [key for key in known() if key not in present and key not in touched]
    finally:
        del world.relists.touched[plural]
    for key in missing:
        log.info("%s %s/%s is gone: deleted while the watch was away", plural, *key)
        gone(key)


Audit = tuple[Kind, Callable[[], Iterable[NsName]], Callable[[NsName], None]]


def _audit(world: World, plural: str) -> Audit | None:
    """What to list, what the operator holds, and how to forget one, for the kind."""
    if plural == "clusternodes" and isinstance(world.node_index, NodeBookIndex):
        nodes = world.node_index

        def node_gone(key: NsName) -> None:
            body = _last_body(world, "ClusterNode", key)
            cluster = nodes.cluster_of(key)
            if cluster is not None:
                body.setdefault("spec", {}).setdefault("clusterName", cluster[1])
            nodes.update("DELETED", body)
            on_node_event(world, "DELETED", body)

        return CLUSTERNODES, nodes.nodes, node_gone
    if plural == "nodeclusters" and isinstance(world.cluster_index, ClusterBookIndex):
        clusters = world.cluster_index
        if not clusters.complete:
            return None

        def cluster_gone(key: NsName) -> None:
            body = _last_body(world, "NodeCluster", key)
            provider = clusters.provider_of(key)
            if provider is not None:
                spec = body.setdefault("spec", {})
                spec.setdefault("providerRef", {}).setdefault("name", provider)
            clusters.update("DELETED", body)
            on_cluster_event(world, "DELETED", body)

        return NODECLUSTERS, clusters.clusters, cluster_gone
    if plural == "nodeproviders":

        def providers() -> list[NsName]:
            return [("", name) for name in world.providers.specs]

        def provider_gone(key: NsName) -> None:
            on_provider_event(world, "DELETED", _last_body(world, "NodeProvider", key))

        return NODEPROVIDERS, providers, provider_gone
    return None


def _last_body(world: World, kind: str, key: NsName) -> dict[str, Any]:
    """The object's newest known body, else one with its name only (a DELETED event's
    handler reads little more)."""
    body = world.bodies.get((kind, *key))
    if body is not None:
        return dict(body)
    metadata = {"name": key[1], **({"namespace": key[0]} if key[0] else {})}
    return {"metadata": metadata}
