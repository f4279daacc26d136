"""The world the controllers act in: built once by `assembly.build_world`, handed down.

Nothing here is global. `World` is a set of named parts, each with one owner and one job:

- `api` (the `KubeApi` port), `clock`, `settings`;
- `bodies`: the newest known body of each object being worked on (bodies.py);
- `expectations`: ClusterNode creates and deletes not yet in the watch cache;
- `book`: per-cluster bookkeeping (locks, pacing, poll intervals, suspicions), with one
  `forget(key)` that cleans up after a deleted cluster;
- `providers`: the NodeProviders seen, their errors and credentials, and the way to a
  driver (through the provider registry);
- `queues`: one work queue per controller;
- `node_index`: the ClusterNodes by cluster, as kopf's index (or the test harness) keeps it;
- `usage`: what those nodes hold of each provider, counted as the index changes;
- `cluster_index`: the NodeClusters by provider, the same way;
- `metrics`: the Prometheus families and the per-cluster summaries they are read from.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from nodecluster.api.clusternode import ClusterNode
from nodecluster.api.nodecluster import NodeProfile
from nodecluster.api.nodeprovider import NodeProvider
from nodecluster.api.reasons import Reason, reason_of
from nodecluster.api.warmpool import POOL_LABEL, WARM
from nodecluster.clock import Clock
from nodecluster.controllers.bodies import BodyCache, ObjectKey
from nodecluster.controllers.expectations import Expectations, MachineReservations, NsName
from nodecluster.controllers.kubeapi import Kind, KubeApi, KubeError
from nodecluster.controllers.metrics import Metrics
from nodecluster.controllers.usage import UsageLedger
from nodecluster.controllers.workqueue import WorkQueue
from nodecluster.planning.kubenode import NODE_READY, NOT_REGISTERED, NodeFacts
from nodecluster.planning.model import (
    DELETE_NODE_ANNOTATION,
    POWER_HOLD_ANNOTATION,
    PROTECT_ANNOTATION,
    NodeHealth,
    NodeView,
)
from nodecluster.planning.usage import UsageSummary
from nodecluster.providers.base import (
    InvalidConfig,
    ProviderConfig,
    ProviderDriver,
    ProviderError,
    Retryable,
    Unauthorized,
)
from nodecluster.providers.registry import ProviderRegistry

log = logging.getLogger(__name__)

CLUSTER_FINALIZER = "nodecluster.io/nodes"
"""Held by a NodeCluster until every one of its machines is gone."""
NODE_FINALIZER = "nodecluster.io/machine"
"""Held by a ClusterNode until its machine is gone at the provider."""

PROVIDER_REFRESH_SECONDS = 5.0
"""How long after its users or their machines changed a NodeProvider is looked at again
(once for a burst): its usage figures and users in status, and its finalizer."""

UNKNOWN_CREATION = datetime.max.replace(tzinfo=UTC)
"""The creation time of a node body without one (the API always sets it; a hand-made test
body may not): the node counts as brand new, so no startup timeout runs out on it."""


@dataclass
class Settings:
    """Operator tunables. Defaults suit a cluster of thousands of nodes."""

    installation_id: str = "default"
    """Which operator installation this is (`run --installation-id`): every machine is
    tagged with it, and only machines tagged with it are ever collected as orphans, so
    installations sharing a cloud account never delete each other's (identity.py). Must
    stay the same for the life of the machines: nodes refuse machines of another id."""
    namespaces: tuple[str, ...] = ()
    """The namespaces served (`run --namespace`, globs and `!negations` as kopf takes
    them); empty: all. Machines of other namespaces are never collected as orphans."""
    nodes: bool = False
    """Node integration (`run --nodes`): Kubernetes Nodes are watched, linked to their
    machines by provider id, kept labelled and tainted, drained before their machine is
    deleted and deleted after it. Off, Nodes are never read (no permissions needed) and
    nothing costs a call or a write more than without the feature."""

    def serves(self, namespace: str) -> bool:
        """Whether this installation serves `namespace`."""
        return serves(self.namespaces, namespace)

    child_debounce_seconds: float = 0.5
    """Child events are coalesced this long before the parent reconciles: one status
    write for a burst of nodes becoming ready instead of one per node."""
    idle_resync_seconds: float = 3600.0
    """How often a cluster with no nodes is looked at without any event (orphan sweep)."""
    expectation_timeout_seconds: float = 60.0
    """How long a create/delete the operator made may stay invisible in its cache before
    the cluster's next reconcile checks it against the API (one list of the namespace's
    ClusterNodes). Never a reason to forget it: the watch may lag for minutes."""
    concurrency: int = 2000
    """ClusterNode reconciles in flight at once: each may wait on its provider, and
    provider calls are awaited, not threaded."""
    usage_refresh_seconds: float = 3600.0
    """A cluster whose machines bill has its usage figures folded (status.usage, a status
    write) at least this often; more often only when its billable machines or their prices
    change (planning/usage.py): about one write an hour per running cluster."""
    status_progress_seconds: float = 2.0
    """A NodeCluster's status is rewritten for mere progress (counts moving, same state)
    at most this often; transitions are written at once."""
    cluster_concurrency: int = 200
    """NodeCluster reconciles in flight at once. They wait only on the API, whose
    connection pool admits `api_connections` requests anyway: more in flight would only
    hold more memory while queueing for a connection (10,000 new clusters at once)."""
    operation_concurrency: int = 256
    """Clusters whose operations advance at once."""
    provider_concurrency: int = 16
    """NodeProvider reconciles and health polls in flight at once."""
    api_connections: int = 100
    """Connections of the API client's pool: the most writes in flight at once."""
    orphan_grace_seconds: float = 30.0
    """A machine without a ClusterNode is deleted only once older than this."""
    default_poll_seconds: float = 60.0
    """Provider health poll interval when no cluster asks for another."""
    credentials_refresh_seconds: float = 300.0
    """How long a NodeProvider's credentials are used before its Secret is read again.

    The operator may only `get` Secrets (no watch: they cannot be enumerated), so this is
    how a rotated Secret reaches the driver without a restart: its provider is looked at
    again when they run out, even when its clusters poll it less often. Also the longest
    wait between looks at a NodeProvider that is not Ready (a Secret created after it)."""


