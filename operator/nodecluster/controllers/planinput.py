"""The planner's input, made from a NodeCluster and what was read about it.

One place builds `Declared` and `Observed`, for the NodeCluster controller (every
reconcile) and for `nodecluster-operator plan` (a preview of a changed spec, read-only):
a preview that assembled its own input would drift from what the controller decides the
first time either changes (a new field of `Observed` left at its default by one of them).
What differs between the two is only where the figures come from: the controller reads
its caches and its provider book, the preview the API; both hand them in here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from nodecluster.api.clusternode import ClusterNode
from nodecluster.api.nodecluster import NodeCluster
from nodecluster.api.reasons import Reason
from nodecluster.controllers.quota import Headroom
from nodecluster.controllers.world import IndexedNode, node_view, profile_hash
from nodecluster.planning.model import Declared, NodeView, Observed


def declared_of(nc: NodeCluster) -> Declared:
    """The cluster as its owner declared it: spec, generation and the profile's hash (the
    hash its nodes are compared with to decide a rollout)."""
    return Declared(
        name=nc.metadata.name,
        spec=nc.spec,
        generation=nc.metadata.generation,
        profile_hash=profile_hash(nc.spec.profile),
        deleting=nc.metadata.deletion_timestamp is not None,
    )


def observed_of(
    nc: NodeCluster,
    nodes: Iterable[NodeView],
    now: datetime,
    *,
    headroom: Headroom | None,
    provider_problem: tuple[Reason, str] | None,
    no_new_machines: tuple[Reason, str] | None,
    seed: int,
    watching_nodes: bool,
) -> Observed:
    """The world as read: the cluster's nodes, the provider's quota headroom (None: no
    quota) and problems, and what the cluster's status remembers (the exhausted offerings
    of the capacity fallback, the previous status)."""
    return Observed(
        nodes=tuple(nodes),
        now=now,
        previous=nc.status,
        headroom=None if headroom is None else headroom[0],
        headroom_limit=None if headroom is None else headroom[1],
        provider_problem=provider_problem,
        no_new_machines=no_new_machines,
        seed=seed,
        exhausted=tuple(nc.status.exhausted_capacity or ()),
        watching_nodes=watching_nodes,
    )


def listed_nodes(bodies: Iterable[Mapping[str, Any]], cluster: str) -> list[IndexedNode]:
    """The planner's views of a cluster's ClusterNodes among a namespace's listed ones
    (members by `spec.clusterName`, as the node index keys them, not by label: a label
    can be edited by anyone)."""
    return [
        node_view(ClusterNode.model_validate(body))
        for body in bodies
        if body.get("spec", {}).get("clusterName") == cluster
    ]
