"""Creates and deletes this operator made that its watch cache may not show yet.

Without these, a reconcile right after creating nodes could see too few in the cache and
create them again (the ReplicaSet controller's classic bug). An expectation lasts until the
cache shows it, however long that takes: a watch can lag for minutes (its server timeout is
270 s) and an expectation dropped on a timer would then let the controller create or delete
a second time. One still unconfirmed after `timeout` seconds is *overdue*: the controller
then reads the truth from the API (one list) and `confirm`s what it shows, dropping only
the expectations of writes that did not happen.

A node moved into or out of the warm pool (one patch of its label and power state) is
expected the same way: until the cache shows the move, the cluster sees the node where it
went, so a reconcile in between neither promotes another warm node for the same place nor
refills the pool twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from nodecluster.api.clusternode import PowerState
from nodecluster.clock import Clock
from nodecluster.planning.model import NodeView
from nodecluster.planning.usage import BucketKey

NsName = tuple[str, str]
"""(namespace, name) of a namespaced object."""
NodeKey = tuple[str, str, str]
"""("ClusterNode", namespace, name): a node's key in the body cache."""


class Expectations:
    """In-flight creates and deletes of ClusterNodes, per NodeCluster."""

    def __init__(self, clock: Clock, timeout: float) -> None:
        self._clock = clock
        self.timeout = timeout
        self._creates: dict[NsName, dict[str, tuple[float, NodeView]]] = {}
        self._deletes: dict[NsName, dict[str, float]] = {}
        self._moves: dict[NsName, dict[str, tuple[float, bool, PowerState]]] = {}

    def expect_create(self, key: NsName, view: NodeView) -> None:
        """A ClusterNode is being created for cluster `key`."""
        self._creates.setdefault(key, {})[view.name] = (self._clock.monotonic(), view)

    def expect_delete(self, key: NsName, name: str) -> None:
        """A ClusterNode of cluster `key` is being deleted."""
        self._deletes.setdefault(key, {})[name] = self._clock.monotonic()

    def expect_move(self, key: NsName, name: str, warm: bool, power_state: PowerState) -> None:
        """A node of cluster `key` is being moved into the warm pool (`warm`) or out of it."""
        self._moves.setdefault(key, {})[name] = (self._clock.monotonic(), warm, power_state)

    def move_failed(self, key: NsName, name: str) -> None:
        """The move's patch failed: the cache will show where the node really is."""
        self._moves.get(key, {}).pop(name, None)
        self._tidy(key)

    def refused(self, key: NsName, name: str) -> None:
        """The API server refused a create or delete of node `name` (4xx): it did not
        happen, so it is not expected. (A failure without an answer may have happened:
        that one stays expected until the cache or the API shows it, see `overdue`.)"""
        self._creates.get(key, {}).pop(name, None)
        self._deletes.get(key, {}).pop(name, None)
        self._tidy(key)

    def in_flight(self, key: NsName) -> int:
        """Creates and deletes of cluster `key` not yet confirmed."""
        return len(self._creates.get(key, {})) + len(self._deletes.get(key, {}))

    def creates_in_flight(self) -> Iterator[tuple[NsName, NodeView]]:
        """Every expected create of every cluster (quotas count them)."""
        for key, creates in self._creates.items():
            for _, view in creates.values():
                yield key, view

    def overdue(self, key: NsName) -> bool:
        """Whether an expectation of cluster `key` has waited longer than `timeout` for the
        cache: time to check it against the API."""
        oldest = min(
            [at for at, _ in self._creates.get(key, {}).values()]
            + list(self._deletes.get(key, {}).values())
            + [at for at, _, _ in self._moves.get(key, {}).values()],
            default=None,
        )
        return oldest is not None and self._clock.monotonic() - oldest > self.timeout

    def confirm(self, key: NsName, listed: Iterable[NodeView]) -> list[NodeView]:
        """Check cluster `key`'s expectations against nodes read from the API just now:
        writes the API shows are expected afresh (the cache may lag a while longer),
        writes it does not show did not happen and are dropped. Returns the listed nodes,
        with expected deletes marked deleting."""
        now = self._clock.monotonic()
        nodes = {n.name: n for n in listed}
        creates = self._creates.get(key, {})
        for name, (_, view) in list(creates.items()):
            if name in nodes:
                creates[name] = (now, view)
            else:
                del creates[name]  # the create never happened
        deletes = self._deletes.get(key, {})
        for name in list(deletes):
            node = nodes.get(name)
            if node is None or node.deleting:
                deletes[name] = now
            else:
                del deletes[name]  # the delete never happened
        for name in deletes:
            if name in nodes:
                nodes[name] = replace(nodes[name], deleting=True)
        # A move is answered before the next reconcile: one the API shows is expected
        # afresh (the cache may lag a while longer, and would show the node where it was);
        # one it does not show did not happen.
        moves = self._moves.get(key, {})
        for name, (_, warm, power) in list(moves.items()):
            node = nodes.get(name)
            if node is not None and node.warm == warm:
                moves[name] = (now, warm, power)
            else:
                del moves[name]
        self._tidy(key)
        return sorted(nodes.values(), key=lambda n: n.name)

    def merge(self, key: NsName, cached: Iterable[NodeView]) -> list[NodeView]:
        """The cached nodes, corrected by what is known to be in flight. An expectation
        ends only when the cache shows it (see `overdue` for one that takes too long)."""
        nodes = {n.name: n for n in cached}
        creates = self._creates.get(key, {})
        for name, (_, view) in list(creates.items()):
            if name in nodes:
                del creates[name]  # the cache caught up
            else:
                nodes[name] = view
        deletes = self._deletes.get(key, {})
        for name in list(deletes):
            node = nodes.get(name)
            if node is None or node.deleting:
                del deletes[name]  # the cache caught up
            else:
                nodes[name] = replace(node, deleting=True)
        moves = self._moves.get(key, {})
        for name, (_, warm, power) in list(moves.items()):
            node = nodes.get(name)
            if node is None or node.warm == warm:
                del moves[name]  # gone, or the cache caught up
            else:
                nodes[name] = replace(node, warm=warm, power_state=power)
        self._tidy(key)
        return sorted(nodes.values(), key=lambda n: n.name)

    def _tidy(self, key: NsName) -> None:
        if not self._creates.get(key):
            self._creates.pop(key, None)
        if not self._deletes.get(key):
            self._deletes.pop(key, None)
        if not self._moves.get(key):
            self._moves.pop(key, None)

    def forget(self, key: NsName) -> None:
        """Cluster `key` is gone: drop what was expected of it."""
        self._creates.pop(key, None)
        self._deletes.pop(key, None)
        self._moves.pop(key, None)


