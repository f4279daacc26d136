"""The Kubernetes Node of a machine (`run --nodes`): what the operator reads of it and
decides about it, pure.

A machine becomes a Node when something (its kubelet, kwok, a cloud's node controller)
registers a `Node` whose `spec.providerID` is the machine's provider id. The operator
never makes Nodes; it finds them by provider id (an index of the watch), and then:

- links it: `ClusterNode.status.nodeRef`, and a `NodeReady` condition mirroring the
  Node's `Ready` (its own lastTransitionTime kept, so "not Ready since" survives restarts
  and is the Node's word, not the operator's first look), or False/`NodeNotRegistered`
  while no Node has the provider id. Both go in the status write the node controller makes
  anyway, so a machine that registers before its first report costs no write of its own;
- keeps `profile.nodeLabels` and `profile.nodeTaints` on it with one merge patch, only
  when they differ (as Cluster API's label sync: put back when removed, others left alone);
- drains it before the machine is deleted (`drain_plan`): cordon, evict what runs there
  except DaemonSet and mirror pods, wait for them to go.

Everything here works on `NodeFacts` and `PodFacts`: small parsed views of the core
objects, built at the boundary from the watch's bodies, so the rules are testable without
an API server and the node index keeps little per Node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nodecluster.api.clusternode import ClusterNodeStatus, NodeRef
from nodecluster.api.common import Condition, ConditionStatus
from nodecluster.api.nodecluster import NodeTaint
from nodecluster.planning.conditions import replace_condition

NODE_READY = "NodeReady"
"""The ClusterNode condition that mirrors its Node's Ready condition."""
NOT_REGISTERED = "NodeNotRegistered"
"""NodeReady's reason while no Node has the machine's provider id."""
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
"""Marks a mirror pod: the API's copy of a static pod, which no eviction can stop."""

Taint = tuple[str, str, str]
"""(key, value, effect): a taint as compared; timeAdded does not count."""


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """What the operator needs of a Node: kept per Node in the index, so small."""

    name: str
    uid: str
    provider_id: str
    resource_version: str
    ready: ConditionStatus | None
    """The Node's Ready condition's status; None while it has none (just registered)."""
    ready_reason: str
    ready_since: datetime | None
    """The Ready condition's lastTransitionTime."""
    labels: Mapping[str, str]
    taints: tuple[dict[str, Any], ...]
    """spec.taints as stored (timeAdded included: a patch of the list sends them back)."""
    unschedulable: bool
    deleting: bool

    def relevant(self) -> tuple[Any, ...]:
        """What a change of wakes the node's controller: not heartbeats, not images, not
        the resourceVersion a status update moves."""
        return (
            self.name,
            self.uid,
            self.ready,
            self.ready_reason,
            self.ready_since,
            tuple(sorted(self.labels.items())),
            tuple(_taint(t) for t in self.taints),
            self.unschedulable,
            self.deleting,
        )


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _taint(raw: Mapping[str, Any]) -> Taint:
    return (str(raw.get("key", "")), str(raw.get("value") or ""), str(raw.get("effect", "")))


