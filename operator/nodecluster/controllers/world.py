"""The world the controllers act in, built once at startup and handed down via kopf's memo.

Nothing here is global: the API client, provider registry, clock, settings, caches and
work queues are built in `build_world` and passed to every handler, so tests and
benchmarks can build their own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from nodecluster.api.clusternode import ClusterNode
from nodecluster.api.nodecluster import NodeProfile
from nodecluster.api.nodeprovider import NodeProvider
from nodecluster.controllers.kube import KubeClient, KubeNotFound
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
    """Reconciles in flight at once per kind; provider calls are awaited, not threaded."""
    orphan_grace_seconds: float = 30.0
    """A machine without a ClusterNode is deleted only once older than this."""
    default_poll_seconds: float = 60.0
    """Provider health poll interval when no cluster asks for another."""


def profile_hash(profile: NodeProfile) -> str:
    """Stable short hash of a profile: nodes with another hash are due for a rollout."""
    raw = json.dumps(profile.wire(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def node_view(node: ClusterNode) -> NodeView:
    """What the planner needs of a ClusterNode."""
    meta, spec, status = node.metadata, node.spec, node.status
    ready_cond = next((c for c in status.conditions if c.type == "Ready"), None)
    error_reason = None
    if (
        ready_cond is not None
        and ready_cond.status == "False"
        and ready_cond.reason in NODE_ERROR_REASONS
    ):
        error_reason = ready_cond.reason
    return NodeView(
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


class ProviderUnavailable(Exception):
    """The NodeProvider a cluster or node names cannot be used (missing or invalid)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class World:
    """Everything the controllers share."""

    client: KubeClient
    registry: ProviderRegistry
    settings: Settings
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    providers: dict[str, NodeProvider] = field(default_factory=dict)
    provider_errors: dict[str, tuple[str, str]] = field(default_factory=dict)
    credentials: dict[str, tuple[str, Mapping[str, str]]] = field(default_factory=dict)
    bodies: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    clusters_by_provider: dict[str, set[NsName]] = field(default_factory=dict)
    cluster_locks: dict[NsName, asyncio.Lock] = field(default_factory=dict)
    """Held by a cluster's reconcile and by operations that change its nodes, so an
    operation's deletes and target change are seen together, never half."""
    pending_operations: set[NsName] = field(default_factory=set)
    """Clusters with unfinished operations: their events also wake the operation queue."""
    operation_queue: WorkQueue[NsName] | None = None
    poll_intervals: dict[NsName, float] = field(default_factory=dict)
    """Each cluster's health.pollIntervalSeconds: its provider polls at the smallest."""
    orphans_suspected: set[NsName] = field(default_factory=set)
    """Clusters whose provider poll found machines without a ClusterNode."""
    node_index: Any = None
    """kopf index: (namespace, cluster) -> Store[NodeView]. Set by the first handler call."""
    usage_index: Any = None
    """kopf index: provider name -> Store[machine type]."""
    expectations: Expectations = field(default_factory=lambda: Expectations(60.0))
    cluster_queue: WorkQueue[NsName] | None = None
    node_queue: WorkQueue[NsName] | None = None
    provider_queue: WorkQueue[str] | None = None

    def lock(self, key: NsName) -> asyncio.Lock:
        """The lock that serialises changes to one cluster's nodes."""
        return self.cluster_locks.setdefault(key, asyncio.Lock())

    def now(self) -> datetime:
        """The current time, second precision (as the API server stores it)."""
        return self.clock().replace(microsecond=0)

    def take_body(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The newest body seen by the watch and not yet reconciled, if any."""
        return self.bodies.pop((kind, namespace, name), None)

    def nodes_of(self, key: NsName) -> list[NodeView]:
        """A cluster's nodes: the watch cache corrected by in-flight changes."""
        cached: Iterable[NodeView] = ()
        if self.node_index is not None and key in self.node_index:
            cached = list(self.node_index[key])
        return self.expectations.merge(key, cached)

    def provider_usage(self, provider: str) -> tuple[int, int]:
        """(machines, cores) held through a provider by all clusters."""
        if self.usage_index is None or provider not in self.usage_index:
            return 0, 0
        types = list(self.usage_index[provider])
        cores = self.cores_by_type(provider)
        return len(types), sum(cores.get(t, 1) for t in types)

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
        )
