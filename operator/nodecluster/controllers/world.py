"""The world the controllers act in, built once at startup and handed down via kopf's memo.

Nothing here is global: the API client, provider registry, clock, settings, caches and
work queues are built in `build_world` and passed to every handler, so tests and
benchmarks can build their own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from nodecluster.api.clusternode import ClusterNode
from nodecluster.api.nodecluster import NodeProfile
from nodecluster.api.nodeprovider import NodeProvider
from nodecluster.controllers.kubeapi import Kind, KubeApi, KubeNotFound
from nodecluster.controllers.workqueue import WorkQueue
from nodecluster.planning.model import (
    DELETE_NODE_ANNOTATION,
    POWER_HOLD_ANNOTATION,
    PROTECT_ANNOTATION,
    NodeView,
)
from nodecluster.providers.base import InvalidConfig, ProviderConfig, ProviderDriver, ProviderError
from nodecluster.providers.registry import ProviderRegistry

CLUSTER_LABEL = "nodecluster.io/cluster"
CLUSTER_FINALIZER = "nodecluster.io/nodes"
"""Held by a NodeCluster until every one of its machines is gone."""
NODE_FINALIZER = "nodecluster.io/machine"
"""Held by a ClusterNode until its machine is gone at the provider."""

NODE_ERROR_REASONS = frozenset(
    {
        "ProviderUnavailable",
        "CapacityExceeded",
        "QuotaExceeded",
        "InvalidProviderConfig",
        "ProviderNotFound",
        "MachineMissing",
        "ProviderError",
    }
)

NsName = tuple[str, str]


@dataclass
class Settings:
    """Operator tunables. Defaults suit a cluster of thousands of nodes."""

    child_debounce_seconds: float = 0.5
    """Child events are coalesced this long before the parent reconciles: one status
    write for a burst of nodes becoming ready instead of one per node."""
    idle_resync_seconds: float = 3600.0
    """How often a cluster with no nodes is looked at without any event (orphan sweep)."""
    expectation_timeout_seconds: float = 60.0
    """How long a create/delete the operator made may stay invisible in its cache."""
    concurrency: int = 2000
    """ClusterNode reconciles in flight at once: each may wait on its provider, and
    provider calls are awaited, not threaded."""
    status_progress_seconds: float = 2.0
    """A NodeCluster's status is rewritten for mere progress (counts moving, same state)
    at most this often; transitions are written at once."""
    cluster_concurrency: int = 200
    """NodeCluster reconciles in flight at once. They wait only on the API, whose
    connection pool admits `api_connections` requests anyway: more in flight would only
    hold more memory while queueing for a connection (10,000 new clusters at once)."""
    api_connections: int = 100
    """Connections of the API client's pool: the most writes in flight at once."""
    orphan_grace_seconds: float = 30.0
    """A machine without a ClusterNode is deleted only once older than this."""
    default_poll_seconds: float = 60.0
    """Provider health poll interval when no cluster asks for another."""