def serves(patterns: Iterable[str], namespace: str) -> bool:
    """Whether `namespace` matches the patterns as kopf matches its namespaces: no patterns
    is all; globs include; a leading '!' excludes (an exclusion alone includes the rest)."""
    patterns = list(patterns)
    if not patterns:
        return True
    includes = [p for p in patterns if not p.startswith("!")]
    excludes = [p[1:] for p in patterns if p.startswith("!")]
    included = not includes or any(fnmatch.fnmatchcase(namespace, p) for p in includes)
    return included and not any(fnmatch.fnmatchcase(namespace, p) for p in excludes)


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


def node_view(node: ClusterNode) -> IndexedNode:
    """What the planner (and the quota count) needs of a ClusterNode."""
    meta, spec, status = node.metadata, node.spec, node.status
    ready_cond = next((c for c in status.conditions if c.type == "Ready"), None)
    error_reason = None
    if ready_cond is not None and ready_cond.status == "False":
        reason = reason_of(ready_cond.reason)
        if reason is not None and reason.marks_node_error:
            error_reason = reason
    # A reboot asked for and not yet carried out: the rule of clusternode.reboot_due.
    asked, last = spec.reboot_requested_at, status.last_reboot_time
    node_cond = next((c for c in status.conditions if c.type == NODE_READY), None)
    kube_node: NodeHealth | None = None
    if node_cond is not None:
        if node_cond.status == "True":
            kube_node = "Ready"
        elif node_cond.reason == NOT_REGISTERED:
            kube_node = "NotRegistered"
        else:
            kube_node = "NotReady"
    return IndexedNode(
        provider=sys.intern(spec.provider_ref.name),
        machine_type=sys.intern(spec.profile.machine_type),
        name=meta.name,
        created_at=meta.creation_timestamp or UNKNOWN_CREATION,
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
        reboot_pending=asked is not None and (last is None or asked > last),
        node=kube_node,
        node_since=node_cond.last_transition_time if node_cond is not None else None,
        restarted_at=status.restarted_at,
        hook=status.lifecycle_hook.name if status.lifecycle_hook else None,
        launching=status.lifecycle_hook is not None
        and status.lifecycle_hook.transition == "Launch",
        capacity_type=spec.profile.capacity_type,
        warm=meta.labels.get(POOL_LABEL) == WARM,
    )


def index_node(body: Mapping[str, Any]) -> dict[NsName, IndexedNode]:
    """The node index's entry for a ClusterNode body: (namespace, cluster) -> its view."""
    node = ClusterNode.model_validate(body)
    return {(node.metadata.namespace or "", node.spec.cluster_name): node_view(node)}


class NodeIndex(Protocol):
    """ClusterNodes by (namespace, cluster): what kopf's index is, and the harness's."""

    def __contains__(self, key: object) -> bool: ...
    def __getitem__(self, key: NsName) -> Iterable[IndexedNode]: ...
    def values(self) -> Iterable[Iterable[IndexedNode]]: ...
    def items(self) -> Iterable[tuple[NsName, Iterable[IndexedNode]]]: ...


