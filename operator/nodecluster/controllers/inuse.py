"""NodeProviders in use: the finalizer by which an installation holds the providers it uses.

A NodeProvider deleted while NodeClusters or ClusterNodes use it leaves their machines
with no way to be deleted: a cluster deleted afterwards hangs in Terminating, its nodes
unable to call a provider that is not there. So each operator installation holds every
provider it uses with a finalizer of its own (`provider_finalizer(installation id)`):
several installations may share one API server, and one's clusters going must not let go
of another's hold.

Users are the NodeClusters that name the provider (the cluster index) and the ClusterNodes
that name it outside those (`World.loose_nodes`: made by hand, or left by a NodeCluster
removed without its finalizer). Both indexes are complete before any handler runs, so the
count is whole from a restarted operator's first look, which therefore writes nothing.

The finalizer is added
- by the provider's reconcile, whenever the provider has users and no hold (which is also
  all an upgrade from a version without it needs), and
- by a node about to create a machine (`hold_for_create`) if the reconcile has not yet:
  no machine is ever made through a provider this installation does not hold, so one
  deleted between a cluster's creation and the provider's next look strands nothing.

and removed by the provider's reconcile once nothing uses the provider. Both change it under
one lock per provider, with the resourceVersion they read as a precondition, and the
reconcile counts the users under that lock: a node that found the hold there was in the
node index before its reconcile ran, so the count that follows sees it.

Never added to a provider being deleted (the API server refuses that, 422). Such a provider
is used as before for what exists (machines are stopped, started, polled and deleted
through it, so clusters and nodes can still be deleted cleanly), but gives no new machines,
as a namespace being deleted takes no new objects (`ProviderDeleting`): it is on its way
out, and a machine made now would only hold it longer. Its status names what holds it and a
Warning Event says why its deletion waits; when the last user is gone, the finalizer goes,
and so does the provider.
"""

from __future__ import annotations

import heapq
from typing import Any

from nodecluster.api.nodeprovider import (
    LISTED_USERS,
    NodeProvider,
    ProviderUser,
    ProviderUsers,
    provider_finalizer,
)
from nodecluster.api.reasons import Reason
from nodecluster.controllers.kubeapi import NODEPROVIDERS, KubeConflict, KubeError, KubeNotFound
from nodecluster.controllers.world import World

HOLD_ATTEMPTS = 3
"""Finalizer writes a node makes before it gives up for this reconcile (each after a 409 or
422 and a fresh read): another writer won each time, and the node's backoff takes over."""


def users_of(world: World, provider: str) -> ProviderUsers | None:
    """What of this installation uses `provider` (None: nothing), with the first few named:
    NodeClusters first, then loose ClusterNodes, each by namespace and name."""
    clusters = world.clusters_of(provider)
    loose = world.loose_nodes(provider)
    if not clusters and not loose:
        return None
    first = [
        ProviderUser(kind="NodeCluster", namespace=ns, name=name)
        for ns, name in heapq.nsmallest(LISTED_USERS, clusters)
    ]
    first += [
        ProviderUser(kind="ClusterNode", namespace=ns, name=name)
        for ns, name in heapq.nsmallest(LISTED_USERS - len(first), loose)
    ]
    return ProviderUsers(node_clusters=len(clusters), cluster_nodes=len(loose), first=first)


def describe(users: ProviderUsers) -> str:
    """The users for a message: "1 NodeCluster (team-a/web) and 2 ClusterNodes (...)"."""

    def part(kind: str, count: int) -> str | None:
        if not count:
            return None
        named = [f"{u.namespace}/{u.name}" for u in users.first if u.kind == kind]
        more = f" and {count - len(named)} more" if count > len(named) else ""
        return f"{count} {kind}{'' if count == 1 else 's'} ({', '.join(named)}{more})"

    parts = [part("NodeCluster", users.node_clusters), part("ClusterNode", users.cluster_nodes)]
    return " and ".join(p for p in parts if p)


