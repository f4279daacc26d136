"""`kubectl nodecluster describe NAME`: one cluster as a tree, cluster -> zones -> nodes.

What `kubectl describe nodecluster` cannot show in one place: every node of the cluster
under its zone, with its state, age, provider id, Kubernetes Node and problems, then the
cluster's conditions and its last Events. Reads only: the NodeCluster, the namespace's
ClusterNodes (members by spec.clusterName, as the operator counts them) and the Events
about the cluster; Events the user may not list are said to be unreadable, not skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nodecluster.api.clusternode import ClusterNode
from nodecluster.api.common import Condition
from nodecluster.api.nodecluster import NodeCluster
from nodecluster.api.warmpool import POOL_LABEL, WARM
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, Kind, KubeApi, KubeError
from nodecluster.plugin.style import BAD, BOLD, BUSY, DIM, GOOD, Paint

EVENTS = Kind("events", group="", version="v1")
"""core/v1 Events, listed by the object they are about."""

LAST_EVENTS = 10
"""How many of the cluster's Events are shown, newest last."""

GOOD_STATES = frozenset({"Deployed", "Running", "Stopped", "Empty", "Terminated"})
BAD_STATES = frozenset({"Error", "Failed", "PartlyDeployed", "Unknown"})
"""Anything else is on its way somewhere (yellow)."""

BAD_WHEN_TRUE = frozenset({"Stalled", "Degraded"})
"""Conditions that are bad news when True (the others are when False)."""


@dataclass
class ClusterFacts:
    """What describe read."""

    cluster: NodeCluster
    nodes: list[ClusterNode]
    events: list[dict[str, Any]] = field(default_factory=list)
    events_unreadable: str | None = None
    """Why the Events could not be read (e.g. the user may not list them)."""


async def read_cluster(api: KubeApi, namespace: str, name: str) -> ClusterFacts:
    """The cluster, its nodes and its Events (KubeNotFound if the cluster is not there)."""
    cluster = NodeCluster.model_validate(await api.get(NODECLUSTERS, namespace, name))
    nodes = [
        ClusterNode.model_validate(body)
        for body in await api.list(CLUSTERNODES, namespace)
        if body.get("spec", {}).get("clusterName") == name
    ]
    facts = ClusterFacts(cluster, nodes)
    try:
        facts.events = await api.list(
            EVENTS, namespace, fields=f"involvedObject.kind=NodeCluster,involvedObject.name={name}"
        )
    except KubeError as err:
        facts.events_unreadable = (
            f"not readable with your credentials (list events: {err.status})"
            if err.status in (401, 403)
            else f"not readable: {err.message[:200]}"
        )
    return facts


