"""kopf wiring: watches wake keys in work queues (events.py); the queues run the reconcilers.

Only `on.event` handlers and indexes are used. They make kopf write nothing of its own
(no progress annotations, no diff-base, no finalizer), so every API write the operator
makes is one the controllers chose: that is how a node costs at most three writes.
kopf still provides what it is good at: resilient watches, per-object ordering,
indexes that are complete before any handler runs, peering and the liveness probe.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
from collections.abc import Iterable
from typing import Any

import kopf

from nodecluster import GROUP, VERSION
from nodecluster.clock import SystemClock
from nodecluster.controllers.assembly import build_world, load_providers
from nodecluster.controllers.events import (
    on_cluster_event,
    on_kube_node_event,
    on_node_event,
    on_operation_event,
    on_provider_event,
)
from nodecluster.controllers.expectations import NsName
from nodecluster.controllers.kube import KubeClient
from nodecluster.controllers.kubeapi import (
    CLUSTERNODES,
    NODECLUSTERS,
    NODEPROVIDERS,
    KubeApi,
    KubeError,
    KubeNotFound,
)
from nodecluster.controllers.leader import (
    Fence,
    FencedKubeApi,
    LeaseElector,
    LeaseSettings,
)
from nodecluster.controllers.metrics import Metrics, serve
from nodecluster.controllers.receiver import Receivers
from nodecluster.controllers.world import (
    ClusterBookIndex,
    IndexedNode,
    NodeBookIndex,
    NodeIndex,
    Settings,
    World,
    index_node,
)
from nodecluster.planning.kubenode import NodeFacts, node_facts
from nodecluster.providers.deadline import Guard
from nodecluster.providers.identity import default_installation_id
from nodecluster.providers.registry import ProviderRegistry

log = logging.getLogger(__name__)


class NoEssence(kopf.AnnotationsDiffBaseStorage):
    """A diff-base storage for an operator without change-detecting handlers.

    kopf builds every object's "essence" on every watch event, to find what changed for
    on.create/on.update/on.field handlers: two deep copies of the body per event, about a
    tenth of the operator's CPU while a fleet converges. With only on.event handlers and
    indexes, nothing reads it, so the essence is empty. (Adding a change-detecting handler
    means going back to kopf.AnnotationsDiffBaseStorage.)
    """

    def build(
        self,
        *,
        body: kopf.Body,
        extra_fields: Any = None,
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()


def configure(settings: kopf.OperatorSettings, peering: str | None) -> None:
    """The project's kopf settings."""
    settings.persistence.finalizer = f"{GROUP}/kopf"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = NoEssence(
        prefix=GROUP, key="last-handled-configuration"
    )
    objects = logging.getLogger("kopf.objects")
    if objects.getEffectiveLevel() == logging.INFO:
        # "Handler 'x_event' succeeded." for every watch event: a line per event says
        # nothing (failures are still logged), and formatting it costs ~5% CPU under load.
        objects.setLevel(logging.WARNING)
    # Watches can go silent behind load balancers: reconnect well before that happens.
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 30
    # The initial listing in pages: at a restart with 10,000 clusters, one page is a
    # response of tens of megabytes held (and parsed) at once.
    settings.watching.chunk_size = 1000
    settings.posting.enabled = False  # Events are posted by the controllers, deliberately.
    settings.networking.request_timeout = 60
    if peering:
        # Two replicas must never reconcile at once: without the peering objects, refuse to run.
        settings.peering.mandatory = True


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    """Build the world once, with every NodeProvider known, and hand it to every handler
    through memo. With leader election, the world is built fenced and held: it fills its
    caches from the watches like a leader's, but acts only once the Lease is held."""
    configure(settings, memo.get("peering"))
    clock = SystemClock()
    api: KubeApi = await KubeClient.connect(max_connections=Settings.api_connections, clock=clock)
    lease: LeaseSettings | None = memo.get("lease")
    elector = None
    try:
        if lease is not None:
            elector = LeaseElector(api, clock, lease, standby_fence(clock))
            api = FencedKubeApi(api, elector.fence)
        guard = elector.fence.check if elector is not None else None
        world = await build_started_world(api, clock, memo, kwargs, guard)
    except BaseException as err:
        await api.close()  # kopf retries a failed startup handler: it connects anew
        if isinstance(err, KubeError) and (err.status == 429 or err.status >= 500):
            # An API server still starting ("storage is (re)initializing" for CRDs just
            # installed): soon again, not after kopf's default minute.
            raise kopf.TemporaryError(
                f"the API server is not ready: {err}", delay=STARTUP_RETRY_SECONDS
            ) from err
        raise
    memo["world"] = world
    receivers = await start_receivers(world, memo.get("receiver_address"), elector, clock)
    memo["receivers"] = receivers
    if isinstance(world.node_index, NodeBookIndex):
        memo["confirmer"] = asyncio.create_task(
            confirm_listed(world, world.node_index), name="confirm listed ClusterNodes"
        )
    if elector is not None:
        world.queues.hold()  # before kopf starts the watches: nothing runs before the Lease
        world.metrics.leading = False
        memo["elector"] = elector
        memo["keeper"] = asyncio.create_task(lead(world, elector, receivers), name="leader lease")
    tune_garbage_collector()