class NodeBookIndex:
    """The ClusterNodes by (namespace, cluster), kept from ClusterNode events after a
    startup list (`handlers.seed_nodes`): a NodeIndex.

    Not a kopf index, for the reason ClusterBookIndex is not one: kopf makes every event of
    an indexed kind wait until its whole initial listing is indexed, and wakes every
    waiting event each time one more is. For ClusterNodes, the most numerous kind, that
    made a restart quadratic in the fleet: 100,000 nodes would be 10^10 wake-ups. A list in
    pages of 1,000 before the watches start costs 100 requests instead, and keeps what the
    index gave: every cluster sees all its nodes from its first reconcile after a restart,
    so it never makes a node twice.

    What the list cannot give: a node deleted after the list and before kopf's own
    listing (by another replica still leading, or by hand) would stay in the index, and its
    cluster would count a node that is gone. So listed nodes stay `unconfirmed` until an
    event of theirs comes (kopf's listing brings one for every node that exists), and
    `confirm_listed` asks the API about those still unconfirmed once kopf's listing is done.
    """

    def __init__(self) -> None:
        self._stores: dict[NsName, dict[str, IndexedNode]] = {}
        self._where: dict[NsName, NsName] = {}
        """(namespace, node name) -> (namespace, cluster): where the node is filed."""
        self.unconfirmed: set[NsName] = set()
        """Nodes filed from the startup list that no event has shown since."""
        self.listed = 0
        """How many the startup list filed."""

    def update(self, type: str | None, body: Mapping[str, Any], listed: bool = False) -> None:
        """One ClusterNode event (or, `listed`, an object of the startup list)."""
        meta = body.get("metadata", {})
        node = (str(meta.get("namespace") or ""), str(meta.get("name", "")))
        if listed:
            self.unconfirmed.add(node)
            self.listed += 1
        else:
            self.unconfirmed.discard(node)
        filed = self._where.pop(node, None)
        if filed is not None:
            store = self._stores[filed]
            store.pop(node[1], None)
            if not store:
                del self._stores[filed]
        if type == "DELETED":
            self.unconfirmed.discard(node)
            return
        for key, view in index_node(body).items():
            self._stores.setdefault(key, {})[view.name] = view
            self._where[node] = key

    def cluster_of(self, node: NsName) -> NsName | None:
        """The (namespace, cluster) a node is filed under, if it is."""
        return self._where.get(node)

    def nodes(self) -> list[NsName]:
        """(namespace, name) of every node filed (relist.py compares them with a list)."""
        return list(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._stores

    def __getitem__(self, key: NsName) -> Iterable[IndexedNode]:
        return list(self._stores[key].values())

    def values(self) -> Iterator[Iterable[IndexedNode]]:
        """Every cluster's nodes."""
        return (list(store.values()) for store in self._stores.values())

    def items(self) -> Iterator[tuple[NsName, Iterable[IndexedNode]]]:
        """(namespace, cluster) and its nodes, for every cluster."""
        return ((key, list(store.values())) for key, store in self._stores.items())


def index_cluster(body: Mapping[str, Any]) -> dict[str, NsName]:
    """The cluster index's entry for a NodeCluster body: provider -> (namespace, name)."""
    meta = body.get("metadata", {})
    provider = str(body.get("spec", {}).get("providerRef", {}).get("name", ""))
    return {provider: (str(meta.get("namespace") or ""), str(meta.get("name", "")))}


class KubeNodeIndex(Protocol):
    """Kubernetes Nodes by spec.providerID (`run --nodes`): what kopf's index is, and the
    harness's. An index (complete before any handler runs) so that a ClusterNode listed
    after a restart finds its Node at once, and does not report it missing meanwhile."""

    def __contains__(self, provider_id: object) -> bool: ...
    def __getitem__(self, provider_id: str) -> Iterable[NodeFacts]: ...


@dataclass
class NodeLinks:
    """Kubernetes Nodes and the ClusterNodes they belong to, by provider id (`run --nodes`).

    `index` finds a ClusterNode's Node in O(1). `owners` finds the ClusterNode of a Node:
    kept from ClusterNode events (their status.providerId), which cost nothing more than a
    dict entry, rather than by a second kopf index on ClusterNodes (a handler call per
    event). It may miss a Node event that comes before its ClusterNode's first event after
    a restart; that ClusterNode's own event then checks its Node in the index, which kopf
    completes first (events.on_node_event), so neither order loses the link. `seen` holds
    what each Node last said that matters, so that a Node's heartbeats (a status update
    every few minutes per Node) wake nothing."""

    index: KubeNodeIndex
    owners: dict[str, NsName] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)

    def node_of(self, provider_id: str | None) -> NodeFacts | None:
        """The Node whose spec.providerID is `provider_id` (of two, either), if any."""
        if not provider_id or provider_id not in self.index:
            return None
        return next(iter(self.index[provider_id]), None)