def deletion_waits(world: World, provider: str, users: ProviderUsers) -> str:
    """Why a provider being deleted is still there, for its status and Event."""
    installation = world.settings.installation_id
    return (
        f"NodeProvider {provider!r} is being deleted and waits for what uses it: "
        f"{describe(users)} of installation {installation!r}; it goes when they are deleted "
        f"(finalizer {provider_finalizer(installation)})"
    )


async def settle_hold(
    world: World, np: NodeProvider
) -> tuple[NodeProvider, ProviderUsers | None] | None:
    """Hold the provider while it has users, let go of it once it has none; return it as it
    is after that, and its users (None: this let go of its last finalizer, and it is gone).

    KubeConflict when someone wrote it meanwhile: read it again and come back.
    """
    name = np.metadata.name
    finalizer = provider_finalizer(world.settings.installation_id)
    async with world.providers.hold_lock(name):
        # The newest known: a node may have added the hold while this reconcile waited.
        np = world.providers.specs.get(name, np)
        meta = np.metadata
        held = finalizer in meta.finalizers
        users = users_of(world, name)
        used = users is not None
        if used == held or (used and meta.deletion_timestamp is not None):
            return np, users
        if not used and not world.cluster_index.complete:
            return np, users  # not knowing every cluster (no startup list), never let go
        finalizers = (
            [*meta.finalizers, finalizer]
            if used
            else [f for f in meta.finalizers if f != finalizer]
        )
        try:
            patched = await _write_finalizers(world, np, finalizers)
        except KubeNotFound:
            return None
        except KubeError as err:
            if err.status == 422:  # its deletion began since it was read: read it again
                raise KubeConflict(err.status, err.message) from err
            raise
    if meta.deletion_timestamp is not None and not finalizers:
        return None  # the API server removed it with its last finalizer
    return patched, users


async def hold_for_create(world: World, provider: str) -> tuple[Reason, str] | None:
    """Before a machine is created through `provider`: make sure this installation holds it.

    None when it does (and the machine may be created), else why no machine may be made
    there: it is being deleted (`ProviderDeleting`), or gone. Cheap when the hold is there,
    which is every time but the first: the provider cache shows it.
    """
    finalizer = provider_finalizer(world.settings.installation_id)
    np = world.providers.specs.get(provider)
    if np is not None and finalizer in np.metadata.finalizers:
        return world.providers.refuses_new_machines(provider)
    async with world.providers.hold_lock(provider):
        for _ in range(HOLD_ATTEMPTS):
            np = world.providers.specs.get(provider)
            if np is None:
                return world.providers.problem(provider)
            refused = world.providers.refuses_new_machines(provider)
            if refused is not None or finalizer in np.metadata.finalizers:
                return refused
            try:
                await _write_finalizers(world, np, [*np.metadata.finalizers, finalizer])
                return None
            except KubeNotFound:
                world.providers.specs.pop(provider, None)
            except KubeError as err:
                # 409: written meanwhile; 422: its deletion began meanwhile. Read it again.
                if not isinstance(err, KubeConflict) and err.status != 422:
                    raise
                try:
                    _remember(world, await world.api.get(NODEPROVIDERS, None, provider))
                except KubeNotFound:
                    world.providers.specs.pop(provider, None)
        raise KubeConflict(409, f"NodeProvider {provider!r} kept changing while held")


async def _write_finalizers(world: World, np: NodeProvider, finalizers: list[str]) -> NodeProvider:
    """Set the provider's finalizers, on the condition that it is as read (resourceVersion)."""
    meta = np.metadata
    patched = await world.api.patch(
        NODEPROVIDERS,
        None,
        meta.name,
        {"metadata": {"finalizers": finalizers, "resourceVersion": meta.resource_version}},
    )
    world.bodies.wrote(("NodeProvider", "", meta.name), patched)
    written = NodeProvider.model_validate(patched)
    world.providers.specs[meta.name] = written
    return written


def _remember(world: World, body: dict[str, Any]) -> None:
    """A provider read afresh: the newest known, for the next look and the next write."""
    np = NodeProvider.model_validate(body)
    world.providers.specs[np.metadata.name] = np
    world.bodies.observe(("NodeProvider", "", np.metadata.name), body)