STARTUP_RETRY_SECONDS = 1.0
"""How soon a startup refused by an API server that is not ready yet is tried again."""


def standby_fence(clock: SystemClock) -> Fence:
    """A fence closed until the Lease is held, that stops the process the moment a write
    or a provider call finds it closed (a standby's held queues make none; a leader
    makes none after its renew deadline)."""
    fence = Fence(clock, on_lost=exit_now)
    fence.close()
    return fence


async def start_receivers(
    world: World, address: str | None, elector: LeaseElector | None, clock: SystemClock
) -> Receivers | None:
    """The receivers' endpoint (`run --receiver-address`), or None. Every replica serves
    it; only the leader acts on a request (a standby answers 503: controllers/receiver.py)
    and only the leader runs the receivers' reconciles (their queue is held until then)."""
    if not address:
        return None
    if elector is None:
        receivers = Receivers(world)
    else:
        fence = elector.fence
        receivers = Receivers(
            world, lambda: elector.leading and clock.monotonic() < fence.valid_until
        )
        receivers.queue.hold()
    world.metrics.watch_queues((*world.metrics.queues, receivers.queue))
    await receivers.serve(address)
    return receivers


async def lead(world: World, elector: LeaseElector, receivers: Receivers | None = None) -> None:
    """Stand by until this replica holds the Lease, then act (run what the held queues
    gathered: every object the watches listed, as after a restart) and keep the Lease;
    the moment it is lost, stop the process.

    A warm standby: kopf's watches and indexes run on it as on the leader, so taking over
    costs no initial listing (14 s at 10,000 NodeClusters), only the first look at each
    object, which changes nothing that was settled (a restart writes nothing)."""
    s = elector.settings
    await elector.acquire()
    world.metrics.leading = True
    world.queues.release()
    if receivers is not None:
        receivers.queue.release()
    await elector.keep()
    exit_now(f"the leader Lease {s.namespace}/{s.name} was lost")


def exit_now(why: str) -> None:
    """Stop the process at once: a replica that lost the Lease must not take another step
    (a graceful shutdown would still finish reconciles, i.e. write). Its Deployment starts
    it again, as a standby."""
    log.critical("%s: exiting now so that the new leader acts alone", why)
    logging.shutdown()
    os._exit(LEASE_LOST_EXIT_CODE)


LEASE_LOST_EXIT_CODE = 3
"""The exit status of a replica that lost the Lease (told apart from a crash's 1)."""


async def build_started_world(
    api: KubeApi,
    clock: SystemClock,
    memo: kopf.Memo,
    kwargs: dict[str, Any],
    guard: Guard | None = None,
) -> World:
    """The world, with the installation id decided, every NodeCluster indexed by provider
    and every NodeProvider known, before kopf starts the watches."""
    installation = memo.get("installation_id") or await installation_from_cluster(
        api, memo.get("installation_name") or "default"
    )
    log.info("Installation id: %s", installation)
    tunables = Settings(
        installation_id=installation,
        namespaces=tuple(memo.get("namespaces") or ()),
        nodes=bool(memo.get("nodes")),
    )
    # Both indexes are filled by a list before kopf starts the watches (NodeBookIndex,
    # ClusterBookIndex), so the world is complete from the start. Namespace patterns
    # cannot be listed: kopf's index of ClusterNodes then (watch_node_index), which kopf
    # hands startup handlers already, filled before any resource handler runs.
    nodes: NodeIndex
    if patterned(tunables.namespaces):
        nodes = kwargs["clusternodes_by_cluster"]
    else:
        nodes = NodeBookIndex()
        await seed_nodes(api, nodes, tunables.namespaces)
    clusters = ClusterBookIndex()
    await seed_clusters(api, clusters, tunables.namespaces)
    kube_nodes = kwargs.get("nodes_by_provider_id")  # only with --nodes (watch_kube_nodes)
    world = build_world(
        tunables,
        api,
        ProviderRegistry(guard=guard),
        clock,
        nodes,
        clusters,
        kube_nodes,
        metrics=memo.get("metrics"),
    )
    await load_providers(world)  # before kopf starts the watches: see load_providers
    return world


