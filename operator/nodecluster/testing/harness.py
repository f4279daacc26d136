"""The operator's real controllers in one process, on `FakeKube`: the `Harness`.

What runs is what runs in production, minus kopf: `build_world` builds the world, the
work queues run the reconcilers, and the fake's watch events go to the same functions
kopf calls (`controllers/events.py`), after the node index is updated as kopf updates
its index. As with kopf, the indexes (nodes by cluster, clusters by provider) are complete
before any handler sees the initial listing, so a cluster never plans from half of its
nodes, nor a provider counts half of its users; and as the startup handler does,
`start` loads every NodeProvider (`load_providers`) before delivering anything.

    async with Harness(fake) as harness:
        fake.add(NODEPROVIDERS, provider)
        await fake.create(NODECLUSTERS, "default", cluster)
        await harness.wait_for(lambda: state(fake) == "Deployed")

Use it with `looptime` (`@pytest.mark.looptime`): the loop's clock then jumps over every
wait, so a test that waits out a 10-minute startup timeout takes milliseconds, and
`LoopClock` (the default clock here) moves the timestamps the controllers write with it.
A driver author can run their driver under the real controllers by registering it in
the `registry` given to the harness.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType

from nodecluster.clock import Clock, LoopClock
from nodecluster.controllers.assembly import build_world, load_providers
from nodecluster.controllers.events import WATCHED, WATCHED_WITH_NODES
from nodecluster.controllers.world import (
    ClusterBookIndex,
    NodeBookIndex,
    Settings,
    World,
)
from nodecluster.planning.kubenode import NodeFacts, node_facts
from nodecluster.providers.registry import ProviderRegistry
from nodecluster.testing.fakekube import FakeKube, Watch, WatchEvent

POLL_SECONDS = 0.05
"""How often `wait_for` looks at its condition (loop time: free under looptime)."""


class LocalNodeIndex(NodeBookIndex):
    """ClusterNodes by (namespace, cluster), kept from the fake's watch events: the
    operator's own index (world.NodeBookIndex), fed by the harness instead of kopf."""

    def apply(self, event: WatchEvent) -> None:
        """Update the index with one ClusterNode event."""
        self.update(event.type, event.body)


class LocalClusterIndex(ClusterBookIndex):
    """NodeClusters by provider, kept from the fake's watch events: the operator's own
    index (world.ClusterBookIndex), fed by the harness instead of its startup list."""

    def __init__(self) -> None:
        super().__init__()
        self.complete = True
        """Filled from the fake's listing before any event is handled, as the operator's
        is seeded by a list at startup."""

    def apply(self, event: WatchEvent) -> None:
        """Update the index with one NodeCluster event: its entry replaces the one before."""
        self.update(event.type, event.body)


class LocalKubeNodeIndex:
    """Kubernetes Nodes by spec.providerID, kept from watch events as kopf keeps its index
    (`run --nodes`)."""

    def __init__(self) -> None:
        self._stores: dict[str, dict[str, NodeFacts]] = {}
        self._entries: dict[str, str] = {}
        """Node name -> the provider id it is indexed under."""

    def apply(self, event: WatchEvent) -> None:
        """Update the index with one Node event: its entry replaces the one before."""
        name = str(event.body.get("metadata", {}).get("name", ""))
        old = self._entries.pop(name, None)
        if old is not None:
            store = self._stores[old]
            store.pop(name, None)
            if not store:
                del self._stores[old]
        facts = node_facts(event.body)
        if event.type == "DELETED" or facts is None:
            return
        self._entries[name] = facts.provider_id
        self._stores.setdefault(facts.provider_id, {})[name] = facts

    def __contains__(self, provider_id: object) -> bool:
        return provider_id in self._stores

    def __getitem__(self, provider_id: str) -> Iterable[NodeFacts]:
        return list(self._stores[provider_id].values())


