"""Small builders for the planner and status tests: specs from camelCase dicts, nodes
with fixed times, and a step function that plays the controller between two plans.

Times are fixed datetimes, never the clock, so every case reads the same on every run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from nodecluster.api.nodecluster import NodeClusterSpec, NodeClusterStatus
from nodecluster.api.reasons import Reason
from nodecluster.planning.model import Declared, NodeView, Observed
from nodecluster.planning.planner import Plan

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CURRENT = "hash-current"
OUTDATED = "hash-outdated"
CLUSTER = "web"


def merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """A deep merge of two camelCase dicts; `extra` wins."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def spec(*parts: Mapping[str, Any], **fields: Any) -> NodeClusterSpec:
    """A NodeClusterSpec through the same validation as the API: camelCase keys.

    `parts` (e.g. a placement and a deletion policy) and `fields` are deep-merged.
    """
    out: dict[str, Any] = {
        "providerRef": {"name": "sim"},
        "profile": {"machineType": "small"},
        "targetNodes": 3,
    }
    for part in (*parts, fields):
        out = merged(out, part)
    return NodeClusterSpec.model_validate(out)


def node(
    name: str,
    *,
    age: float = 3600,
    state: str | None = "Running",
    ready: bool = True,
    has_machine: bool = True,
    profile_hash: str = CURRENT,
    **fields: Any,
) -> NodeView:
    """A node `age` seconds old, running and ready on the current profile unless told.

    `error_reason` may be given as the word (as read back from the API)."""
    if isinstance(fields.get("error_reason"), str):
        fields["error_reason"] = Reason(fields["error_reason"])
    return NodeView(
        name=name,
        created_at=NOW - timedelta(seconds=age),
        state=state,
        ready=ready,
        has_machine=has_machine,
        profile_hash=profile_hash,
        **fields,
    )


def ready_nodes(count: int, prefix: str = "n", **fields: Any) -> list[NodeView]:
    """`count` healthy nodes named n0, n1, ..., older first."""
    return [node(f"{prefix}{i}", age=3600 - i, **fields) for i in range(count)]


def declared(
    the_spec: NodeClusterSpec | None = None,
    *,
    generation: int = 1,
    profile_hash: str = CURRENT,
    deleting: bool = False,
) -> Declared:
    """The cluster `web` as declared."""
    return Declared(
        name=CLUSTER,
        spec=the_spec if the_spec is not None else spec(),
        generation=generation,
        profile_hash=profile_hash,
        deleting=deleting,
    )


def observed(
    nodes: Iterable[NodeView] = (),
    *,
    now: datetime = NOW,
    previous: NodeClusterStatus | None = None,
    **fields: Any,
) -> Observed:
    """The world at `now` with these nodes."""
    for which in ("provider_problem", "no_new_machines"):
        problem = fields.get(which)
        if problem is not None:
            fields[which] = (Reason(problem[0]), problem[1])
    return Observed(
        nodes=tuple(nodes),
        now=now,
        previous=previous if previous is not None else NodeClusterStatus(),
        **fields,
    )


def execute(plan: Plan, nodes: Iterable[NodeView], now: datetime) -> list[NodeView]:
    """The node list right after the controller executed `plan`.

    Deleted nodes are `deleting` and no longer ready (the conservative view: their
    machine may already be draining), new nodes are Provisioning, power requests are
    recorded.
    """
    gone = {d.name for d in plan.deletes}
    power = {p.name: p.power_state for p in plan.power}
    out = [
        replace(n, deleting=True, ready=False, state="Deleting")
        if n.name in gone
        else replace(n, power_state=power.get(n.name, n.power_state))
        for n in nodes
    ]
    out += [
        NodeView(
            name=c.name,
            created_at=now,
            zone=c.zone,
            state="Provisioning",
            ready=False,
            power_state=c.power_state,
            profile_hash=CURRENT,
            has_machine=True,
        )
        for c in plan.creates
    ]
    return out


def settle(nodes: Iterable[NodeView]) -> list[NodeView]:
    """One watch round later: deleted machines are gone, new machines are up."""
    return [
        replace(n, state="Running", ready=True) if n.state == "Provisioning" else n
        for n in nodes
        if not n.deleting
    ]