GLOB = re.compile(r"[*?\[!]")
"""What makes a `--namespace` a pattern (kopf's globs and negations), not a name."""


def patterned(namespaces: Iterable[str]) -> bool:
    """Whether any `--namespace` is a pattern (which no list call can serve)."""
    return any(GLOB.search(ns) for ns in namespaces)


async def seed_nodes(api: KubeApi, index: NodeBookIndex, namespaces: tuple[str, ...]) -> None:
    """Fill the node index before the watches start (NodeBookIndex), a page at a time: of
    every namespace, or of each namespace served by name."""
    count = 0
    for namespace in namespaces or (None,):
        async for page in api.pages(CLUSTERNODES, namespace):
            for body in page:
                index.update(None, body, listed=True)
            count += len(page)
    log.info("ClusterNodes listed at startup: %d", count)


CONFIRM_QUIET_SECONDS = 10.0
"""How long no listed node may be confirmed before kopf's listing is taken to be over."""
CONFIRM_GIVE_UP_SECONDS = 600.0
"""How long to wait for a first confirmation before reading every listed node anyway."""


async def confirm_listed(world: World, index: NodeBookIndex) -> None:
    """Drop from the node index the nodes of the startup list that are gone (see
    NodeBookIndex): once some listed node has been confirmed by an event and then none
    for CONFIRM_QUIET_SECONDS, kopf's listing (which brings an event for every node there
    is) is over, and each one still unconfirmed is read; one that is not found goes, and
    its cluster looks again. A restart where nothing was deleted meanwhile reads nothing.
    Before the first confirmation kopf may still be listing (a slow API server): it waits
    up to CONFIRM_GIVE_UP_SECONDS for one rather than read the whole fleet one by one."""
    listed, left = index.listed, len(index.unconfirmed)
    waited = 0.0
    while left:
        await asyncio.sleep(CONFIRM_QUIET_SECONDS)
        waited += CONFIRM_QUIET_SECONDS
        now = len(index.unconfirmed)
        if now == left and (now < listed or waited >= CONFIRM_GIVE_UP_SECONDS):
            break
        left = now
    for node in list(index.unconfirmed):
        try:
            await world.api.get(CLUSTERNODES, *node)
        except KubeNotFound:
            cluster = index.cluster_of(node)
            if node not in index.unconfirmed:
                continue  # an event came meanwhile: it knows better than this read
            gone = {"metadata": {"namespace": node[0], "name": node[1]}}
            index.update("DELETED", gone)
            world.usage.observe_body("DELETED", gone)
            if cluster is not None:
                world.queues.cluster.add(cluster)
            log.info("ClusterNode %s/%s, listed at startup, is gone", *node)
            continue
        except KubeError as err:
            log.warning("ClusterNode %s/%s: cannot confirm it: %s", *node, err)
        index.unconfirmed.discard(node)


async def seed_clusters(api: KubeApi, index: ClusterBookIndex, namespaces: tuple[str, ...]) -> None:
    """Fill the cluster index with one list before the watches start (ClusterBookIndex):
    of every namespace, or of each namespace served by name. Namespace patterns cannot be
    listed: the index then fills from events only and is never complete, so no provider
    is let go (inuse.settle_hold) rather than one let go while clusters still use it."""
    if patterned(namespaces):
        log.info("Namespace patterns: NodeProviders are held, never let go, by this operator")
        return
    for namespace in namespaces or (None,):
        for body in await api.list(NODECLUSTERS, namespace):
            index.update(None, body)
    index.complete = True


