"""Capacity fallback: what a cluster's nodes may be made of when the first choice has no room.

A cloud can be out of a machine type in a zone, or out of Spot capacity, for minutes or
hours (EC2's `InsufficientInstanceCapacity`, the driver's `CapacityExceeded`). An ordered
list of alternatives lets the cluster keep its size meanwhile, as an Auto Scaling group's
mixed-instances overrides or a Karpenter NodePool's instance types and capacity types do.

Where it is declared: `spec.policies.capacityFallback`, not in the profile. The profile is
what every node looks like and its hash drives rollouts; alternatives are a behaviour (what
to do when the provider says no), so they are a policy, like placement. Kept out of the
profile, editing the list never rolls a node, and a node made from an alternative carries
the profile's hash (it is not outdated: only a change of the profile itself replaces
nodes, through the rollout policy, as in an ASG whose overrides change). The choice itself
is the profile's first: `profile.machineType`, `profile.capacityType`, and the zone the
placement policy picks; alternatives are tried after it, in order.

Each alternative changes only what it names (machineType, capacityType, zone): the rest
comes from the profile. Zones, when `policies.placement.zones` lists them, are the
placement policy's to choose: spread holds, so an alternative with a zone applies only to
nodes the spread puts in that zone ("in zone-b, a c5.large will also do"), and a zone the
placement does not list is refused by the API server. With no placement zones, an
alternative's zone is where its nodes go (there is no spread to break).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from nodecluster.api.common import CamelModel

CapacityType = Literal["OnDemand", "Spot"]
"""How the provider sells the machine: OnDemand, or Spot (cheaper, may be taken back)."""

MAX_ALTERNATIVES = 16
"""Alternatives a cluster may list: a fallback chain longer than this is a fleet of pools."""


class CapacityAlternative(CamelModel):
    """One alternative to the profile's choice: each field unset is the profile's."""

    explain = (
        "One alternative to the profile's choice: what it sets replaces the profile's "
        "machineType, capacityType or zone; what it leaves unset is the profile's. At least "
        "one of the three."
    )

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.machineType) || has(self.capacityType) || has(self.zone)",
                    "message": "an alternative must set machineType, capacityType or zone",
                }
            ]
        }
    }

    machine_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description="Machine type to use instead of profile.machineType (unset: the profile's).",
    )
    capacity_type: CapacityType | None = Field(
        default=None,
        description="OnDemand or Spot, instead of profile.capacityType (unset: the profile's).",
    )
    zone: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description=(
            "Zone of this alternative. With policies.placement.zones listed, it must be one of "
            "them, and the alternative applies only to nodes the spread places there; with no "
            "placement zones, nodes made from it go to this zone. Unset: wherever the "
            "placement puts the node."
        ),
    )


class CapacityFallbackPolicy(CamelModel):
    """What to create when the provider has no capacity for the profile's choice."""

    explain = (
        "What a node is made of when the provider has no capacity for the profile's choice "
        "(CapacityExceeded): alternatives of machine type, capacity type and zone, tried in "
        "order. Editing it replaces no node."
    )

    alternatives: list[CapacityAlternative] = Field(
        min_length=1,
        max_length=MAX_ALTERNATIVES,
        description=(
            "Tried in order after the profile's own choice when the provider reports "
            "CapacityExceeded for it: a node refused for capacity is replaced by one made "
            "from the next choice not exhausted. Exhausted choices are tried again after a "
            "back-off (1 minute, doubling to 10 minutes), on new nodes only: nodes made from an "
            "alternative stay until the rollout, deletion or health policy replaces them."
        ),
    )


class ExhaustedCapacity(CamelModel):
    """One choice the provider refused for capacity, and when it is tried again."""

    explain = (
        "One choice (machine type, capacity type, zone) the provider refused for capacity, "
        "and from when it is tried again."
    )

    machine_type: str = Field(description="The machine type the provider had no room for.")
    capacity_type: CapacityType | None = Field(
        default=None, description="Capacity type refused (unset: the provider's default)."
    )
    zone: str | None = Field(
        default=None, description="Zone refused (unset: the provider's default zone)."
    )
    refusals: int = Field(
        ge=1,
        description="How many times in a row the provider refused it: each refusal doubles "
        "the wait before the next try (1 minute, up to 10 minutes).",
    )
    last_refusal_time: datetime = Field(description="When the provider last refused it.")
    retry_time: datetime = Field(
        description="From when a new node may be made from it again (one at a time: a probe)."
    )