class ClusterIndex(Protocol):
    """NodeClusters by the NodeProvider they name: who uses a provider.

    Complete before any handler runs: after a restart a NodeProvider's reconcile must know
    every cluster that uses it from its first run, so it never counts too few users (and
    rewrites its status, or lets go of its finalizer) while the NodeClusters are still being
    listed. The operator seeds it with one list at startup (`ClusterBookIndex.seed`); the
    harness keeps it from the fake's watch, as it does the node index.
    """

    complete: bool
    """Whether it holds every NodeCluster served (else no provider is let go)."""

    def __contains__(self, provider: object) -> bool: ...
    def __getitem__(self, provider: str) -> Iterable[NsName]: ...


class ClusterBookIndex:
    """The NodeClusters by provider, kept from NodeCluster events after a startup list.

    Not a kopf index: kopf makes every event of an indexed kind wait until all objects of
    its initial listing are indexed, and wakes every waiting event each time one more is,
    so the restart of an operator with 10,000 NodeClusters cost minutes of CPU (quadratic;
    bench `restart_cpu_seconds_10k` went from 8.6 to 313 s). A list call at startup, before
    the watches, costs one page per thousand clusters instead.
    """

    def __init__(self) -> None:
        self._stores: dict[str, set[NsName]] = {}
        self._entries: dict[NsName, dict[str, NsName]] = {}
        self.complete = False
        """Whether it holds every NodeCluster served: seeded from a list. Until then (and
        for `--namespace` globs, which cannot be listed), no provider is let go."""

    def update(self, type: str | None, body: Mapping[str, Any]) -> None:
        """One NodeCluster event (or listed object): its entry replaces the one before."""
        meta = body.get("metadata", {})
        key = (str(meta.get("namespace") or ""), str(meta.get("name", "")))
        for provider, value in self._entries.pop(key, {}).items():
            store = self._stores[provider]
            store.discard(value)
            if not store:
                del self._stores[provider]
        if type == "DELETED":
            return
        entry = index_cluster(body)
        self._entries[key] = entry
        for provider, value in entry.items():
            self._stores.setdefault(provider, set()).add(value)

    def clusters(self) -> list[NsName]:
        """(namespace, name) of every cluster filed (relist.py compares them with a list)."""
        return list(self._entries)

    def provider_of(self, key: NsName) -> str | None:
        """The provider a cluster is filed under, if it is."""
        return next(iter(self._entries.get(key, {})), None)

    def __contains__(self, provider: object) -> bool:
        return provider in self._stores

    def __getitem__(self, provider: str) -> Iterable[NsName]:
        return list(self._stores[provider])


def provider_reason(err: ProviderError) -> Reason:
    """The reason a provider error is reported with: its type's (`ProviderError.reason`),
    never its message. A third-party error naming a word outside the vocabulary is a
    plain ProviderError."""
    return reason_of(str(err.reason)) or Reason.PROVIDER_ERROR


class ProviderUnavailable(Exception):
    """The NodeProvider a cluster or node names cannot be used (missing or invalid)."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Queues:
    """One work queue per controller, all built by `build_world`."""

    cluster: WorkQueue[NsName]
    node: WorkQueue[NsName]
    operation: WorkQueue[NsName]
    """Keyed by cluster: a cluster's operations run one at a time, oldest first."""
    provider: WorkQueue[str]
    poll: WorkQueue[str]
    """Provider health polls soon after a machine starts settling: one list call per
    provider replaces a get per settling machine."""
    relist: WorkQueue[str]
    """Keyed by kind (plural): the audit after a watch listed that kind again (relist.py)."""

    def all(self) -> tuple[WorkQueue[Any], ...]:
        """Every queue, in the order they are closed."""
        return (self.cluster, self.node, self.provider, self.poll, self.operation, self.relist)

    def hold(self) -> None:
        """Run nothing, remembering what to run (a standby: see WorkQueue.hold)."""
        for queue in self.all():
            queue.hold()

    def release(self) -> None:
        """Run what was remembered while held, and everything from now on."""
        for queue in self.all():
            queue.release()

    async def close(self) -> None:
        """Stop accepting work and finish what runs."""
        for queue in self.all():
            await queue.close()

    async def abort(self) -> None:
        """Stop at once, cancelling what runs (a kill, for tests)."""
        for queue in self.all():
            await queue.abort()