async def installation_from_cluster(api: KubeApi, name: str) -> str:
    """The default installation id: `name` and the identity of this Kubernetes cluster
    (identity.default_installation_id), or `name` alone for an installation upgraded from
    a version that used it. Unreadable, the operator does not start: guessing another id
    would make every node refuse its own machines."""
    try:
        uid = await api.cluster_uid()
    except KubeError as err:
        if err.status in (403, 404):
            raise kopf.PermanentError(
                "cannot read the kube-system Namespace, whose uid names this Kubernetes "
                "cluster in the default installation id; grant `get` on it, or give the id "
                "(--installation-id, the chart's operator.installationId): "
                f"{err.status} {err.message}"
            ) from err
        raise
    installation = default_installation_id(name, uid)
    seen: set[str] = set()
    for body in await api.list(NODEPROVIDERS, None):
        seen.update(((body.get("status") or {}).get("installations") or {}).keys())
    if name in seen and installation not in seen:
        # Upgraded from a version whose default id was the name alone (the chart passed
        # `--installation-id <release namespace>.<release name>`, `run` defaulted to
        # `default`): its machines carry that id, so it stays, or every node would refuse
        # its own machine. Its entry in the providers' status keeps this choice stable.
        log.warning(
            "Keeping installation id %r, the id this installation had before ids named the "
            "Kubernetes cluster (it is in NodeProvider status, and its machines carry it); "
            "give --installation-id %s (the chart's operator.installationId) to say so",
            name,
            name,
        )
        return name
    return installation


GC_THRESHOLDS = (20_000, 20, 20)
"""Allocations between young collections, and young collections between older ones."""


def tune_garbage_collector() -> None:
    """Make the cyclic garbage collector cheap for a process holding many objects.

    With the defaults (700, 10, 10) a converging fleet of 1,000 nodes ran a thousand
    collections, a quarter of the operator's CPU: every full collection walks every
    object, the imported modules' included. Those are frozen (never collected, they live
    as long as the process anyway), and collections run less often. Reference counting
    still frees almost everything at once; only garbage in reference cycles waits longer.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Finish in-flight reconciles, then close clients and drivers."""
    world: World | None = memo.get("world")
    elector: LeaseElector | None = memo.get("elector")
    keeper: asyncio.Task[None] | None = memo.get("keeper")
    confirmer: asyncio.Task[None] | None = memo.get("confirmer")
    receivers: Receivers | None = memo.get("receivers")
    if confirmer is not None:
        confirmer.cancel()
    if receivers is not None:
        await receivers.close()  # no request starts a write after the queues are closed
    if world is not None:
        await world.queues.close()
        await world.providers.registry.close()
    if keeper is not None:
        keeper.cancel()
    if elector is not None:
        await elector.release()  # after the last write: the standby may start at once
    if world is not None:
        await world.api.close()


# `async def` although it never awaits: kopf runs a plain `def` handler in a worker
# thread, two thread round trips for every ClusterNode event.
async def clusternodes_by_cluster(body: kopf.Body, **_: Any) -> dict[NsName, IndexedNode]:
    """(namespace, cluster) -> the node's planning view, as kopf's index: only for
    `--namespace` patterns, which no startup list can serve (see NodeBookIndex)."""
    return index_node(body)


def watch_node_index(registry: kopf.OperatorRegistry) -> None:
    """Register kopf's index of ClusterNodes (namespace patterns only: build_started_world)."""
    registered = {h.id for h in registry._indexing.get_all_handlers()}
    if "clusternodes_by_cluster" not in registered:
        kopf.index(GROUP, VERSION, "clusternodes", id="clusternodes_by_cluster", registry=registry)(
            clusternodes_by_cluster
        )


@kopf.on.event(GROUP, VERSION, "nodeproviders")
async def nodeprovider_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    """See events.on_provider_event."""
    on_provider_event(memo["world"], type, body)


@kopf.on.event(GROUP, VERSION, "nodeclusters")
async def nodecluster_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    """See events.on_cluster_event; the cluster index first, as kopf does its indexes."""
    world: World = memo["world"]
    index = getattr(world, "cluster_index", None)
    if isinstance(index, ClusterBookIndex):
        index.update(type, body)
    on_cluster_event(world, type, body)


@kopf.on.event(GROUP, VERSION, "clusternodes")
async def clusternode_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    """See events.on_node_event; the node index first, as kopf does its indexes."""
    world: World = memo["world"]
    index = getattr(world, "node_index", None)
    if isinstance(index, NodeBookIndex):
        index.update(type, body)
    on_node_event(world, type, body)


@kopf.on.event(GROUP, VERSION, "nodeclusteroperations")
async def operation_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    """See events.on_operation_event."""
    on_operation_event(memo["world"], type, body)