def profile_hash(profile: NodeProfile) -> str:
    """Stable short hash of a profile: nodes with another hash are due for a rollout."""
    raw = json.dumps(profile.wire(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class IndexedNode(NodeView):
    """A node as the operator's node cache keeps it: the planner's view, plus what its
    provider's quota usage is counted from. (One kopf index serves both: every index
    costs a handler invocation per ClusterNode event.)"""

    provider: str = ""
    machine_type: str = ""


def node_view(node: ClusterNode) -> IndexedNode:
    """What the planner (and the quota count) needs of a ClusterNode."""
    meta, spec, status = node.metadata, node.spec, node.status
    ready_cond = next((c for c in status.conditions if c.type == "Ready"), None)
    error_reason = None
    if (
        ready_cond is not None
        and ready_cond.status == "False"
        and ready_cond.reason in NODE_ERROR_REASONS
    ):
        error_reason = ready_cond.reason
    return IndexedNode(
        provider=sys.intern(spec.provider_ref.name),
        machine_type=sys.intern(spec.profile.machine_type),
        name=meta.name,
        created_at=meta.creation_timestamp or datetime.now(UTC),
        zone=status.zone or spec.zone,
        state=status.state,
        ready=bool(status.ready),
        power_state=spec.power_state,
        profile_hash=spec.profile_hash,
        deleting=meta.deletion_timestamp is not None,
        marked_for_deletion=DELETE_NODE_ANNOTATION in meta.annotations,
        protected=meta.annotations.get(PROTECT_ANNOTATION, "false").lower() in ("true", "1", "yes"),
        error_reason=error_reason,
        error_message=status.message if error_reason else None,
        unhealthy_since=status.unhealthy_since,
        has_machine=status.provider_id is not None,
        power_hold=meta.annotations.get(POWER_HOLD_ANNOTATION),
    )


@dataclass
class Expectations:
    """Creates and deletes this operator made that its watch cache may not show yet.

    Without these, a reconcile right after creating nodes could see too few in the
    cache and create them again (the ReplicaSet controller's classic bug).
    """

    timeout: float
    creates: dict[NsName, dict[str, tuple[float, NodeView]]] = field(default_factory=dict)
    deletes: dict[NsName, dict[str, float]] = field(default_factory=dict)

    def expect_create(self, key: NsName, view: NodeView) -> None:
        self.creates.setdefault(key, {})[view.name] = (time.monotonic(), view)

    def expect_delete(self, key: NsName, name: str) -> None:
        self.deletes.setdefault(key, {})[name] = time.monotonic()

    def merge(self, key: NsName, cached: Iterable[NodeView]) -> list[NodeView]:
        """The cached nodes, corrected by what is known to be in flight."""
        now = time.monotonic()
        nodes = {n.name: n for n in cached}
        creates = self.creates.get(key, {})
        for name, (at, view) in list(creates.items()):
            if name in nodes or now - at > self.timeout:
                del creates[name]
            else:
                nodes[name] = view
        deletes = self.deletes.get(key, {})
        for name, at in list(deletes.items()):
            node = nodes.get(name)
            if node is None or node.deleting or now - at > self.timeout:
                del deletes[name]  # the cache caught up (or we stop waiting for it)
            else:
                nodes[name] = replace(node, deleting=True)
        if not creates:
            self.creates.pop(key, None)
        if not deletes:
            self.deletes.pop(key, None)
        return sorted(nodes.values(), key=lambda n: n.name)

    def forget(self, key: NsName) -> None:
        self.creates.pop(key, None)
        self.deletes.pop(key, None)


ObjectKey = tuple[str, str, str]
"""(kind, namespace, name)."""


def resource_version_order(a: str, b: str) -> int | None:
    """-1, 0 or 1 as resourceVersion `a` is older than, equal to or newer than `b`.

    Kubernetes defines resourceVersions of one resource as comparable decimal integers
    since 1.35 (KEP-5504, what client-go's CompareResourceVersion implements). From a
    server whose versions are not such integers, None: the order is unknown.
    """
    if a == b:
        return 0
    if not (a.isdigit() and b.isdigit()) or a[0] == "0" or b[0] == "0":
        return None
    return -1 if (len(a), a) < (len(b), b) else 1


class BodyCache:
    """The newest known body of each object a controller is working on.

    The watch delivers bodies; the API answers our own writes with bodies newer than any
    the watch has delivered yet. Keeping the newest of both gives the controllers
    read-your-own-writes without a GET per reconcile: a reconcile woken while its
    previous status write is still on its way through the watch no longer works from
    the stale body (and writes the same status, and posts the same Event, twice).

    The watch event of one of our own writes (its "echo") tells the controller nothing
    it does not know, so it wakes no reconcile. Any other event does, whatever its order:
    an older body never replaces a newer one, but the change it carries is in the newer
    one too.

    Entries exist only while an object is being worked on: the controllers drop them
    once it has converged, so an idle fleet keeps no bodies in memory.
    """

    def __init__(self) -> None:
        self._bodies: dict[ObjectKey, dict[str, Any]] = {}
        self._own: dict[ObjectKey, set[str]] = {}

    def __len__(self) -> int:
        return len(self._bodies)

    def get(self, key: ObjectKey) -> dict[str, Any] | None:
        """The newest known body, if the object is being worked on."""
        return self._bodies.get(key)

    def observe(self, key: ObjectKey, body: dict[str, Any], keep: bool = True) -> bool:
        """A body from the watch. Return False for the echo of one of our own writes.

        It is kept when it is newer than the one known, and, for an object not being
        worked on, only if `keep` and it is not an echo.
        """
        version = str(body.get("metadata", {}).get("resourceVersion", ""))
        own = self._own.get(key)
        echo = False
        if own is not None:
            echo = version in own
            # Our writes up to this version have been delivered: their echoes are past.
            for mine in list(own):
                if resource_version_order(mine, version) in (-1, 0):
                    own.discard(mine)
            if not own:
                del self._own[key]
            elif len(own) > 16:
                own.clear()  # versions without an order never supersede each other
        current = self._bodies.get(key)
        if current is None:
            if keep and not echo:
                self._bodies[key] = body
        elif self._newer(body, current):
            self._bodies[key] = body
        return not echo

    def wrote(self, key: ObjectKey, body: dict[str, Any]) -> None:
        """The API's answer to our own write: remember it, and expect its echo."""
        version = str(body.get("metadata", {}).get("resourceVersion", ""))
        if not version:
            return
        self._own.setdefault(key, set()).add(version)
        current = self._bodies.get(key)
        if current is None or self._newer(body, current):
            self._bodies[key] = body

    def drop(self, key: ObjectKey) -> None:
        """The object has converged: keep no body (echoes still to come are still known)."""
        self._bodies.pop(key, None)

    def forget(self, key: ObjectKey) -> None:
        """The object is gone."""
        self._bodies.pop(key, None)
        self._own.pop(key, None)

    @staticmethod
    def _newer(body: dict[str, Any], than: dict[str, Any]) -> bool:
        order = resource_version_order(
            str(body.get("metadata", {}).get("resourceVersion", "")),
            str(than.get("metadata", {}).get("resourceVersion", "")),
        )
        # Unknown order (a server without comparable versions): the latest to arrive wins.
        return order != -1


class ProviderUnavailable(Exception):
    """The NodeProvider a cluster or node names cannot be used (missing or invalid)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class World:
    """Everything the controllers share."""

    client: KubeApi
    registry: ProviderRegistry
    settings: Settings
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    providers: dict[str, NodeProvider] = field(default_factory=dict)
    provider_errors: dict[str, tuple[str, str]] = field(default_factory=dict)
    credentials: dict[str, tuple[str, Mapping[str, str]]] = field(default_factory=dict)
    bodies: BodyCache = field(default_factory=BodyCache)
    """Newest known bodies of the objects being worked on (watch and own writes)."""
    clusters_by_provider: dict[str, set[NsName]] = field(default_factory=dict)
    cluster_locks: dict[NsName, asyncio.Lock] = field(default_factory=dict)
    """Held by a cluster's reconcile and by operations that change its nodes, so an
    operation's deletes and target change are seen together, never half."""
    pending_operations: set[NsName] = field(default_factory=set)
    """Clusters with unfinished operations: their events also wake the operation queue."""
    operation_queue: WorkQueue[NsName] | None = None
    progress_written: dict[NsName, float] = field(default_factory=dict)
    """When each cluster being worked on last had its status written (monotonic)."""
    poll_intervals: dict[NsName, float] = field(default_factory=dict)
    """Each cluster's health.pollIntervalSeconds: its provider polls at the smallest."""
    orphans_suspected: set[NsName] = field(default_factory=set)
    """Clusters whose provider poll found machines without a ClusterNode."""
    node_index: Any = None
    """kopf index: (namespace, cluster) -> Store[IndexedNode]. Set by the first handler call."""
    expectations: Expectations = field(default_factory=lambda: Expectations(60.0))
    cluster_queue: WorkQueue[NsName] | None = None
    node_queue: WorkQueue[NsName] | None = None
    provider_queue: WorkQueue[str] | None = None
    poll_queue: WorkQueue[str] | None = None
    """Provider health polls soon after a machine starts settling: one list call per
    provider replaces a get per settling machine."""

    def lock(self, key: NsName) -> asyncio.Lock:
        """The lock that serialises changes to one cluster's nodes."""
        lock = self.cluster_locks.get(key)
        if lock is None:
            lock = self.cluster_locks[key] = asyncio.Lock()
        return lock

    def now(self) -> datetime:
        """The current time, second precision (as the API server stores it)."""
        return self.clock().replace(microsecond=0)

    async def body(self, kind: Kind, key: ObjectKey) -> dict[str, Any]:
        """The newest known body of an object being worked on, else read from the API
        (and kept until the controller drops it). KubeNotFound if it does not exist."""
        body = self.bodies.get(key)
        if body is None:
            _, namespace, name = key
            body = await self.client.get(kind, namespace or None, name)
            self.bodies.observe(key, body)
        return body

    def nodes_of(self, key: NsName) -> list[NodeView]:
        """A cluster's nodes: the watch cache corrected by in-flight changes."""
        cached: Iterable[NodeView] = ()
        if self.node_index is not None and key in self.node_index:
            cached = list(self.node_index[key])
        return self.expectations.merge(key, cached)

    def provider_usage(self, provider: str) -> tuple[int, int]:
        """(machines, cores) held through a provider by all clusters."""
        if self.node_index is None:
            return 0, 0
        cores = self.cores_by_type(provider)
        machines = used = 0
        for store in self.node_index.values():
            for node in store:
                if node.provider == provider:
                    machines += 1
                    used += cores.get(node.machine_type, 1)
        return machines, used

    def cores_by_type(self, provider: str) -> dict[str, int]:
        np = self.providers.get(provider)
        if np is None:
            return {}
        return {b.machine_type: b.cores for b in np.spec.buckets}

    async def driver(self, provider: str) -> ProviderDriver:
        """The driver of a NodeProvider, or ProviderUnavailable saying why not."""
        np = self.providers.get(provider)
        if np is None:
            raise ProviderUnavailable(
                "ProviderNotFound", f"NodeProvider {provider!r} does not exist"
            )
        config = await self._provider_config(np)
        try:
            drv = await self.registry.driver_for(np.spec.driver, config)
        except InvalidConfig as err:
            self.provider_errors[provider] = (err.reason, str(err))
            raise ProviderUnavailable(err.reason, f"NodeProvider {provider!r}: {err}") from err
        except ProviderError as err:
            raise ProviderUnavailable(err.reason, f"NodeProvider {provider!r}: {err}") from err
        self.provider_errors.pop(provider, None)
        return drv

    async def _provider_config(self, np: NodeProvider) -> ProviderConfig:
        creds: Mapping[str, str] = {}
        ref = np.spec.credentials_secret_ref
        if ref is not None:
            cached = self.credentials.get(np.metadata.name)
            if cached is not None and cached[0] == np.metadata.resource_version:
                creds = cached[1]
            else:
                try:
                    creds = await self.client.read_secret(ref.namespace, ref.name)
                except KubeNotFound as err:
                    raise ProviderUnavailable(
                        "InvalidProviderConfig",
                        f"NodeProvider {np.metadata.name!r}: credentials Secret "
                        f"{ref.namespace}/{ref.name} does not exist",
                    ) from err
                self.credentials[np.metadata.name] = (np.metadata.resource_version, creds)
        return ProviderConfig(
            name=np.metadata.name,
            config=np.spec.config,
            credentials=creds,
            max_nodes=np.spec.quotas.max_nodes,
            max_cores=np.spec.quotas.max_cores,
            cores_by_type={b.machine_type: b.cores for b in np.spec.buckets},
            call_timeout_seconds=float(np.spec.call_timeout_seconds),
        )