@dataclass
class ClusterBook:
    """What the operator remembers per NodeCluster between reconciles, and forgets at once."""

    locks: dict[NsName, asyncio.Lock] = field(default_factory=dict)
    """Held by a cluster's reconcile and by operations that change its nodes, so an
    operation's deletes and target change are seen together, never half."""
    pending_operations: set[NsName] = field(default_factory=set)
    """Clusters with unfinished operations: their events also wake the operation queue."""
    endings: dict[NsName, Any] = field(default_factory=dict)
    """How each cluster's active operation ends, decided but not yet recorded
    (`operation.Ending`: typed there, as this module comes before the operation's)."""
    progress_written: dict[NsName, float] = field(default_factory=dict)
    """When each cluster being worked on last had its status written (monotonic)."""
    poll_intervals: dict[NsName, float] = field(default_factory=dict)
    """Each cluster's health.pollIntervalSeconds: its provider polls at the smallest."""
    orphans_suspected: set[NsName] = field(default_factory=set)
    """Clusters whose provider poll found machines without a ClusterNode."""
    failures: dict[tuple[str, Any], tuple[Reason, str]] = field(default_factory=dict)
    """The failure last reported per (kind, key), until a reconcile succeeds (failures.py):
    a failure repeated by every retry is reported once."""
    orphan_checks_refused: set[str] = field(default_factory=set)
    """Namespaces whose NodeClusters the API refused to show the health poll (said once)."""
    abandoning: set[NsName] = field(default_factory=set)
    """Clusters deleted with nodecluster.io/abandon-machines that have said so in an Event,
    so that this process does not post it on every look; the Event's name (of the cluster's
    uid) keeps a restarted one from posting it again."""
    usage: dict[NsName, UsageSummary | None] = field(default_factory=dict)
    """Each cluster's usage as its last reconcile computed it (None: it has none): what its
    provider's totals are summed from (accounting.py), without reading any status."""

    def lock(self, key: NsName) -> asyncio.Lock:
        """The lock that serialises changes to one cluster's nodes."""
        lock = self.locks.get(key)
        if lock is None:
            lock = self.locks[key] = asyncio.Lock()
        return lock

    def settle(self, key: NsName) -> None:
        """Cluster `key` has converged: no pacing to remember until it changes again."""
        self.progress_written.pop(key, None)

    def forget(self, key: NsName) -> None:
        """Cluster `key` is gone: drop everything remembered about it."""
        self.locks.pop(key, None)
        self.pending_operations.discard(key)
        self.endings.pop(key, None)
        self.progress_written.pop(key, None)
        self.poll_intervals.pop(key, None)
        self.orphans_suspected.discard(key)
        self.abandoning.discard(key)
        self.usage.pop(key, None)


def _not_found(provider: str) -> tuple[Reason, str]:
    return (Reason.PROVIDER_NOT_FOUND, f"NodeProvider {provider!r} does not exist")


CREDENTIALS_REREAD_FLOOR_SECONDS = 10.0
"""The soonest a NodeProvider's Secret is read again after it was read: a refusal by the
provider, or a failed build, asks for a fresh read, and a fleet whose calls all fail at once
must not turn that into a Secret read per call (nor a provider into a poll loop)."""


@dataclass(frozen=True)
class CachedCredentials:
    """A NodeProvider's credentials as last read from its Secret."""

    generation: int
    """The NodeProvider's generation when they were read: any edit of its spec (another
    Secret named, say) reads them again. Not its resourceVersion, which its own status
    writes move."""
    read_at: float
    """When they were read (the world clock's monotonic time)."""
    expires_at: float
    """When they are read again, before any use after it."""
    data: Mapping[str, str] = field(repr=False)
    """The decoded keys; `repr=False` keeps the values out of every repr of the book."""