async def nodes_by_provider_id(body: kopf.Body, **_: Any) -> dict[str, NodeFacts] | None:
    """spec.providerID -> the Node's facts: how a ClusterNode finds its Node in O(1)
    (`run --nodes`). Nodes without a provider id are not indexed."""
    facts = node_facts(body)
    return None if facts is None else {facts.provider_id: facts}


async def kube_node_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    """See events.on_kube_node_event."""
    on_kube_node_event(memo["world"], type, body)


def watch_kube_nodes(registry: kopf.OperatorRegistry) -> None:
    """Watch Kubernetes Nodes (`run --nodes`): their index and their events.

    Registered here, at run time, rather than by decorators at import: without `--nodes`
    the operator must not watch Nodes at all (the chart then grants no permission on
    them), and kopf watches every resource that any handler names."""
    registered = {h.id for h in registry._indexing.get_all_handlers()}
    if "nodes_by_provider_id" in registered:
        return
    kopf.index("v1", "nodes", id="nodes_by_provider_id", registry=registry)(nodes_by_provider_id)
    kopf.on.event("v1", "nodes", id="kube_node_event", registry=registry)(kube_node_event)


async def receiver_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    """See receiver.Receivers.observe."""
    receivers: Receivers | None = memo.get("receivers")
    if receivers is not None:
        receivers.observe(type, body)


def watch_receivers(registry: kopf.OperatorRegistry) -> None:
    """Watch NodeClusterReceivers (`run --receiver-address`): registered at run time, as
    watch_kube_nodes, so that without the endpoint the operator neither watches them nor
    needs their CRD or any permission on them."""
    registered = {h.id for h in registry._watching.get_all_handlers()}
    if "receiver_event" not in registered:
        kopf.on.event(
            GROUP, VERSION, "nodeclusterreceivers", id="receiver_event", registry=registry
        )(receiver_event)


def run_operator(
    namespaces: list[str],
    liveness: str | None,
    peering: str | None,
    verbose: bool = False,
    debug: bool = False,
    installation_id: str | None = None,
    installation_name: str = "default",
    nodes: bool = False,
    lease: LeaseSettings | None = None,
    metrics_address: str | None = None,
    receiver_address: str | None = None,
) -> None:
    """Run the operator until it is stopped: all namespaces when `namespaces` is empty.
    With `lease`, only while holding that Lease (leader.py): a standby keeps its caches
    warm and its queues held (handlers.lead).
    `installation_id` tags every machine it makes (see providers/identity.py); without it,
    the id is `installation_name` and 8 hex digits naming the Kubernetes cluster. `nodes`
    turns Node integration on (Settings.nodes). `metrics_address` (HOST:PORT) serves the
    Prometheus endpoint, from before the first connection to the API server: a scrape
    then tells a process that cannot start from one that is not there.
    `receiver_address` (HOST:PORT) serves the receivers' endpoint (controllers/receiver.py)
    once the world is built, and watches NodeClusterReceivers; None: neither."""
    kopf.configure(verbose=verbose, debug=debug)
    metrics = Metrics()
    server = serve(metrics, metrics_address) if metrics_address else None
    if nodes:
        watch_kube_nodes(kopf.get_default_registry())
    if receiver_address:
        watch_receivers(kopf.get_default_registry())
    if patterned(namespaces):
        watch_node_index(kopf.get_default_registry())
    # The HTTP client logs whole response bodies at DEBUG, Secrets included: never let it.
    logging.getLogger("kubernetes_asyncio").setLevel(logging.WARNING)
    try:
        _run_kopf(
            namespaces,
            liveness,
            peering,
            installation_id,
            installation_name,
            nodes,
            lease,
            metrics,
            receiver_address,
        )
    finally:
        if server is not None:
            server.close()


def _run_kopf(
    namespaces: list[str],
    liveness: str | None,
    peering: str | None,
    installation_id: str | None,
    installation_name: str,
    nodes: bool,
    lease: LeaseSettings | None,
    metrics: Metrics,
    receiver_address: str | None = None,
) -> None:
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
        standalone=not peering,
        peering_name=peering,
        memo=kopf.Memo(
            peering=peering,
            installation_id=installation_id,
            installation_name=installation_name,
            namespaces=list(namespaces),
            nodes=nodes,
            lease=lease,
            metrics=metrics,
            receiver_address=receiver_address,
        ),
    )
