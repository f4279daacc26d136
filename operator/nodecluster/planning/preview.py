"""What a changed NodeCluster spec would make the operator do: the pure part of `plan`.

`nodecluster-operator plan -f CHANGED.yaml` reads the live cluster and hands its nodes
here with the live and the changed declaration. Nothing is decided here: every batch is
the real planner's (`planner.plan`), called on a simulated state, the way the controller
calls it on the real one. A rollout's batches under maxSurge/maxUnavailable are therefore
what the planner's budget allows step after step, not a formula of our own that would
drift from it: plan, carry the plan out on the simulated nodes, plan again, until the
planner has nothing left to do.

The simulation assumes each batch completes before the next is planned: a new node comes
up Running and ready with the changed profile, a deleted one is gone, a power change or a
reboot is done. The operator, too, plans its next step once the last one shows (a new
node ready frees the budget for the next deletion); what it cannot promise, and this
cannot know, is that the provider has the capacity and the quota at that time, or how long
each batch takes. The names of new nodes are the operator's choice when it creates them
(random, `<cluster>-xxxxx`): only their number and zones are predicted. Which nodes go on a
scale-in or a rollout is the planner's deletion ranking, deterministic unless the deletion
criteria are Random.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from nodecluster.api.nodecluster import RolloutPolicy
from nodecluster.planning.model import Declared, NodeView, Observed
from nodecluster.planning.planner import Blocker, DeletionCause, Hold, Plan, plan

MAX_BATCHES = 200
"""Steps simulated at most: a rollout of a few hundred nodes one by one fits; a plan still
changing after that many is reported as not settling (a bug, or a budget of 0)."""

REPLACING: frozenset[DeletionCause] = frozenset(
    {"Rollout", "Expired", "Remediation", "CapacityFallback"}
)
"""Deletions whose node gets a successor: the machine is replaced, not removed."""


@dataclass(frozen=True)
class SpecChange:
    """One field of the spec that the change sets to another value (dotted camelCase
    path; None: absent)."""

    path: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Batch:
    """One step of the change: what the planner decides on the state the steps before
    left, carried out before the next step is planned."""

    plan: Plan
    zones: Mapping[str, str | None]
    """The zone of each node the step deletes, powers or reboots (new nodes carry theirs)."""


@dataclass(frozen=True)
class ZoneChange:
    """What the change does in one zone (None: nodes without a zone)."""

    zone: str | None
    before: int
    after: int
    creates: int
    deletes: tuple[tuple[str, DeletionCause], ...]
    power: tuple[tuple[str, str], ...]
    reboots: tuple[str, ...]
    warm_creates: int = 0
    """New warm nodes (the pool's refill), not counted in `creates`."""
    moves: tuple[tuple[str, bool], ...] = ()
    """(node, into the pool): promotions (False) and returns to the pool (True)."""


@dataclass(frozen=True)
class Preview:
    """The whole prediction."""

    cluster: str
    spec_changes: tuple[SpecChange, ...]
    profile_changed: bool
    rolled: bool
    """Whether a profile change is rolled out (strategy RollingUpdate): its nodes replaced."""
    batches: tuple[Batch, ...]
    settled: bool
    """Whether the planner had nothing left to do within MAX_BATCHES steps."""
    before: tuple[NodeView, ...]
    after: tuple[NodeView, ...]
    desired: int
    criteria: str
    """The deletion criteria of the changed spec."""
    rollout: RolloutPolicy
    """The rollout policy of the changed spec."""
    first: Plan
    """The changed spec's plan on the nodes as they are (what the operator does first;
    empty, with its blockers and holds, when there is nothing to do)."""
    in_progress: Plan
    """What the operator does now under the live spec (empty when it is converged): not
    caused by the change, shown apart so it is not taken for the change's doing."""

    @property
    def creates(self) -> int:
        """New serving nodes over all batches (warm ones: `warm_creates`)."""
        return sum(1 for b in self.batches for c in b.plan.creates if not c.warm)

    @property
    def warm_creates(self) -> int:
        """New warm nodes (the warm pool's refill) over all batches."""
        return sum(1 for b in self.batches for c in b.plan.creates if c.warm)

    @property
    def moves(self) -> tuple[tuple[str, bool], ...]:
        """(node, into the pool) of every promotion and return, in batch order."""
        return tuple((m.name, m.warm) for b in self.batches for m in b.plan.moves)

    @property
    def deletes(self) -> tuple[tuple[str, DeletionCause], ...]:
        """Every node deleted, and why, in the order of the batches."""
        return tuple((d.name, d.reason) for b in self.batches for d in b.plan.deletes)

    @property
    def replaced(self) -> tuple[str, ...]:
        """Existing nodes whose machine is replaced (deleted for a successor)."""
        return tuple(name for name, why in self.deletes if why in REPLACING)

    @property
    def deletions_certain(self) -> bool:
        """Whether the nodes named for deletion are the ones that go. With the deletion
        criteria Random, the operator draws among equal nodes when it deletes (a new draw
        every reconcile): the preview's names are one possible draw, and the zones a
        rollout leaves may differ with them."""
        ranked = any(why in ("ScaleIn", "Rollout") for _, why in self.deletes)
        return not ranked or self.criteria != "Random"

    @property
    def replaces_machines(self) -> bool:
        """Whether any existing machine is replaced."""
        return bool(self.replaced)

    @property
    def blockers(self) -> tuple[Blocker, ...]:
        """Why the plan does less than the declaration asks, each said once."""
        return tuple(dict.fromkeys(x for b in self.batches for x in b.plan.blockers)) or tuple(
            self.first.blockers
        )

    @property
    def held(self) -> tuple[Hold, ...]:
        """What suspended processes hold back, each said once."""
        return tuple(dict.fromkeys(h for b in self.batches for h in b.plan.held)) or tuple(
            self.first.held
        )

    @property
    def changed(self) -> bool:
        """Whether applying the change changes anything: the spec, or a machine."""
        return bool(self.spec_changes) or bool(self.batches)

    def zones(self) -> list[ZoneChange]:
        """The change per zone, zones by name, nodes without a zone last."""
        before = Counter(n.zone for n in serving(self.before))
        after = Counter(n.zone for n in serving(self.after))
        creates: Counter[str | None] = Counter()
        warm_creates: Counter[str | None] = Counter()
        deletes: dict[str | None, list[tuple[str, DeletionCause]]] = {}
        power: dict[str | None, list[tuple[str, str]]] = {}
        reboots: dict[str | None, list[str]] = {}
        moves: dict[str | None, list[tuple[str, bool]]] = {}
        for batch in self.batches:
            p = batch.plan
            creates.update(c.zone for c in p.creates if not c.warm)
            warm_creates.update(c.zone for c in p.creates if c.warm)
            for m in p.moves:
                moves.setdefault(batch.zones.get(m.name), []).append((m.name, m.warm))
            for d in p.deletes:
                deletes.setdefault(batch.zones.get(d.name), []).append((d.name, d.reason))
            for s in p.power:
                power.setdefault(batch.zones.get(s.name), []).append((s.name, s.power_state))
            for r in p.reboots:
                reboots.setdefault(batch.zones.get(r.name), []).append(r.name)
        names = set(before) | set(after) | set(creates) | set(warm_creates) | set(deletes)
        names |= set(power) | set(reboots) | set(moves)
        return [
            ZoneChange(
                zone=zone,
                before=before[zone],
                after=after[zone],
                creates=creates[zone],
                deletes=tuple(sorted(deletes.get(zone, ()))),
                power=tuple(sorted(power.get(zone, ()))),
                reboots=tuple(sorted(reboots.get(zone, ()))),
                warm_creates=warm_creates[zone],
                moves=tuple(sorted(moves.get(zone, ()))),
            )
            for zone in sorted(names, key=lambda z: (z is None, z or ""))
        ]


def spec_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[SpecChange]:
    """The fields that differ between two wire specs, as dotted paths (lists compared whole:
    a zone list or a toleration list is one decision), in path order."""
    out: list[SpecChange] = []

    def walk(path: str, a: Any, b: Any) -> None:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for key in sorted(set(a) | set(b)):
                walk(f"{path}.{key}" if path else key, a.get(key), b.get(key))
        elif _canonical(a) != _canonical(b):
            out.append(SpecChange(path, a, b))

    walk("", before, after)
    return out


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def carried_out(
    p: Plan, nodes: Sequence[NodeView], declared: Declared, observed: Observed
) -> list[NodeView]:
    """The nodes once `p` is done: deleted nodes (and those that were being deleted) gone,
    new ones Running and ready with the declared profile (Stopped if made stopped), power
    changes and reboots done."""
    gone = {d.name for d in p.deletes}
    power = {s.name: s.power_state for s in p.power}
    rebooted = {r.name for r in p.reboots}
    moved = {m.name: m for m in p.moves}
    out: list[NodeView] = []
    for node in nodes:
        if node.deleting or node.name in gone:
            continue
        n = node
        if n.name in moved:
            # Promoted from the warm pool, or returned to it: one write, label and power.
            move = moved[n.name]
            running = move.power_state == "Running"
            n = replace(
                n,
                warm=move.warm,
                power_state=move.power_state,
                state="Running" if running else "Stopped",
                ready=running,
            )
        if n.name in power:
            running = power[n.name] == "Running"
            n = replace(
                n,
                power_state=power[n.name],
                state="Running" if running else "Stopped",
                ready=running,
            )
        if n.name in rebooted:
            n = replace(
                n,
                state="Running",
                ready=True,
                error_reason=None,
                error_message=None,
                unhealthy_since=None,
                reboot_pending=False,
            )
        out.append(n)
    profile = declared.spec.profile
    for c in p.creates:
        running = c.power_state == "Running"
        out.append(
            NodeView(
                name=c.name,
                created_at=observed.now,
                zone=c.zone,
                state="Running" if running else "Stopped",
                ready=running,
                power_state=c.power_state,
                profile_hash=declared.profile_hash,
                has_machine=True,
                machine_type=c.machine_type or profile.machine_type,
                capacity_type=c.capacity_type or profile.capacity_type,
                warm=c.warm,
            )
        )
    return out


def simulate(
    declared: Declared, observed: Observed, max_batches: int = MAX_BATCHES
) -> tuple[list[Batch], list[NodeView], bool]:
    """Step the planner from `observed` until it has nothing to do: the batches, the nodes
    at the end, and whether it settled within `max_batches`."""
    nodes = list(observed.nodes)
    headroom = observed.headroom
    batches: list[Batch] = []
    for _ in range(max_batches):
        now = replace(observed, nodes=tuple(nodes), headroom=headroom)
        p = plan(declared, now)
        if p.empty:
            return batches, nodes, True
        zone_of = {n.name: n.zone for n in nodes}
        touched = [
            *(d.name for d in p.deletes),
            *(s.name for s in p.power),
            *(r.name for r in p.reboots),
            *(m.name for m in p.moves),
        ]
        batches.append(Batch(p, {name: zone_of.get(name) for name in touched}))
        if headroom is not None:
            headroom += len(p.deletes) - len(p.creates)
        nodes = carried_out(p, nodes, declared, now)
    return batches, nodes, False


def preview(live: Declared, changed: Declared, observed: Observed) -> Preview:
    """What applying `changed` over `live` does to the nodes `observed` holds."""
    batches, after, settled = simulate(changed, observed)
    first = batches[0].plan if batches else plan(changed, observed)
    outdated = changed.profile_hash != live.profile_hash
    return Preview(
        cluster=changed.name,
        spec_changes=tuple(spec_changes(live.spec.wire(), changed.spec.wire())),
        profile_changed=outdated,
        rolled=outdated and changed.spec.policies.rollout.strategy == "RollingUpdate",
        batches=tuple(batches),
        settled=settled,
        before=observed.nodes,
        after=tuple(after),
        desired=first.desired,
        criteria=changed.spec.policies.deletion.criteria,
        rollout=changed.spec.policies.rollout,
        first=first,
        in_progress=plan(live, observed),
    )


def replacement_summary(p: Preview) -> str:
    """One line first in the output: whether the change replaces existing machines, why."""
    replaced = p.replaced
    by_cause = Counter(why for _, why in p.deletes if why in REPLACING)
    profile = ", ".join(c.path for c in p.spec_changes if c.path.startswith("profile"))
    profile = profile or "profile"
    rollout = p.rollout
    if p.profile_changed and p.rolled and replaced:
        return (
            f"Replaces existing machines: yes, {len(replaced)} of {_active(p.before)} nodes: "
            f"the profile changes ({profile}) and is rolled out in {_rollout_batches(p)} "
            f"batches (maxSurge {rollout.max_surge}, maxUnavailable {rollout.max_unavailable})"
        )
    if replaced:
        causes = ", ".join(f"{n} {cause_text(why)}" for why, n in sorted(by_cause.items()))
        return f"Replaces existing machines: yes, {_nodes(len(replaced))} ({causes})"
    if p.profile_changed and p.rolled:
        why = "the cluster has no nodes" if not _active(p.before) else "held back or blocked"
        return (
            f"Replaces existing machines: no, not now ({why}): the profile changes "
            f"({profile}), and the nodes built from the old one stay until it is rolled out"
        )
    if p.profile_changed:
        return (
            f"Replaces existing machines: no. The profile changes ({profile}) but "
            "rollout.strategy is OnDelete: existing nodes keep their machines until deleted, "
            "new nodes get the new profile"
        )
    changed = ", ".join(c.path for c in p.spec_changes) or "nothing"
    return f"Replaces existing machines: no (the profile is unchanged; changes: {changed})"


def _nodes(count: int) -> str:
    return f"{count} node" + ("" if count == 1 else "s")


_CAUSES: dict[DeletionCause, str] = {
    "Rollout": "built from an older profile",
    "Expired": "past maxNodeLifetimeSeconds",
    "Remediation": "unhealthy, recreated",
    "CapacityFallback": "refused for capacity, made from another choice",
    "ScaleIn": "scale-in",
    "Terminating": "terminating",
    "WarmPool": "warm node the pool replaces or no longer holds",
}
"""Why a node goes, for people."""


def cause_text(cause: DeletionCause) -> str:
    """Why a node goes, in words."""
    return _CAUSES.get(cause, cause)


def serving(nodes: Iterable[NodeView]) -> list[NodeView]:
    """The nodes that count toward the target: not being deleted, not in the warm pool."""
    return [n for n in nodes if not n.deleting and not n.warm]


def warm_count(nodes: Iterable[NodeView]) -> int:
    """The warm pool's nodes (not being deleted)."""
    return sum(1 for n in nodes if not n.deleting and n.warm)


def _active(nodes: Iterable[NodeView]) -> int:
    return len(serving(nodes))


def _rollout_batches(p: Preview) -> int:
    return sum(1 for b in p.batches if b.plan.rolling) or len(p.batches)