@dataclass
class ProviderBook:
    """The NodeProviders seen, why any cannot be used, and their credentials.

    Credentials are kept for `credentials_refresh_seconds` from the time they were read,
    not for as long as the NodeProvider is unchanged: the operator may only `get` Secrets
    (it cannot watch them), so reading again is the only way a rotated Secret reaches the
    driver without a restart. They are read again sooner when they may be why something
    failed: the driver reported an authentication failure (`call_failed`), or the driver
    could not be built. The registry builds a new driver when the credentials differ (they
    are part of its fingerprint) and closes the old one, so nothing else has to notice.
    """

    api: KubeApi
    registry: ProviderRegistry
    clock: Clock
    specs: dict[str, NodeProvider] = field(default_factory=dict)
    errors: dict[str, tuple[Reason, str]] = field(default_factory=dict)
    """Why a provider's driver cannot be built, for its clusters to report: only what needs
    a person (a stalling reason). A passing fault would make every cluster of the provider
    say Stalled while it lasts; their nodes report it instead, and retry."""
    credentials: dict[str, CachedCredentials] = field(default_factory=dict)
    """Decoded credentials per provider, with when they were read."""
    credentials_refresh_seconds: float = 300.0
    """See `Settings.credentials_refresh_seconds`."""
    _reads: dict[str, asyncio.Lock] = field(default_factory=dict, repr=False)
    """One Secret read per provider at a time: thousands of node reconciles find expired
    credentials at once, and all of them wait for one read instead of making their own."""
    _holds: dict[str, asyncio.Lock] = field(default_factory=dict, repr=False)
    """One change of this installation's finalizer on a provider at a time (inuse.py)."""
    _statuses: dict[str, asyncio.Lock] = field(default_factory=dict, repr=False)
    """One write of this installation's status entry of a provider at a time (accounting.py)."""

    def forget(self, name: str) -> None:
        """NodeProvider `name` is gone."""
        self.specs.pop(name, None)
        self.credentials.pop(name, None)
        self.errors.pop(name, None)
        self._reads.pop(name, None)
        self._holds.pop(name, None)

    def problem(self, name: str) -> tuple[Reason, str] | None:
        """Why clusters of provider `name` cannot get machines, if they cannot."""
        if name not in self.specs:
            return _not_found(name)
        return self.errors.get(name)

    def refuses_new_machines(self, name: str) -> tuple[Reason, str] | None:
        """Why provider `name` gives no new machines although it serves those that exist:
        it is being deleted (see inuse.py). None when it gives them (or is not known)."""
        np = self.specs.get(name)
        if np is None or np.metadata.deletion_timestamp is None:
            return None
        return (
            Reason.PROVIDER_DELETING,
            f"NodeProvider {name!r} is being deleted: it gives no new machines (its "
            "machines are still stopped, started and deleted through it)",
        )

    def hold_lock(self, name: str) -> asyncio.Lock:
        """The lock under which this installation's finalizer on provider `name` changes."""
        lock = self._holds.get(name)
        if lock is None:
            lock = self._holds[name] = asyncio.Lock()
        return lock

    def status_lock(self, name: str) -> asyncio.Lock:
        """The lock under which this installation's status entry of provider `name` is
        computed and written: a cluster's retirement (accounting.py) and the provider's
        reconcile must not write over each other's usage figures."""
        lock = self._statuses.get(name)
        if lock is None:
            lock = self._statuses[name] = asyncio.Lock()
        return lock

    def cores_by_type(self, name: str) -> dict[str, int]:
        """Cores per machine type of a provider's buckets."""
        np = self.specs.get(name)
        if np is None:
            return {}
        return {b.machine_type: b.cores for b in np.spec.buckets}

    def call_failed(self, name: str, err: ProviderError) -> None:
        """A call through provider `name`'s driver failed with `err`. If the provider refused
        the credentials, the next call reads the Secret again (a rotation: the provider
        already takes the new key, or no longer takes the old one) instead of failing with
        them until they expire."""
        if isinstance(err, Unauthorized):
            self._expire_credentials(name)

    def next_read_in(self, name: str) -> float | None:
        """Seconds until provider `name`'s credentials are read again (None: it has none
        cached), at least `CREDENTIALS_REREAD_FLOOR_SECONDS`: its reconcile comes back then,
        so a rotated Secret is used in time even if the provider is polled rarely."""
        cached = self.credentials.get(name)
        if cached is None:
            return None
        return max(cached.expires_at - self.clock.monotonic(), CREDENTIALS_REREAD_FLOOR_SECONDS)

    async def driver(self, name: str) -> ProviderDriver:
        """The driver of a NodeProvider, or ProviderUnavailable saying why not."""
        np = self.specs.get(name)
        if np is None:
            raise ProviderUnavailable(*_not_found(name))
        try:
            config = await self._config(np)
            drv = await self.registry.driver_for(np.spec.driver, config)
        except ProviderError as err:
            # A key missing, a token refused while building, a Secret that is not there:
            # the credentials may be why, so the next look reads them again.
            self._expire_credentials(name)
            reason = provider_reason(err)
            if reason.stalls:
                self.errors[name] = (reason, str(err))
            else:
                self.errors.pop(name, None)
            raise ProviderUnavailable(reason, f"NodeProvider {name!r}: {err}") from err
        self.errors.pop(name, None)
        return drv

    def _expire_credentials(self, name: str) -> None:
        """Read provider `name`'s Secret again before the next use (not sooner than
        `CREDENTIALS_REREAD_FLOOR_SECONDS` after the last read)."""
        cached = self.credentials.get(name)
        if cached is not None:
            soonest = cached.read_at + CREDENTIALS_REREAD_FLOOR_SECONDS
            self.credentials[name] = replace(cached, expires_at=min(cached.expires_at, soonest))

    async def _credentials(self, np: NodeProvider) -> Mapping[str, str]:
        """The provider's credentials: cached while fresh, else read from its Secret.

        A Secret that does not exist, or that the operator may not read, is the
        NodeProvider's mistake (`InvalidConfig`). A read that fails for a passing reason
        (the API server overloaded or unreachable) keeps the credentials read before, if
        any, for another `CREDENTIALS_REREAD_FLOOR_SECONDS`: a blip of the API server must
        not stop every provider call. Values never reach a message or a log line.
        """
        ref = np.spec.credentials_secret_ref
        if ref is None:
            return {}
        name, generation = np.metadata.name, np.metadata.generation
        secret = f"{ref.namespace}/{ref.name}"
        async with self._reads.setdefault(name, asyncio.Lock()):
            cached = self.credentials.get(name)
            if cached is not None and cached.generation != generation:
                cached = None
            now = self.clock.monotonic()
            if cached is not None and now < cached.expires_at:
                return cached.data
            try:
                data = await self.api.read_secret(ref.namespace, ref.name)
            except KubeError as err:
                if err.status in (403, 404):
                    self.credentials.pop(name, None)
                    raise InvalidConfig(
                        f"credentials Secret {secret} does not exist"
                        if err.status == 404
                        else f"credentials Secret {secret} may not be read by the operator "
                        "(see the chart's rbac.secretNamespaces and rbac.secretNames)"
                    ) from err
                if cached is None:
                    raise Retryable(f"credentials Secret {secret} cannot be read: {err}") from err
                log.warning(
                    "Provider %s: reading credentials Secret %s failed (%s); using those "
                    "read %.0fs ago",
                    name,
                    secret,
                    err,
                    now - cached.read_at,
                )
                self.credentials[name] = replace(
                    cached, expires_at=now + CREDENTIALS_REREAD_FLOOR_SECONDS
                )
                return cached.data
            self.credentials[name] = CachedCredentials(
                generation=generation,
                read_at=now,
                expires_at=now + self.credentials_refresh_seconds,
                data=data,
            )
            return data

    async def _config(self, np: NodeProvider) -> ProviderConfig:
        return ProviderConfig(
            name=np.metadata.name,
            config=np.spec.config,
            credentials=await self._credentials(np),
            max_nodes=np.spec.quotas.max_nodes,
            max_cores=np.spec.quotas.max_cores,
            cores_by_type={b.machine_type: b.cores for b in np.spec.buckets},
            call_timeout_seconds=float(np.spec.call_timeout_seconds),
            clock=self.clock,
        )


