"""Quotas that hold: a NodeProvider's `quotas` counted from every machine, existing or on
its way, and taken before a create is issued.

Two gates use one count:

- a NodeCluster plans only as many new ClusterNodes as the quota has room for
  (`cluster_headroom`), counting every ClusterNode of the provider in the node cache *and*
  the creates of every cluster still in flight (its expectations). The plan's creates are
  expected before any of them is sent, with no await in between, so two clusters
  reconciling at once cannot both count the same room;
- a ClusterNode takes one machine of room before it asks its provider for the machine
  (`reserve_machine`), counting nodes that hold a machine and reservations still in
  flight. A ClusterNode made by hand, outside any cluster's plan, is held to the quota too:
  over it, the node reports QuotaExceeded and waits.

A reservation ends when the node cache shows the node with its machine, or when the create
fails. Without a quota nothing is counted (counting every node of a large fleet costs).
"""

from __future__ import annotations

from nodecluster.api.nodecluster import NodeCluster
from nodecluster.controllers.bodies import ObjectKey
from nodecluster.controllers.world import World


def _limits(world: World, provider: str) -> tuple[int | None, int | None] | None:
    np = world.providers.specs.get(provider)
    if np is None:
        return None
    quotas = np.spec.quotas
    if quotas.max_nodes is None and quotas.max_cores is None:
        return None
    return quotas.max_nodes, quotas.max_cores


def provider_usage(world: World, provider: str) -> tuple[int, int]:
    """(nodes, cores) held through a provider: cached ClusterNodes of every cluster plus
    creates in flight that the cache does not show yet."""
    cores_of = world.providers.cores_by_type(provider)
    nodes = cores = 0
    cached: set[tuple[str, str]] = set()
    for (namespace, _), store in world.node_index.items():
        for node in store:
            if node.provider == provider:
                nodes += 1
                cores += cores_of.get(node.machine_type, 1)
                cached.add((namespace, node.name))
    for (namespace, _), view in world.expectations.creates_in_flight():
        if getattr(view, "provider", None) == provider and (namespace, view.name) not in cached:
            nodes += 1
            cores += cores_of.get(getattr(view, "machine_type", ""), 1)
    return nodes, cores


def cluster_headroom(world: World, nc: NodeCluster) -> int | None:
    """How many more nodes the NodeProvider's quotas allow this cluster (None: no quota)."""
    provider = nc.spec.provider_ref.name
    limits = _limits(world, provider)
    if limits is None:
        return None
    max_nodes, max_cores = limits
    nodes, cores = provider_usage(world, provider)
    room: list[int] = []
    if max_nodes is not None:
        room.append(max_nodes - nodes)
    if max_cores is not None:
        per_node = world.providers.cores_by_type(provider).get(nc.spec.profile.machine_type, 1)
        room.append((max_cores - cores) // max(per_node, 1))
    return max(0, min(room))


def reserve_machine(world: World, provider: str, key: ObjectKey, machine_type: str) -> str | None:
    """Take room for one machine of node `key`; None if taken, else why not."""
    limits = _limits(world, provider)
    if limits is None:
        return None
    max_nodes, max_cores = limits
    cores_of = world.providers.cores_by_type(provider)
    reservations = world.reservations.by_provider.get(provider, {})
    machines = cores = 0
    holding: set[ObjectKey] = set()
    for (namespace, _), store in world.node_index.items():
        for node in store:
            if node.provider == provider and node.has_machine:
                node_key = ("ClusterNode", namespace, node.name)
                holding.add(node_key)
                machines += 1
                cores += cores_of.get(node.machine_type, 1)
    for held in [k for k in reservations if k in holding]:
        world.reservations.discard(provider, held)  # the cache shows its machine now
    for held, held_type in world.reservations.by_provider.get(provider, {}).items():
        if held != key:
            machines += 1
            cores += cores_of.get(held_type, 1)
    wanted = cores_of.get(machine_type, 1)
    if max_nodes is not None and machines + 1 > max_nodes:
        return (
            f"the NodeProvider {provider!r} allows {max_nodes} machines "
            f"(quotas.maxNodes) and {machines} exist or are being created"
        )
    if max_cores is not None and cores + wanted > max_cores:
        return (
            f"the NodeProvider {provider!r} allows {max_cores} cores (quotas.maxCores), "
            f"{cores} are held and this machine needs {wanted}"
        )
    world.reservations.add(provider, key, machine_type)
    return None