def age(since: datetime | None, now: datetime) -> str:
    """An age as kubectl prints it (its HumanDuration): 90s, 5m30s, 12m, 5h20m, 30h, 3d4h, 12d."""
    if since is None:
        return "?"
    seconds = max(0, int((now - since).total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400

    def two(big: int, big_unit: str, small: int, small_unit: str) -> str:
        return f"{big}{big_unit}" + (f"{small}{small_unit}" if small else "")

    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return two(minutes, "m", seconds % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return two(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return two(days, "d", hours % 24, "h")
    return f"{days}d"


def state_color(state: str | None) -> str:
    """The colour of a cluster's or node's state."""
    if state in GOOD_STATES:
        return GOOD
    if state in BAD_STATES or state is None:
        return BAD
    return BUSY


def problems(node: ClusterNode) -> list[str]:
    """What is wrong with a node, or holds it, for people."""
    out: list[str] = []
    st = node.status
    ready = next((c for c in st.conditions if c.type == "Ready"), None)
    if ready is not None and ready.status == "False" and ready.reason:
        detail = f": {ready.message}" if ready.message else ""
        out.append(f"{ready.reason}{detail}")
    elif st.state == "Failed" and st.message:
        out.append(st.message)
    if st.lifecycle_hook is not None:
        hook = st.lifecycle_hook
        out.append(
            f"waiting on lifecycle hook {hook.name} ({hook.transition}) until "
            f"{hook.deadline.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        )
    if st.drain is not None and st.drain.blocked:
        out.append(f"drain blocked: {st.drain.blocked}")
    if node.metadata.deletion_timestamp is not None:
        out.append("being deleted")
    return out


def _zone_of(node: ClusterNode) -> str:
    return node.status.zone or node.spec.zone or "(no zone)"


def render_tree(facts: ClusterFacts, now: datetime, paint: Paint) -> str:
    """The cluster as a tree, then its conditions and its last Events."""
    nc = facts.cluster
    spec, st = nc.spec, nc.status
    bounds = "".join(
        f", {label} {value}"
        for label, value in (("min", spec.min_nodes), ("max", spec.max_nodes))
        if value is not None
    )
    state = st.state or "(no status yet)"
    head = (
        f"{paint('NodeCluster', BOLD)} {nc.metadata.namespace}/{nc.metadata.name}  "
        f"{paint(state, state_color(st.state))}  "
        f"{st.ready_nodes or 0}/{spec.target_nodes} ready (target {spec.target_nodes}{bounds})"
    )
    lines = [head]
    lines.append(
        f"  provider {spec.provider_ref.name}, machine type {spec.profile.machine_type}, "
        f"desiredState {spec.desired_state}"
        + (", paused" if spec.paused else "")
        + (f", suspended: {', '.join(spec.suspend)}" if spec.suspend else "")
        + f", age {age(nc.metadata.creation_timestamp, now)}"
    )
    if st.message:
        lines.append(f"  {paint(st.message, DIM)}")
    by_zone: dict[str, list[ClusterNode]] = {}
    for node in facts.nodes:
        by_zone.setdefault(_zone_of(node), []).append(node)
    zones = sorted(by_zone, key=lambda z: (z == "(no zone)", z))
    if not zones:
        lines.append("└── (no nodes)")
    for zi, zone in enumerate(zones):
        last_zone = zi == len(zones) - 1
        members = sorted(by_zone[zone], key=lambda n: n.metadata.name)
        ready = sum(1 for n in members if n.status.ready)
        lines.append(
            f"{'└──' if last_zone else '├──'} {paint(zone, BOLD)}  {ready}/{len(members)} ready"
        )
        stem = "    " if last_zone else "│   "
        for ni, node in enumerate(members):
            last = ni == len(members) - 1
            lines.append(f"{stem}{'└──' if last else '├──'} {node_line(node, now, paint)}")
            for problem in problems(node):
                lines.append(f"{stem}{'    ' if last else '│   '}{paint('! ' + problem, BAD)}")
    lines.append("")
    lines.append(paint("Conditions:", BOLD))
    lines += conditions_table(st.conditions, now, paint) or ["  (none yet)"]
    lines.append("")
    lines.append(paint(f"Events (last {LAST_EVENTS}):", BOLD))
    if facts.events_unreadable:
        lines.append(f"  {facts.events_unreadable}")
    else:
        lines += events_lines(facts.events, now, paint) or ["  (none)"]
    return "\n".join(lines) + "\n"


def node_line(node: ClusterNode, now: datetime, paint: Paint) -> str:
    """One node: name, state, readiness, age, provider id, Kubernetes Node."""
    st = node.status
    state = st.state or "Pending"
    ready = (
        paint("ready", GOOD) if st.ready else paint("not ready", BAD if st.ready is False else BUSY)
    )
    parts = [
        node.metadata.name,
        paint(state, state_color(st.state)),
        ready,
        f"age {age(node.metadata.creation_timestamp, now)}",
        st.provider_id or "(no machine yet)",
    ]
    if st.node_ref is not None:
        parts.append(f"Node {st.node_ref.name}")
    if node.spec.power_state != "Running":
        parts.append(f"power {node.spec.power_state}")
    if node.metadata.labels.get(POOL_LABEL) == WARM:
        parts.append(paint("warm pool", DIM))  # outside the target, waiting to serve
    return "  ".join(parts)


def conditions_table(conditions: Sequence[Condition], now: datetime, paint: Paint) -> list[str]:
    """The conditions as aligned rows: type, status, reason, since, message."""
    rows = [
        (
            c.type,
            c.status,
            c.reason or "",
            age(c.last_transition_time, now),
            c.message or "",
        )
        for c in conditions
    ]
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out = []
    for c, row in zip(conditions, rows, strict=True):
        bad = (c.status == "True") == (c.type in BAD_WHEN_TRUE)
        color = BAD if bad else GOOD
        if c.type == "Reconciling" and c.status == "True":
            color = BUSY
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        cells[1] = paint(cells[1], color)
        out.append("  " + "  ".join(cells) + ("  " + row[4] if row[4] else ""))
    return out


def _event_time(event: Mapping[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def events_lines(events: Iterable[Mapping[str, Any]], now: datetime, paint: Paint) -> list[str]:
    """The last Events, oldest first: age, type, reason, message (and how many times)."""
    newest = sorted(events, key=_event_time)[-LAST_EVENTS:]
    out = []
    for e in newest:
        when = _event_time(e)
        try:
            ago = age(datetime.fromisoformat(when.replace("Z", "+00:00")), now)
        except ValueError:
            ago = "?"
        etype = str(e.get("type") or "")
        count = int(e.get("count") or 1)
        times = f" (x{count})" if count > 1 else ""
        out.append(
            f"  {ago:>4}  {paint(etype.ljust(7), BAD if etype == 'Warning' else DIM)}  "
            f"{e.get('reason', '')}: {e.get('message', '')}{times}"
        )
    return out


def now_utc() -> datetime:
    """Now, for ages."""
    return datetime.now(UTC)
