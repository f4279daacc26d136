"""The Warning Event of each exhausted capacity choice (planning/fallback.py decides them).

One Event per exhaustion, not per refused node nor per reconcile: an offering is announced
when it enters `status.exhaustedCapacity`, or when a probe after its back-off is refused
again (a new `lastRefusalTime`). Posted before the status that records it, under a name
of the cluster's uid, the offering and that refusal time (announcements.py): a retry of a
failed write, or a restarted operator, posts none twice.
"""

from __future__ import annotations

from typing import Any

from nodecluster.api.fallback import ExhaustedCapacity
from nodecluster.api.nodecluster import NodeCluster, NodeClusterStatus
from nodecluster.api.reasons import Reason
from nodecluster.controllers.announcements import event_name, post_once
from nodecluster.controllers.world import World
from nodecluster.planning.fallback import describe, key_of


def newly_exhausted(old: NodeClusterStatus, new: NodeClusterStatus) -> list[ExhaustedCapacity]:
    """The entries of `new` that `old` did not hold with the same last refusal."""
    before = {(key_of(e), e.last_refusal_time) for e in old.exhausted_capacity or ()}
    return [
        e for e in new.exhausted_capacity or () if (key_of(e), e.last_refusal_time) not in before
    ]


async def announce_exhaustion(
    world: World, body: dict[str, Any], nc: NodeCluster, new: NodeClusterStatus
) -> None:
    """Post one Warning Event for each newly exhausted offering."""
    meta = nc.metadata
    for e in newly_exhausted(nc.status, new):
        seconds = int((e.retry_time - e.last_refusal_time).total_seconds())
        await post_once(
            world.api,
            event_name(
                meta.name, meta.uid, Reason.CAPACITY_EXHAUSTED, *key_of(e), e.last_refusal_time
            ),
            body,
            "Warning",
            Reason.CAPACITY_EXHAUSTED,
            f"the provider has no capacity for {describe(key_of(e))} (refused {e.refusals}x "
            f"in a row): new nodes are made from the next choice of "
            f"policies.capacityFallback; it is tried again in {seconds}s",
        )
