"""Creates and deletes this operator made that its watch cache may not show yet.

Without these, a reconcile right after creating nodes could see too few in the cache and
create them again (the ReplicaSet controller's classic bug). Each expectation lasts until
the cache shows it or `timeout` seconds of the world's clock have passed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from nodecluster.clock import Clock
from nodecluster.planning.model import NodeView

NsName = tuple[str, str]
"""(namespace, name) of a namespaced object."""


class Expectations:
    """In-flight creates and deletes of ClusterNodes, per NodeCluster."""

    def __init__(self, clock: Clock, timeout: float) -> None:
        self._clock = clock
        self.timeout = timeout
        self._creates: dict[NsName, dict[str, tuple[float, NodeView]]] = {}
        self._deletes: dict[NsName, dict[str, float]] = {}

    def expect_create(self, key: NsName, view: NodeView) -> None:
        """A ClusterNode is being created for cluster `key`."""
        self._creates.setdefault(key, {})[view.name] = (self._clock.monotonic(), view)

    def expect_delete(self, key: NsName, name: str) -> None:
        """A ClusterNode of cluster `key` is being deleted."""
        self._deletes.setdefault(key, {})[name] = self._clock.monotonic()

    def in_flight(self, key: NsName) -> int:
        """Creates and deletes of cluster `key` not yet confirmed (for tests and debugging)."""
        return len(self._creates.get(key, {})) + len(self._deletes.get(key, {}))

    def merge(self, key: NsName, cached: Iterable[NodeView]) -> list[NodeView]:
        """The cached nodes, corrected by what is known to be in flight."""
        now = self._clock.monotonic()
        nodes = {n.name: n for n in cached}
        creates = self._creates.get(key, {})
        for name, (at, view) in list(creates.items()):
            if name in nodes or now - at > self.timeout:
                del creates[name]
            else:
                nodes[name] = view
        deletes = self._deletes.get(key, {})
        for name, at in list(deletes.items()):
            node = nodes.get(name)
            if node is None or node.deleting or now - at > self.timeout:
                del deletes[name]  # the cache caught up (or we stop waiting for it)
            else:
                nodes[name] = replace(node, deleting=True)
        if not creates:
            self._creates.pop(key, None)
        if not deletes:
            self._deletes.pop(key, None)
        return sorted(nodes.values(), key=lambda n: n.name)

    def forget(self, key: NsName) -> None:
        """Cluster `key` is gone: drop what was expected of it."""
        self._creates.pop(key, None)
        self._deletes.pop(key, None)