def node_facts(body: Mapping[str, Any]) -> NodeFacts | None:
    """A Node body's facts; None for a Node without a provider id (not a machine's)."""
    spec = body.get("spec") or {}
    provider_id = spec.get("providerID")
    if not provider_id:
        return None
    meta = body.get("metadata") or {}
    conditions = (body.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    status = ready.get("status") if ready is not None else None
    return NodeFacts(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        provider_id=str(provider_id),
        resource_version=str(meta.get("resourceVersion", "")),
        ready=status if status in ("True", "False", "Unknown") else None,
        ready_reason=str((ready or {}).get("reason") or ""),
        ready_since=_time((ready or {}).get("lastTransitionTime")),
        labels=dict(meta.get("labels") or {}),
        taints=tuple(dict(t) for t in spec.get("taints") or ()),
        unschedulable=bool(spec.get("unschedulable")),
        deleting=bool(meta.get("deletionTimestamp")),
    )


# -- the link: status.nodeRef and the NodeReady condition -------------------------------------


@dataclass(frozen=True)
class NodeLink:
    """What a ClusterNode's status says of its Node."""

    ref: NodeRef | None
    status: ConditionStatus
    reason: str
    message: str
    since: datetime | None
    """The Node's own transition time; None: the operator's first look (not registered)."""


def link_of(facts: NodeFacts | None) -> NodeLink:
    """What the status should say of the Node found (or not) by provider id."""
    if facts is None:
        return NodeLink(
            None, "False", NOT_REGISTERED, "no Node has the machine's provider id yet", None
        )
    ref = NodeRef(name=facts.name, uid=facts.uid)
    if facts.ready == "True":
        reason = facts.ready_reason or "NodeReady"
        return NodeLink(ref, "True", reason, f"Node {facts.name} is Ready", facts.ready_since)
    status: ConditionStatus = facts.ready or "Unknown"
    reason = facts.ready_reason or "NodeStatusUnknown"
    message = f"Node {facts.name} is not Ready ({reason})"
    return NodeLink(ref, status, reason, message, facts.ready_since)


def with_node(
    status: ClusterNodeStatus,
    previous: Sequence[Condition],
    facts: NodeFacts | None,
    generation: int | None,
    now: datetime,
) -> ClusterNodeStatus:
    """`status` with nodeRef and the NodeReady condition as the Node says (after Ready);
    `previous`: the conditions written before (a NodeNotRegistered keeps its time)."""
    link = link_of(facts)
    old = next((c for c in previous if c.type == NODE_READY), None)
    since = link.since
    if since is None:
        # Not registered: since the operator first said so, kept while it stays so.
        same = old is not None and old.status == link.status and old.reason == link.reason
        since = old.last_transition_time if same and old is not None else now
    ready = Condition(
        type=NODE_READY,
        status=link.status,
        reason=link.reason,
        message=link.message,
        observed_generation=generation,
        last_transition_time=since,
    )
    return status.model_copy(
        update={"node_ref": link.ref, "conditions": replace_condition(status.conditions, ready)}
    )


def link_stale(body: Mapping[str, Any], facts: NodeFacts | None) -> bool:
    """Whether a ClusterNode body (raw, as its watch event brings it) says something of its
    Node that the Node no longer says, or its Node lacks the profile's labels or taints:
    then its controller has work. Cheap on purpose: it runs for every ClusterNode event.
    Nodes without a machine and nodes being deleted are left to their own rules."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    if not status.get("providerId") or meta.get("deletionTimestamp"):
        return False
    link = link_of(facts)
    ref = status.get("nodeRef") or {}
    wanted_ref = link.ref.wire() if link.ref is not None else {}
    if ref != wanted_ref:
        return True
    cond = next((c for c in status.get("conditions") or [] if c.get("type") == NODE_READY), None)
    if cond is None or cond.get("status") != link.status or cond.get("reason") != link.reason:
        return True
    if link.since is not None and _time(cond.get("lastTransitionTime")) != link.since:
        return True
    if facts is None:
        return False
    profile = (body.get("spec") or {}).get("profile") or {}
    taints = [NodeTaint.model_validate(t) for t in profile.get("nodeTaints") or ()]
    return sync_patch(profile.get("nodeLabels") or {}, taints, facts) is not None


# -- labels and taints -------------------------------------------------------------------------


def sync_patch(
    labels: Mapping[str, str], taints: Iterable[NodeTaint], facts: NodeFacts
) -> dict[str, Any] | None:
    """The merge patch that puts the profile's labels and taints on the Node; None when
    they are there already (no write when in sync).

    Labels are merged key by key. Taints are one list in a merge patch, so the patch
    carries the whole list (the Node's others kept as they are, ours in place of any
    with the same key and effect) and the resourceVersion the list was read at: a taint
    added meanwhile by someone else (the node lifecycle controller's not-ready taint) is
    not lost, the patch is refused (409) and made again from the newer Node."""
    patch: dict[str, Any] = {}
    missing = {k: v for k, v in labels.items() if facts.labels.get(k) != v}
    if missing:
        patch["metadata"] = {"labels": missing}
    wanted = {(t.key, t.effect): t for t in taints}
    have = {(_taint(t)[0], _taint(t)[2]): _taint(t) for t in facts.taints}
    if any(have.get(k) != (t.key, t.value, t.effect) for k, t in wanted.items()):
        kept = [t for t in facts.taints if (_taint(t)[0], _taint(t)[2]) not in wanted]
        ours = [
            {"key": t.key, "effect": t.effect, **({"value": t.value} if t.value else {})}
            for t in wanted.values()
        ]
        patch["spec"] = {"taints": kept + ours}
        patch.setdefault("metadata", {})["resourceVersion"] = facts.resource_version
    return patch or None


# -- the drain ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodFacts:
    """A pod on a Node being drained, as the drain sees it."""

    namespace: str
    name: str
    daemon: bool
    """Owned by a DaemonSet: its controller would put it back (and tolerates the cordon)."""
    mirror: bool
    """A static pod's mirror: the kubelet runs it whatever the API says."""
    finished: bool
    """Succeeded or Failed: it runs no more, nothing to evict."""
    terminating: bool
    """Deleted already (evicted), waiting for its kubelet to stop it."""


def pod_facts(body: Mapping[str, Any]) -> PodFacts:
    """A pod body's facts."""
    meta = body.get("metadata") or {}
    owners = meta.get("ownerReferences") or []
    return PodFacts(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        daemon=any(o.get("kind") == "DaemonSet" and o.get("controller") for o in owners),
        mirror=MIRROR_ANNOTATION in (meta.get("annotations") or {}),
        finished=(body.get("status") or {}).get("phase") in ("Succeeded", "Failed"),
        terminating=bool(meta.get("deletionTimestamp")),
    )


@dataclass(frozen=True)
class DrainWork:
    """What one look at a Node being drained finds."""

    evict: tuple[PodFacts, ...]
    """Pods to evict now."""
    waiting: tuple[PodFacts, ...]
    """Pods evicted already and still stopping."""

    @property
    def left(self) -> int:
        """Pods that keep the drain from finishing."""
        return len(self.evict) + len(self.waiting)


def drain_work(pods: Iterable[PodFacts], node_ready: bool) -> DrainWork:
    """Which pods must go before the Node counts as drained (kubectl drain's rules, as
    Cluster API applies them: DaemonSet and mirror pods stay, finished pods do not count).

    On a Node that is not Ready, pods already terminating do not hold the drain: no kubelet
    is there to finish them, so waiting would only run into the timeout (Cluster API skips
    them the same way); their eviction has been asked for, which is all the API can do."""
    evict: list[PodFacts] = []
    waiting: list[PodFacts] = []
    for pod in pods:
        if pod.daemon or pod.mirror or pod.finished:
            continue
        if pod.terminating:
            if node_ready:
                waiting.append(pod)
            continue
        evict.append(pod)
    return DrainWork(tuple(evict), tuple(waiting))