@dataclass
class MachineReservations:
    """Machines being created, per provider: (node key) -> machine type.

    Up to `Settings.concurrency` creates are in flight at once, so how many of each type a
    provider has reserved is kept as they come and go (`types`): a quota check reads the
    count instead of walking every reservation before each create."""

    by_provider: dict[str, dict[NodeKey, str]] = field(default_factory=dict)
    types: dict[str, Counter[str]] = field(default_factory=dict)
    """provider -> machine type -> reservations: the counts of `by_provider`."""
    zones: dict[NodeKey, str | None] = field(default_factory=dict)
    """node key -> the zone its machine is asked in (None: the provider chooses)."""
    priced: dict[str, Counter[BucketKey]] = field(default_factory=dict)
    """provider -> (zone, machine type) -> reservations: what the cost limit prices."""

    def add(self, provider: str, key: NodeKey, machine_type: str, zone: str | None = None) -> None:
        """Hold room for the machine of node `key`."""
        self.discard(provider, key)
        self.by_provider.setdefault(provider, {})[key] = machine_type
        self.types.setdefault(provider, Counter())[machine_type] += 1
        self.zones[key] = zone
        self.priced.setdefault(provider, Counter())[(zone, machine_type)] += 1

    def discard(self, provider: str, key: NodeKey) -> None:
        """The create failed, or the node cache shows the machine."""
        held = self.by_provider.get(provider)
        if held is None:
            return
        machine_type = held.pop(key, None)
        if machine_type is None:
            return
        types = self.types[provider]
        types[machine_type] -= 1
        if not types[machine_type]:
            del types[machine_type]
        priced = self.priced[provider]
        bucket = (self.zones.pop(key, None), machine_type)
        priced[bucket] -= 1
        if not priced[bucket]:
            del priced[bucket]
        if not held:
            del self.by_provider[provider]
            del self.types[provider]
            del self.priced[provider]
