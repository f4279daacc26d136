"""The Adopt operation's fields: which machines to take over, and what it found.

Senlin adopts a server into a cluster after a preview; here a `NodeClusterOperation` with
`action: Adopt` does it, `dryRun: true` being the preview. Its own module so that the
operation's model (`operation.py`) only gains two fields and one status field.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from nodecluster.api.common import CamelModel

MAX_ADOPTED = 100
"""The most machines one operation adopts (`adopt.limit` cannot say more): enough to move
a fleet over in a few operations, few enough that each operation's record lists every one
of them (`MAX_LISTED`)."""

MAX_LISTED = 100
"""The most machines an operation's status lists; how many more there were is counted
(`status.adoption.more`). Machines it adopts (or would) come first, so all of them are
listed."""

MAX_SELECTED_IDS = 100
"""The most provider ids `adopt.providerIds` names."""

ADOPT_ONE_OF = "spec.adopt takes exactly one of providerIds or tags"

AdoptVerdict = Literal["Adopt", "Refused"]

ProviderId = Annotated[str, Field(min_length=1, max_length=256)]
TagValue = Annotated[str, Field(max_length=256)]
"""EC2's limit on a tag value (and far above any provider id): bounded, so that the CEL
rules' cost stays within the API server's budget."""


class AdoptSelection(CamelModel):
    """Which machines at the cluster's NodeProvider to adopt: by provider id, or by tags."""

    explain: ClassVar[str] = (
        "Which machines at the cluster's NodeProvider an Adopt operation takes over: those "
        "with the given providerIds, or those carrying all the given tags (exactly one of "
        "the two), at most `limit` of them."
    )
    """For `kubectl explain`: every model's `explain` text is what the schema says of it
    once the branch that reads these texts (api/crds.py) is merged; unused until then."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.providerIds) && size(self.providerIds) > 0) "
                    "!= (has(self.tags) && size(self.tags) > 0)",
                    "message": ADOPT_ONE_OF,
                }
            ]
        }
    }

    provider_ids: list[ProviderId] = Field(
        default_factory=list,
        max_length=MAX_SELECTED_IDS,
        description=(
            "The machines' provider ids, as the provider reports them (aws: "
            "aws:///<zone>/<instance id>, or the bare instance id; simulator: sim://...). "
            "An id that matches no live machine is listed in status.adoption.unmatched."
        ),
    )
    tags: dict[str, TagValue] = Field(
        default_factory=dict,
        max_length=10,
        description=(
            "Every machine carrying all of these tags (aws: instance tags; simulator: "
            "its labels and tags)."
        ),
    )
    limit: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ADOPTED,
        description=(
            f"Adopt at most this many of the machines that qualify, in provider id order "
            f"(the rest are listed as refused: over the limit); {MAX_ADOPTED} when absent."
        ),
    )


class AdoptCandidate(CamelModel):
    """One machine the selection matched, and what the operation does with it."""

    explain: ClassVar[str] = (
        "One machine spec.adopt matched: what the provider says of it, and whether it is "
        "(with dryRun: would be) adopted, as which ClusterNode, or refused, and why."
    )

    provider_id: str = Field(
        description=(
            "The machine's id at its provider, as a ClusterNode's status.providerId and "
            "spec.adopt.providerIds give it."
        )
    )
    machine_type: str = Field(
        default="",
        description="Its machine type, as the provider reports it. Default empty: not known.",
    )
    zone: str | None = Field(default=None, description="Its zone, as the provider says.")
    state: str = Field(
        default="",
        description=(
            "Its state (Running, Stopped, Deleting, ...) when the operation looked. Default "
            "empty: not known."
        ),
    )
    verdict: AdoptVerdict = Field(
        description="Adopt (it becomes node `node`; with dryRun: would) or Refused."
    )
    node: str | None = Field(default=None, description="The ClusterNode it becomes (Adopt only).")
    reason: str | None = Field(default=None, description="Why it is refused.")


class AdoptionReport(CamelModel):
    """What an Adopt operation found at the provider and decided, recorded before it acts
    (a restart carries on with exactly these machines and node names)."""

    explain: ClassVar[str] = (
        "What an Adopt operation found at the provider and decided, recorded before it "
        "changes anything: a restart carries on with exactly these machines and node names."
    )

    matched: int = Field(
        default=0,
        ge=0,
        description="How many machines spec.adopt matched, owned or not. Default 0.",
    )
    adopted: int = Field(
        default=0,
        ge=0,
        description="Of those, how many it adopts (dryRun: would adopt). Default 0.",
    )
    machines: list[AdoptCandidate] = Field(
        default_factory=list,
        max_length=MAX_LISTED,
        description=(
            f"The matched machines, those adopted first; at most {MAX_LISTED} "
            "(`more` counts the rest)."
        ),
    )
    more: int = Field(
        default=0,
        ge=0,
        description="How many matched machines `machines` leaves out (its cap). Default 0.",
    )
    unmatched: list[str] = Field(
        default_factory=list,
        max_length=MAX_SELECTED_IDS,
        description="Provider ids of spec.adopt.providerIds that match no live machine.",
    )
