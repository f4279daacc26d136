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
fails. Without a quota nothing is counted.

What the cache shows is counted as the cache changes, by the usage ledger (usage.py):
walking the whole cache on every call made converging a fleet under a quota O(nodes²),
1.5 ms per create with 10,000 nodes cached. A call now costs a few lookups per machine
type of the provider, plus one per create still in flight (expected, not yet cached).
"""

from __future__ import annotations

from collections.abc import Mapping

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


def _cores(by_type: Mapping[str, int], cores_of: Mapping[str, int]) -> int:
    """The cores of machines counted by type (a type no bucket names counts one core)."""
    return sum(count * cores_of.get(machine_type, 1) for machine_type, count in by_type.items())


def provider_usage(world: World, provider: str) -> tuple[int, int]:
    """(nodes, cores) held through a provider: cached ClusterNodes of every cluster plus
    creates in flight that the cache does not show yet."""
    cores_of = world.providers.cores_by_type(provider)
    cached = world.usage.nodes(provider)
    nodes, cores = sum(cached.values()), _cores(cached, cores_of)
    for (namespace, _), view in world.expectations.creates_in_flight():
        if getattr(view, "provider", None) == provider and not world.usage.shows(
            namespace, view.name, provider
        ):
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
    held = world.usage.machines(provider)
    # No reservation is left of a node the cache shows holding its machine (the ledger
    # ends it when it sees the machine), so nothing is counted twice.
    reserved: Mapping[str, int] = world.reservations.types.get(provider, {})
    machines = sum(held.values()) + sum(reserved.values())
    cores = _cores(held, cores_of) + _cores(reserved, cores_of)
    own = world.reservations.by_provider.get(provider, {}).get(key)
    if own is not None:  # an earlier attempt's: this one takes its place
        machines -= 1
        cores -= cores_of.get(own, 1)
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
    _, namespace, name = key
    if not world.usage.shows_machine(namespace, name, provider):
        # (One the cache shows already would be ended at once: it is counted from there.)
        world.reservations.add(provider, key, machine_type)
    return None
