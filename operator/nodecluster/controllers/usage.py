"""What the cached ClusterNodes hold of each NodeProvider, kept as the node cache changes:
the counts quotas are checked against (quota.py), at the cost of a few dictionary
lookups instead of a walk over the whole cache.

Why a ledger: the quota checks run on the hot path, `reserve_machine` before every
machine create and `cluster_headroom` on every cluster reconcile. Counting by walking
every cached node cost 1.5 ms per call with 10,000 nodes cached: 10 s of CPU on counting
alone to bring 10,000 nodes up under a quota (O(nodes²)). From the ledger a call takes
~3 µs whatever the fleet's size (0.04 s for those 10,000). Keeping it costs 0.4 µs per
watch event that changes nothing it counts, 3 µs per one that does (the index spends
~10 µs on each, validating the body).

How it stays equal to the node cache (kopf's index, or the harness's):

- every change of the cache reaches `observe_body`: `events.on_node_event` runs after the
  index took the event, for every ClusterNode added, modified or deleted;
- it keeps what it counted of each node (`Held`: provider, machine type, whether it holds
  a machine, zone), so a change takes the node's old entry off before adding its new one (a
  node's provider or machine type may change too), a deleted node leaves, and seeing a
  node again changes nothing: whoever reports a node's present view may do so as often
  as they like;
- it is built from the whole index on first use. kopf fills its indexes from the initial
  listings before any handler runs, but handlers of other kinds (a cluster's reconcile)
  may run before every listed node's own event was handled; events seen before the build
  are skipped, since the index the build reads holds them already;
- it is never behind the expectations: kopf may run other tasks between updating its
  index and calling `on_node_event`, and a cluster reconciling meanwhile drops the
  expected creates its cache shows (`Expectations.merge`). `World.nodes_of` reports the
  cluster's cached nodes here first (when it has writes in flight: otherwise merge drops
  nothing), so such a node is counted either as expected or as cached, never as neither;
- a reservation ends as soon as the ledger sees its node holding a machine (quota.py),
  so counting them is a length, not a walk either.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

from nodecluster.controllers.expectations import MachineReservations, NsName
from nodecluster.planning.usage import BucketKey

Held = tuple[str, str, bool, str | None]
"""What one cached ClusterNode holds: (provider, machine type, whether it holds a machine,
zone): the cost limit prices machines by zone and machine type."""

_NONE: Mapping[str, int] = Counter()
_NO_BUCKETS: Mapping[BucketKey, int] = Counter()
K = TypeVar("K", str, BucketKey)


class CountedNode(Protocol):
    """What the ledger reads of a cached node (world.IndexedNode)."""

    @property
    def name(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def machine_type(self) -> str: ...
    @property
    def has_machine(self) -> bool: ...
    @property
    def zone(self) -> str | None: ...


class CountedIndex(Protocol):
    """The node cache, as the ledger reads it once (world.NodeIndex)."""

    def items(self) -> Iterable[tuple[NsName, Iterable[CountedNode]]]: ...


def held_by_body(body: Mapping[str, Any]) -> Held:
    """What a ClusterNode body holds, read as `world.node_view` reads it for the index
    (the three fields straight from the body: validating the whole body again on every
    watch event would cost as much as the index itself)."""
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    return (
        sys.intern(str((spec.get("providerRef") or {}).get("name", ""))),
        sys.intern(str((spec.get("profile") or {}).get("machineType", ""))),
        status.get("providerId") is not None,
        status.get("zone") or spec.get("zone") or None,
    )


class UsageLedger:
    """Per NodeProvider, the cached ClusterNodes by machine type, and those of them holding
    a machine by machine type (see the module's docstring)."""

    def __init__(self, index: CountedIndex, reservations: MachineReservations) -> None:
        self._index = index
        self._reservations = reservations
        self._held: dict[NsName, Held] = {}
        """(namespace, name) -> what the node was counted as."""
        self._nodes: dict[str, Counter[str]] = {}
        """provider -> machine type -> cached nodes."""
        self._machines: dict[str, Counter[str]] = {}
        """provider -> machine type -> cached nodes holding a machine."""
        self._priced: dict[str, Counter[BucketKey]] = {}
        """provider -> (zone, machine type) -> cached nodes holding a machine."""
        self._placed: dict[str, Counter[BucketKey]] = {}
        """provider -> (zone, machine type) -> cached nodes."""
        self._built = False

    def observe_body(self, type: str | None, body: Mapping[str, Any]) -> None:
        """A ClusterNode watch event (`type` as events.py has it), after the index took it."""
        if not self._built:
            return
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name", "")))
        self._count(key, None if type == "DELETED" else held_by_body(body))

    def observe_cached(self, namespace: str, nodes: Iterable[CountedNode]) -> None:
        """Nodes of one namespace as the index shows them now."""
        if not self._built:
            return
        counted = self._held
        for node in nodes:
            key = (namespace, node.name)
            held = (node.provider, node.machine_type, node.has_machine, node.zone)
            if counted.get(key) != held:  # (inlined: once per node of every cluster reconcile)
                self._count(key, held)

    def nodes(self, provider: str) -> Mapping[str, int]:
        """The cached ClusterNodes of `provider`, by machine type."""
        self._build()
        return self._nodes.get(provider, _NONE)

    def machines(self, provider: str) -> Mapping[str, int]:
        """The cached ClusterNodes of `provider` holding a machine, by machine type."""
        self._build()
        return self._machines.get(provider, _NONE)

    def placed(self, provider: str) -> Mapping[BucketKey, int]:
        """The cached ClusterNodes of `provider`, by (zone, machine type)."""
        self._build()
        return self._placed.get(provider, _NO_BUCKETS)

    def priced(self, provider: str) -> Mapping[BucketKey, int]:
        """The cached ClusterNodes of `provider` holding a machine, by (zone, machine type)."""
        self._build()
        return self._priced.get(provider, _NO_BUCKETS)

    def shows(self, namespace: str, name: str, provider: str) -> bool:
        """Whether the cache shows node (namespace, name) as a node of `provider`."""
        self._build()
        held = self._held.get((namespace, name))
        return held is not None and held[0] == provider

    def shows_machine(self, namespace: str, name: str, provider: str) -> bool:
        """Whether the cache shows node (namespace, name) holding a machine of `provider`."""
        self._build()
        held = self._held.get((namespace, name))
        return held is not None and held[0] == provider and held[2]

    def _build(self) -> None:
        if self._built:
            return
        self._built = True
        for (namespace, _), store in self._index.items():
            self.observe_cached(namespace, store)

    def _count(self, key: NsName, held: Held | None) -> None:
        old = self._held.get(key)
        if old == held:
            return
        if old is not None:
            self._tally(old, -1)
        if held is None:
            del self._held[key]
            return
        self._held[key] = held
        self._tally(held, 1)
        provider, _, has_machine, _ = held
        if has_machine:
            # The cache shows its machine: room for it is counted from the cache now.
            self._reservations.discard(provider, ("ClusterNode", *key))

    def _tally(self, held: Held, by: int) -> None:
        provider, machine_type, has_machine, zone = held
        _add(self._nodes, provider, machine_type, by)
        _add(self._placed, provider, (zone, machine_type), by)
        if has_machine:
            _add(self._machines, provider, machine_type, by)
            _add(self._priced, provider, (zone, machine_type), by)


def _add(counts: dict[str, Counter[K]], provider: str, machine_type: K, by: int) -> None:
    """Add `by` to a count, dropping counts (and providers) that reach zero."""
    of_provider = counts.setdefault(provider, Counter())
    of_provider[machine_type] += by
    if not of_provider[machine_type]:
        del of_provider[machine_type]
        if not of_provider:
            del counts[provider]
