"""Adopting machines made without the operator: which qualify, as which nodes (pure).

An Adopt operation looks at the machines its selection matches at the cluster's
NodeProvider and decides, machine by machine, in this order:

1. a machine anything says is someone's (an installation's identity tags, any identity
   tag, or an earlier version's cluster tag: `providers.identity.claimed_by`) is refused,
   naming the owner, and never touched;
2. a machine being deleted or broken (`Deleting`, `Failed`) is refused: it would be
   replaced as soon as it was a node;
3. a machine whose type is not the profile's `machineType`, or whose zone is not one of
   the placement policy's zones (when it names any), is refused, as Senlin refuses a node
   of another profile by default. Adopting it and letting a rollout replace it would
   delete the owner's machine moments after taking it over, which is not what "adopt"
   promises; one that fits is never replaced for having been adopted (it counts as built
   from the current profile, whose image and labels it cannot be checked against);
4. beyond `spec.adopt.limit`, the rest are refused as over the limit.

Each machine adopted becomes a new ClusterNode (a fresh `<cluster>-xxxxx` name, drawn from
a generator seeded by the operation's uid, so a retry draws the same names) and the target
rises by as many. The whole decision is recorded in the operation's status before
anything is written elsewhere, and the operation carries it out from that record.

While an adoption raises the target and creates its nodes, the cluster carries
`ADOPTING_ANNOTATION` (written in the same patch as the target), and its reconcile makes
no new node (`hold_for_adoption`): the target already counts the adopted machines, and a
reconcile between the two writes (after a crash, a failed write, a restart) would
otherwise create fresh machines for the nodes the adoption is about to create.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from nodecluster import GROUP
from nodecluster.api.adopt import (
    MAX_ADOPTED,
    MAX_LISTED,
    AdoptCandidate,
    AdoptionReport,
    AdoptSelection,
)
from nodecluster.api.nodecluster import NodeClusterSpec
from nodecluster.api.reasons import Reason
from nodecluster.planning.planner import Blocker, Plan, new_names

ADOPTING_ANNOTATION = f"{GROUP}/adopting"
"""On a NodeCluster: the Adopt operation (its name) whose target is raised and whose nodes
are being created; the cluster creates no node of its own meanwhile."""

ADOPT_MACHINE_ANNOTATION = f"{GROUP}/adopt-machine"
"""On a ClusterNode an Adopt operation created: the provider id of the machine it takes
over instead of creating one. It stays, as the record of where the machine came from."""

UNUSABLE_STATES = frozenset({"Deleting", "Failed"})
"""Machine states refused: the machine is going, or broken (the node would be replaced)."""


@dataclass(frozen=True)
class MachineFacts:
    """What the decision needs of one machine the selection matched."""

    provider_id: str
    machine_type: str
    zone: str | None
    state: str
    owner: str | None
    """Whose it is (`claimed_by`), None when nothing says it is anyone's."""


def matches_id(given: str, provider_id: str) -> bool:
    """Whether a provider id of the selection names this machine: the same id, or its last
    part (an EC2 instance id for `aws:///<az>/<id>`)."""
    return given == provider_id or provider_id.endswith(f"/{given}")


def refusal(spec: NodeClusterSpec, machine: MachineFacts) -> str | None:
    """Why a machine cannot join this cluster (rules 1 to 3 above); None if it can."""
    if machine.owner is not None:
        return f"owned: {machine.owner}"
    if machine.state in UNUSABLE_STATES:
        return f"machine is {machine.state}"
    wanted = spec.profile.machine_type
    if machine.machine_type != wanted:
        return (
            f"machine type {machine.machine_type!r} is not the profile's {wanted!r} "
            "(spec.profile.machineType)"
        )
    zones = [z.name for z in spec.policies.placement.zones]
    if zones and machine.zone not in zones:
        return f"zone {machine.zone!r} is not one of the placement policy's zones {zones}"
    return None


def plan_adoption(
    cluster: str,
    spec: NodeClusterSpec,
    selection: AdoptSelection,
    machines: Sequence[MachineFacts],
    taken: set[str],
    seed: str,
) -> AdoptionReport:
    """The decision for every matched machine, and the node each adopted one becomes
    (names not in `taken`, drawn from `seed`)."""
    ordered = sorted(machines, key=lambda m: m.provider_id)
    limit = selection.limit or MAX_ADOPTED
    verdicts: list[tuple[MachineFacts, str | None]] = []
    accepted = 0
    for m in ordered:
        why = refusal(spec, m)
        if why is None and accepted >= limit:
            why = f"over the limit: this operation adopts at most {limit} (spec.adopt.limit)"
        accepted += why is None
        verdicts.append((m, why))
    names = iter(new_names(cluster, set(taken), accepted, random.Random(seed)))
    adopted = [
        AdoptCandidate(
            provider_id=m.provider_id,
            machine_type=m.machine_type,
            zone=m.zone,
            state=m.state,
            verdict="Adopt",
            node=next(names),
        )
        for m, why in verdicts
        if why is None
    ]
    refused = [
        AdoptCandidate(
            provider_id=m.provider_id,
            machine_type=m.machine_type,
            zone=m.zone,
            state=m.state,
            verdict="Refused",
            reason=why,
        )
        for m, why in verdicts
        if why is not None
    ]
    listed = (adopted + refused)[:MAX_LISTED]
    unmatched = [
        given
        for given in selection.provider_ids
        if not any(matches_id(given, m.provider_id) for m in machines)
    ]
    return AdoptionReport(
        matched=len(machines),
        adopted=len(adopted),
        machines=listed,
        more=len(machines) - len(listed),
        unmatched=unmatched,
    )


def adoption_problem(spec: NodeClusterSpec, report: AdoptionReport) -> str | None:
    """Why the adoption as decided cannot be carried out at all; None if it can."""
    if report.matched == 0:
        return "spec.adopt matches no live machine at the provider"
    if report.adopted == 0:
        first = report.machines[0]
        return (
            f"none of the {report.matched} machines spec.adopt matches can be adopted "
            f"({first.provider_id}: {first.reason})"
        )
    target = spec.target_nodes + report.adopted
    if spec.max_nodes is not None and target > spec.max_nodes:
        return (
            f"adopting {report.adopted} machines would raise targetNodes from "
            f"{spec.target_nodes} to {target}, above maxNodes ({spec.max_nodes}): "
            "raise maxNodes, or adopt fewer (spec.adopt.limit)"
        )
    return None


def hold_for_adoption(plan: Plan, adopting: str | None) -> Plan:
    """The plan without its creates, nor its promotions from the warm pool, while an
    adoption is creating the cluster's nodes (`adopting`: the operation, from
    `ADOPTING_ANNOTATION`); unchanged otherwise. A promotion fills the raised target as a
    create would: the adopted nodes would then be a surplus a scale-in may choose, and
    deleting the owner's machine is what adoption must never do."""
    if adopting is None:
        return plan
    moves = tuple(m for m in plan.moves if m.warm)
    if not plan.creates and len(moves) == len(plan.moves):
        return plan
    blocker = Blocker(
        Reason.ADOPTING,
        f"operation {adopting} is adopting machines: their nodes are being created, and "
        "no other node is made or taken from the warm pool until they are",
    )
    return replace(plan, creates=(), moves=moves, blockers=(*plan.blockers, blocker))