RELIST_STARTUP_SECONDS = 60.0
"""How long after the world's start the first listing event is still the startup listing's
(a listing after an empty startup one, within it, goes unnoticed: both rare)."""
RELIST_GAP_SECONDS = 5.0
"""How long the watches may go without a listing event before the next one is taken to
begin a new listing: kopf's listings deliver their objects back to back, far closer. A
listing taken for new by mistake (one stalled longer) costs an audit, one list per kind."""


class Relists:
    """Whether the watches have listed again, and what changed while the kinds are audited.

    kopf resumes a broken watch from the last resource version it saw, so a watch that
    drops now and then loses nothing. A watch the API server answers `410 Gone` (a new
    API server's watch cache starts at etcd's current revision, so every watch resumed
    across a restart gets it) is started over from a fresh list instead, and an object
    deleted in between never gets its DELETED event. The operator would count a node that
    is gone for ever: its cluster never settles, a provider is never let go. A listing
    comes as events of no type (kopf's convention), and only listings send them, which is
    how a new one is noticed here; relist.py audits the kinds against lists of its own.

    A listing event begins a new listing when none of its kind came for
    RELIST_GAP_SECONDS, or when its object has been shown by any event since the listing
    under way began (a listing shows each object once, before any watch event of it: a
    second showing is a listing started over within seconds, as when the API server
    restarts right after it last did, or right after the operator started; CI found the
    first case, where the second listing showed only objects created after the first).
    The startup listing follows the world's start (`now`), so it is not a new one.

    A new listing of any kind audits every kind: a kind with nothing left to list sends no
    event at all, and what makes one watch list again (an API server restarted) makes them
    all.
    """

    def __init__(self, now: float) -> None:
        self._built = now
        self._started = now + RELIST_STARTUP_SECONDS
        """Until when a kind's first listing is its startup listing: it follows the
        world's start, after the rest of the startup (the providers' list, the endpoints,
        a slow API server). A kind's first listing after it (its startup listing was
        empty) is a new one."""
        self._last: dict[str, float] = {}
        """Per kind, when its last listing event came."""
        self._last_any = now
        """When the last listing event of any kind came (at first: the world's start)."""
        self._shown: set[int] = set()
        """Hashes of the objects (kind, key) shown by any event since the listing under way
        began, while listing events keep coming; emptied by the first event after they went
        quiet. So at most one listing's worth, a small int per object (a collision at worst
        takes a listing for new: one audit more)."""
        self.touched: dict[str, set[NsName]] = {}
        """Kinds under audit -> the objects an event has shown since the audit's list began."""

    def saw(self, kind: str, type: str | None, key: NsName, now: float) -> bool:
        """Note one event; True when it is the first of a new listing (see above)."""
        touched = self.touched.get(kind)
        if touched is not None:
            touched.add(key)
        if now < self._built:
            # A clock behind the world's start: never a monotonic one, but the tests' loop
            # clock starts over after their fixtures built the world. Start the count anew,
            # the startup listing over.
            self._built = self._last_any = self._started = now
            self._last.clear()
            self._shown = set()
        if now - self._last_any > RELIST_GAP_SECONDS:
            if self._shown:
                self._shown = set()
            if type is not None:
                return False  # no listing under way: nothing to remember
        seen = hash((kind, key))
        if type is not None:
            self._shown.add(seen)
            return False
        last = self._last.get(kind)
        quiet = now > self._started if last is None else now - last > RELIST_GAP_SECONDS
        new = quiet or seen in self._shown
        if new:
            self._shown = set()
        self._shown.add(seen)
        self._last[kind] = now
        self._last_any = now
        return new


