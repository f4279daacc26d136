"""Pure rules of one-off operations: new targets for scaling and node selection by filter.

Senlin's semantics for adjustments, because users of node clusters already know them:
ExactCapacity sets the target; ChangeInCapacity adds a (signed) number; ChangeInPercentage
adds that percent of the current target, at least `minStep` nodes. Outside
[minNodes, maxNodes] a request is refused, unless the policy says `bestEffort`, which clamps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from nodecluster.api.nodecluster import NodeClusterSpec
from nodecluster.api.operation import NodeFilter


class OperationRefused(Exception):
    """The operation cannot be carried out as asked; the message says why."""


def new_target(spec: NodeClusterSpec, direction: int, count: int | None) -> int:
    """The target after a ScaleOut (direction +1) or ScaleIn (-1) of `count`."""
    policy = spec.policies.scaling
    current = spec.target_nodes
    amount = 1 if count is None else count
    if policy.adjustment_type == "ExactCapacity":
        target = amount
    elif policy.adjustment_type == "ChangeInCapacity":
        target = current + direction * amount
    else:
        step = max(policy.min_step, math.ceil(current * amount / 100)) if amount else 0
        target = current + direction * step
    low = spec.min_nodes if spec.min_nodes is not None else 0
    high = spec.max_nodes
    if target < low or (high is not None and target > high):
        if not policy.best_effort:
            bounds = f"[{low}, {high if high is not None else 'unbounded'}]"
            raise OperationRefused(
                f"the new target {target} is outside minNodes/maxNodes {bounds}; "
                "set policies.scaling.bestEffort to clamp instead"
            )
        target = max(low, target)
        if high is not None:
            target = min(high, target)
    return max(0, target)


def cooldown_left(spec: NodeClusterSpec, last_scale: datetime | None, now: datetime) -> float:
    """Seconds until the scaling policy's cooldown allows another adjustment."""
    cooldown = spec.policies.scaling.cooldown_seconds
    if not cooldown or last_scale is None:
        return 0.0
    return max(0.0, (last_scale + timedelta(seconds=cooldown) - now).total_seconds())


@dataclass(frozen=True)
class NodeFacts:
    """What a node filter can match on."""

    name: str
    labels: dict[str, str]
    provider_id: str | None
    addresses: tuple[str, ...]


def chooses_nodes(flt: NodeFilter | None) -> bool:
    """Whether a filter gives any criterion (without one it matches every node): the CEL
    rule of `NodeClusterOperationSpec`, for operations stored before it."""
    if flt is None:
        return False
    labels = flt.selector.match_labels if flt.selector is not None else {}
    return bool(flt.names or flt.provider_ids or flt.addresses or labels)


def select_nodes(nodes: Sequence[NodeFacts], flt: NodeFilter | None) -> list[NodeFacts]:
    """Nodes matching every given criterion; refuse names/IDs/addresses that match nothing.

    Naming a node that does not exist is refused rather than ignored: an operator who
    asks to remove `web-7` and gets "succeeded" while nothing happened is misled.
    """
    if flt is None:
        return list(nodes)
    _require_known("nodes", flt.names, {n.name for n in nodes})
    _require_known(
        "provider IDs", flt.provider_ids, {n.provider_id for n in nodes if n.provider_id}
    )
    _require_known("addresses", flt.addresses, {a for n in nodes for a in n.addresses})
    chosen = []
    for n in nodes:
        if flt.names and n.name not in flt.names:
            continue
        if flt.provider_ids and n.provider_id not in flt.provider_ids:
            continue
        if flt.addresses and not set(n.addresses) & set(flt.addresses):
            continue
        if flt.selector and any(n.labels.get(k) != v for k, v in flt.selector.match_labels.items()):
            continue
        chosen.append(n)
    return chosen


def _require_known(what: str, wanted: Iterable[str], known: set[str]) -> None:
    missing = sorted(set(wanted) - known)
    if missing:
        raise OperationRefused(f"no such {what} in the cluster: {', '.join(missing)}")
