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

The cost limit (`quotas.maxHourlyCost`) is held the same way: what every machine counted
costs per hour, priced by the bucket of its zone and machine type (planning/usage.py:
one whose zone is not known yet at the dearest zone of its type), against the limit.
Stopped machines count, as they do for maxNodes: they may be started without a create.

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
from nodecluster.api.nodeprovider import Quotas
from nodecluster.api.reasons import Reason
from nodecluster.controllers.bodies import ObjectKey
from nodecluster.controllers.world import World
from nodecluster.planning.usage import BucketKey, Price, price_list, price_of
from nodecluster.providers.base import CostLimitExceeded, ProviderError, QuotaExceeded


def _limits(world: World, provider: str) -> Quotas | None:
    np = world.providers.specs.get(provider)
    if np is None:
        return None
    quotas = np.spec.quotas
    if quotas.max_nodes is None and quotas.max_cores is None and quotas.max_hourly_cost is None:
        return None
    return quotas


def _prices(world: World, provider: str) -> dict[BucketKey, Price]:
    np = world.providers.specs.get(provider)
    return price_list(np.spec.buckets if np is not None else ())


def _cost(counts: Mapping[BucketKey, int], prices: Mapping[BucketKey, Price]) -> float:
    """The cost per hour of machines counted by (zone, machine type)."""
    return sum(
        count * (price_of(prices, zone, machine_type).hourly_cost or 0.0)
        for (zone, machine_type), count in counts.items()
    )


def _money(amount: float) -> str:
    return f"{amount:.4f}".rstrip("0").rstrip(".")


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


def provider_hourly_cost(world: World, provider: str, prices: Mapping[BucketKey, Price]) -> float:
    """The cost per hour of every ClusterNode of a provider (cached, or being created and
    not cached yet), as the cluster gate counts nodes."""
    cost = _cost(world.usage.placed(provider), prices)
    for (namespace, _), view in world.expectations.creates_in_flight():
        if getattr(view, "provider", None) == provider and not world.usage.shows(
            namespace, view.name, provider
        ):
            price = price_of(prices, view.zone, getattr(view, "machine_type", ""))
            cost += price.hourly_cost or 0.0
    return cost


Headroom = tuple[int, tuple[Reason, str]]
"""How many more nodes a cluster may have, and (reason, message) if it may have none."""


def cluster_headroom(world: World, nc: NodeCluster) -> Headroom | None:
    """How many more nodes the NodeProvider's quotas allow this cluster, and which limit
    binds, with the figures (None: no quota)."""
    provider = nc.spec.provider_ref.name
    quotas = _limits(world, provider)
    if quotas is None:
        return None
    nodes, cores = provider_usage(world, provider)
    room: list[tuple[int, tuple[Reason, str]]] = []
    if quotas.max_nodes is not None:
        room.append(
            (
                quotas.max_nodes - nodes,
                (
                    Reason.QUOTA_EXCEEDED,
                    "the NodeProvider's quota allows {room} more nodes, {needed} are needed "
                    f"(quotas.maxNodes {quotas.max_nodes}, {nodes} held or being created)",
                ),
            )
        )
    machine_type = nc.spec.profile.machine_type
    if quotas.max_cores is not None:
        per_node = world.providers.cores_by_type(provider).get(machine_type, 1)
        room.append(
            (
                (quotas.max_cores - cores) // max(per_node, 1),
                (
                    Reason.QUOTA_EXCEEDED,
                    "the NodeProvider's quota allows {room} more nodes, {needed} are needed "
                    f"(quotas.maxCores {quotas.max_cores}, {cores} held or being created, "
                    f"{per_node} per node)",
                ),
            )
        )
    if quotas.max_hourly_cost is not None:
        prices = _prices(world, provider)
        each = price_of(prices, None, machine_type).hourly_cost or 0.0
        if each > 0:
            held = provider_hourly_cost(world, provider, prices)
            room.append(
                (
                    int((quotas.max_hourly_cost - held + 1e-9) // each),
                    (
                        Reason.COST_LIMIT_EXCEEDED,
                        "the NodeProvider's cost limit allows {room} more nodes, {needed} are "
                        f"needed (quotas.maxHourlyCost {_money(quotas.max_hourly_cost)}/h, "
                        f"{_money(held)}/h held or being created, {_money(each)}/h per "
                        f"{machine_type} node)",
                    ),
                )
            )
    if not room:
        return None
    count, why = min(room, key=lambda r: r[0])
    return max(0, count), why


def reserve_machine(
    world: World, provider: str, key: ObjectKey, machine_type: str, zone: str | None = None
) -> ProviderError | None:
    """Take room for one machine of node `key`; None if taken, else why not (QuotaExceeded
    or CostLimitExceeded, with the figures)."""
    quotas = _limits(world, provider)
    if quotas is None:
        return None
    max_nodes, max_cores = quotas.max_nodes, quotas.max_cores
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
        return QuotaExceeded(
            f"the NodeProvider {provider!r} allows {max_nodes} machines "
            f"(quotas.maxNodes) and {machines} exist or are being created"
        )
    if max_cores is not None and cores + wanted > max_cores:
        return QuotaExceeded(
            f"the NodeProvider {provider!r} allows {max_cores} cores (quotas.maxCores), "
            f"{cores} are held and this machine needs {wanted}"
        )
    if quotas.max_hourly_cost is not None:
        prices = _prices(world, provider)
        cost_held = _cost(world.usage.priced(provider), prices) + _cost(
            world.reservations.priced.get(provider, {}), prices
        )
        if own is not None:
            own_zone = world.reservations.zones.get(key)
            cost_held -= price_of(prices, own_zone, own).hourly_cost or 0.0
        this = price_of(prices, zone, machine_type).hourly_cost or 0.0
        if cost_held + this > quotas.max_hourly_cost + 1e-9:
            return CostLimitExceeded(
                f"the NodeProvider {provider!r} allows {_money(quotas.max_hourly_cost)}/h "
                f"(quotas.maxHourlyCost), {_money(cost_held)}/h is held and this machine costs "
                f"{_money(this)}/h"
            )
    _, namespace, name = key
    if not world.usage.shows_machine(namespace, name, provider):
        # (One the cache shows already would be ended at once: it is counted from there.)
        world.reservations.add(provider, key, machine_type, zone)
    return None