@dataclass
class World:
    """Everything the controllers share. Build it with `assembly.build_world`."""

    api: KubeApi
    clock: Clock
    settings: Settings
    node_index: NodeIndex
    cluster_index: ClusterIndex
    queues: Queues
    providers: ProviderBook
    bodies: BodyCache = field(default_factory=BodyCache)
    book: ClusterBook = field(default_factory=ClusterBook)
    reservations: MachineReservations = field(default_factory=MachineReservations)
    """Machines being created, held against their provider's quota (quota.py)."""
    node_links: NodeLinks | None = None
    """Kubernetes Nodes by provider id, with `run --nodes` (Settings.nodes); else None."""
    metrics: Metrics = field(default_factory=Metrics)
    """What the metrics endpoint serves (metrics.py); its own registry per world."""
    expectations: Expectations = field(init=False)
    usage: UsageLedger = field(init=False)
    """What the cached nodes hold of each provider, counted as the cache changes (usage.py)."""
    relists: Relists = field(init=False)

    def __post_init__(self) -> None:
        self.expectations = Expectations(self.clock, self.settings.expectation_timeout_seconds)
        self.usage = UsageLedger(self.node_index, self.reservations)
        self.relists = Relists(self.clock.monotonic())

    def now(self) -> datetime:
        """The current time, second precision (as the API server stores it)."""
        return self.clock.now().replace(microsecond=0)

    async def body(self, kind: Kind, key: ObjectKey) -> dict[str, Any]:
        """The newest known body of an object being worked on, else read from the API
        (and kept until the controller drops it). KubeNotFound if it does not exist."""
        body = self.bodies.get(key)
        if body is None:
            _, namespace, name = key
            body = await self.api.get(kind, namespace or None, name)
            self.bodies.observe(key, body)
        return body

    def clusters_of(self, provider: str) -> set[NsName]:
        """The NodeClusters (served by this installation) that name `provider`."""
        if provider not in self.cluster_index:
            return set()
        return set(self.cluster_index[provider])

    def loose_nodes(self, provider: str) -> list[NsName]:
        """(namespace, name) of the ClusterNodes that name `provider` outside the NodeClusters
        that do: made by hand, or left by a NodeCluster removed without its finalizer.
        No NodeCluster speaks for them, so they count as users of the provider of their own.
        O(nodes outside the provider's clusters): for a provider's reconcile, not per node."""
        clusters = self.clusters_of(provider)
        return [
            (key[0], node.name)
            for key, store in self.node_index.items()
            if key not in clusters
            for node in store
            if node.provider == provider
        ]

    def nodes_of(self, key: NsName) -> list[NodeView]:
        """A cluster's nodes: the watch cache corrected by in-flight changes."""
        cached: list[IndexedNode] = []
        if key in self.node_index:
            cached = list(self.node_index[key])
            if self.expectations.in_flight(key):
                # Before merge drops the expected creates the cache shows (usage.py).
                self.usage.observe_cached(key[0], cached)
        return self.expectations.merge(key, cached)

    def forget_cluster(self, key: NsName) -> None:
        """A NodeCluster is gone: forget it everywhere, in one place."""
        self.book.forget(key)
        self.expectations.forget(key)
        self.bodies.forget(("NodeCluster", *key))
        self.queues.cluster.forget(key)
        self.metrics.drop_cluster(key)

    def forget_provider(self, name: str) -> None:
        """A NodeProvider is gone."""
        self.providers.forget(name)
        self.bodies.forget(("NodeProvider", "", name))
        self.queues.provider.forget(name)
        self.metrics.drop_provider(name)