class Harness:
    """The controllers, running on a FakeKube until the harness is stopped.

    `registry` defaults to the installed drivers (the simulator among them); `clock` to a
    `LoopClock`; `settings` to the defaults (their `installation_id` and `namespaces` make
    it one installation of several: it sees only the namespaces it serves); `watch_lag`
    delays every watch event (the initial listing excepted), as a busy API server's watch
    lags behind it;
    `initial_order` delivers the initial listing kind by kind, in that order. Stopping and
    starting a new harness on the same fake (and the same simulator files) is an operator
    restart.
    """

    def __init__(
        self,
        api: FakeKube,
        registry: ProviderRegistry | None = None,
        clock: Clock | None = None,
        settings: Settings | None = None,
        watch_lag: float = 0.0,
        initial_order: Sequence[str] | None = None,
    ) -> None:
        self.api = api
        self.watch_lag = watch_lag
        """Seconds every watch event arrives after its change: a watch behind the store."""
        self.initial_order = tuple(initial_order) if initial_order is not None else None
        """The kinds (plurals) whose initial listings are delivered one after the other,
        the reconciles they woke run until the queues are idle before the next kind's, as
        kopf's watchers (one per kind) deliver theirs in no fixed order and may be seconds
        apart. None: every kind's before any reconcile runs."""
        self.registry = registry if registry is not None else ProviderRegistry()
        self.clock: Clock = clock if clock is not None else LoopClock()
        self.settings = settings if settings is not None else Settings()
        kinds = WATCHED_WITH_NODES if self.settings.nodes else WATCHED
        if initial_order is not None and sorted(initial_order) != sorted(kinds):
            raise ValueError(f"initial_order must name each of {sorted(kinds)} once")
        self.index = LocalNodeIndex()
        self.cluster_index = LocalClusterIndex()
        self.kube_nodes = LocalKubeNodeIndex()
        self.watched = kinds
        """The kinds watched, and their handlers: Nodes too with `settings.nodes`."""
        self._world: World | None = None
        self._watch: Watch | None = None
        self._pump: asyncio.Task[None] | None = None

    @property
    def world(self) -> World:
        """The controllers' world (while started)."""
        assert self._world is not None, "the harness is not started"
        return self._world

    async def start(self) -> None:
        """Build the world and deliver the initial listing, then every change."""
        # A LoopClock binds to the loop on its first reading; read it here, on the loop,
        # before a driver's worker thread (the simulator's file access) reads it.
        self.clock.monotonic()
        self._world = build_world(
            self.settings,
            self.api,
            self.registry,
            self.clock,
            self.index,
            self.cluster_index,
            self.kube_nodes,
        )
        await load_providers(self._world)
        self._watch = self.api.watch(*self.watched, initial=True, lag=self.watch_lag)
        initial = [e for e in self._watch.drain() if self._serves(e)]
        for event in initial:
            self._index(event)
        if self.initial_order is None:
            for event in initial:
                self.watched[event.kind](self.world, None, event.body)
        else:
            for kind in self.initial_order:
                for event in initial:
                    if event.kind == kind:
                        self.watched[kind](self.world, None, event.body)
                # The reconciles woken so far run before the next kind's listing comes.
                await self.wait_for(self._queues_idle, what="the queues being idle")
        self._pump = asyncio.get_running_loop().create_task(self._deliver(self._watch))

    async def stop(self, kill: bool = False) -> None:
        """Stop watching, finish what runs (with `kill`: cancel it wherever it waits, as
        a kill -9 would), close the drivers. The fake stays as it is."""
        if self._watch is not None:
            self._watch.close()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self._world is not None:
            if kill:
                await self._world.queues.abort()
            else:
                await self._world.queues.close()
        await self.registry.close()
        self._world = self._watch = self._pump = None

    async def restart(self, kill: bool = False) -> None:
        """Stop (or, with `kill`, kill) and start again: a new world over the same API and
        provider state, remembering nothing."""
        await self.stop(kill=kill)
        self.index = LocalNodeIndex()
        self.cluster_index = LocalClusterIndex()
        self.kube_nodes = LocalKubeNodeIndex()
        await self.start()

    def break_watch(self) -> None:
        """The watch breaks: nothing is delivered until `relist`, which loses every change
        made meanwhile, as a watch the API server answers `410 Gone` loses them."""
        assert self._watch is not None, "the harness is not started"
        self._watch.hold()

    async def relist(self) -> None:
        """The watch starts over from a list, as kopf's does after `410 Gone`: what
        happened since `break_watch` comes only as the objects now stored, each as an event
        of no type, and no DELETED event comes for what is gone. The world stays."""
        assert self._watch is not None and self._pump is not None, "the harness is not started"
        self._watch.close()
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        self._watch = self.api.watch(*self.watched, initial=True, lag=self.watch_lag)
        for event in self._watch.drain():
            if self._serves(event):
                self._index(event)
                self.watched[event.kind](self.world, None, event.body)
        self._pump = asyncio.get_running_loop().create_task(self._deliver(self._watch))

    async def __aenter__(self) -> Harness:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _index(self, event: WatchEvent) -> None:
        """Update the indexes with one event, before any handler sees it (as kopf does)."""
        if event.kind == "clusternodes":
            self.index.apply(event)
        elif event.kind == "nodeclusters":
            self.cluster_index.apply(event)
        elif event.kind == "nodes":
            self.kube_nodes.apply(event)

    def _serves(self, event: WatchEvent) -> bool:
        """Whether kopf would deliver the event: `settings.namespaces` as `run --namespace`
        (cluster-scoped kinds always)."""
        namespace = event.body.get("metadata", {}).get("namespace")
        return namespace is None or self.settings.serves(namespace)

    async def _deliver(self, watch: Watch) -> None:
        async for event in watch:
            if not self._serves(event):
                continue
            self._index(event)
            self.watched[event.kind](self.world, event.type, event.body)

    def _queues_idle(self) -> bool:
        return not any(queue.pending() for queue in self.world.queues.all())

    def busy(self) -> bool:
        """Whether any reconcile runs or waits to run (timers for later do not count)."""
        if self._world is None:
            return False
        return any(queue.pending() for queue in self._world.queues.all()) or bool(
            self._watch is not None and self._watch.pending()
        )

    async def wait_for(
        self,
        condition: Callable[[], bool | Awaitable[bool]],
        within: float = 600.0,
        what: str = "",
        poll: float = POLL_SECONDS,
    ) -> None:
        """Wait until `condition()` holds, at most `within` seconds of loop time.

        Under looptime the loop's clock jumps while everything waits, so `within` bounds
        how much operator time may pass, not how long the test takes; `poll` is how often
        the condition is looked at (coarser for waits of hours of operator time).
        """
        try:
            async with asyncio.timeout(within):
                while True:
                    result = condition()
                    if inspect.isawaitable(result):
                        result = await result
                    if result:
                        return
                    await asyncio.sleep(poll)
        except TimeoutError:
            label = what or getattr(condition, "__name__", "condition")
            raise AssertionError(f"{label} did not hold within {within:g}s") from None

    async def idle(self, within: float = 600.0) -> None:
        """Wait until nothing runs or waits to run: the operator has done all it will do
        until a timer (a resync, a retry) or a change wakes it."""
        await self.wait_for(lambda: not self.busy(), within, "the operator being idle")
