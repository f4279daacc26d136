"""Warm pools: machines made ahead of need, kept stopped (or running) outside the target.

The model is an Auto Scaling group's warm pool, spoken the Kubernetes way. Warm machines are
ClusterNodes of their cluster like any other, so every machine has its object, identity
tags and finalizer (nothing can leak, deleting the cluster deletes them), and are told apart
by one label, `nodecluster.io/pool: warm`:

    kubectl get clusternodes -l nodecluster.io/pool=warm             # the pool
    kubectl get clusternodes -l 'nodecluster.io/pool notin (warm)'   # the serving nodes

They are outside `targetNodes`: not in status.currentNodes / readyNodes (the scale
subresource's replicas), not in the scale selector (status.selector excludes the label once
the cluster has a pool, so an HPA never counts them), not in the Ready condition, the
rollout or the scale-in. `status.warmNodes` counts them, and the `WarmPool` condition says
whether the pool is full, filling, or held short (a quota, the cost limit, a suspended
Launch).

Moving a node between the pool and the serving nodes is one write of that node (its label
and its `spec.powerState` in one merge patch): a crash before it leaves the node where it
was, one after it where it went; it is never counted in both, nor in neither.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from nodecluster import GROUP
from nodecluster.api.common import CamelModel

POOL_LABEL = f"{GROUP}/pool"
"""The label of a warm node (value WARM): the pool's selector and the scale selector's
exclusion."""
WARM = "warm"

MAX_WARM_POOL_SIZE = 10_000
"""A bound on the number (a tenth of targetNodes' bound): a pool is a buffer, not a fleet."""

WarmPoolState = Literal["Stopped", "Running"]


class WarmPool(CamelModel):
    """Machines created ahead of need and kept outside the target (an ASG's warm pool)."""

    explain = (
        "Machines created ahead of need and kept outside targetNodes, as an Auto Scaling "
        "group's warm pool: ClusterNodes labelled nodecluster.io/pool=warm, not counted in "
        "currentNodes, readyNodes nor the scale selector (status.warmNodes counts them). A "
        "scale-out promotes them before it creates nodes."
    )

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    # Returning nodes to a pool of size 0 returns none: a scale-in would
                    # delete them all the same, which is surely not what was meant.
                    "rule": "!has(self.reuseOnScaleIn) || !self.reuseOnScaleIn || self.size > 0",
                    "message": "needs a pool to return nodes to: spec.warmPool.size must be "
                    "more than 0",
                    "fieldPath": ".reuseOnScaleIn",
                    "reason": "FieldValueInvalid",
                }
            ]
        }
    }

    size: int = Field(
        ge=0,
        le=MAX_WARM_POOL_SIZE,
        description=(
            "How many warm nodes to keep, in nodes (0 to 10000), beside targetNodes: a "
            "scale-out promotes them first (in the zones the placement wants), and the "
            "pool is refilled in the background, within the NodeProvider's quotas and cost "
            "limit (the WarmPool condition says when they hold it short). Lowering it "
            "deletes the surplus."
        ),
    )
    state: WarmPoolState = Field(
        default="Stopped",
        description=(
            "Stopped (default): warm machines are powered off once launched (Launch hooks "
            "run first) and started when promoted; stopped, they accrue no usage, as any "
            "stopped node, but hold their room in the NodeProvider's quotas and cost limit. "
            "Running: they run (and bill), and a promotion only relabels them."
        ),
    )
    reuse_on_scale_in: bool = Field(
        default=False,
        description=(
            "A scale-in returns healthy nodes of the current profile to the pool (powered "
            "as state says) while it is below size, instead of deleting them; the rest are "
            "deleted. Default false: a scale-in deletes."
        ),
    )
