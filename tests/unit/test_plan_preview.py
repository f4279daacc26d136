"""The plan preview (planning/preview.py): what a changed spec does to the nodes as they
are, batch by batch, as the planner steps through it. Table tests over the builders'
fixed clock: each case says what would be wrong if the preview drifted from the planner
(a batch the rollout budget forbids, a replacement not announced, a change not seen)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, get_args

import pytest
from builders import CURRENT, declared, node, observed, ready_nodes, spec

from nodecluster.planning.model import NodeView
from nodecluster.planning.planner import DeletionCause, plan
from nodecluster.planning.preview import (
    Preview,
    cause_text,
    preview,
    replacement_summary,
    simulate,
    spec_changes,
)

NEW = "hash-new"
ZONES = {"policies": {"placement": {"zones": [{"name": "zone-a"}, {"name": "zone-b"}]}}}
OLDEST = {"policies": {"deletion": {"criteria": "OldestFirst"}}}


def zoned(count: int, **fields: Any) -> list[NodeView]:
    """`count` ready nodes n0.. (n0 oldest), alternating zone-a and zone-b."""
    return [
        node(f"n{i}", age=3600 - i, zone=("zone-a", "zone-b")[i % 2], **fields)
        for i in range(count)
    ]


@dataclass
class Case:
    id: str
    change: dict[str, Any]
    nodes: list[NodeView] = field(default_factory=lambda: zoned(4))
    new_profile: bool = False
    live: dict[str, Any] = field(default_factory=dict)
    creates: int = 0
    deletes: list[tuple[str, str]] = field(default_factory=list)
    """(node, reason) in batch order."""
    batches: int = 0
    replaces: bool = False
    summary: str = ""
    after: dict[str | None, int] = field(default_factory=dict)
    power: int = 0


def run(case: Case) -> Preview:
    live = spec(ZONES, OLDEST, {"targetNodes": 4}, case.live)
    changed = spec(ZONES, OLDEST, {"targetNodes": 4}, case.live, case.change)
    new_hash = NEW if case.new_profile else CURRENT
    return preview(declared(live), declared(changed, profile_hash=new_hash), observed(case.nodes))


CASES = [
    Case(
        "scale-out-spreads-over-zones",
        {"targetNodes": 7},
        creates=3,
        batches=1,
        summary="Replaces existing machines: no (the profile is unchanged; changes: targetNodes)",
        after={"zone-a": 4, "zone-b": 3},
    ),
    Case(
        "scale-in-takes-the-oldest-keeping-the-spread",
        {"targetNodes": 2},
        deletes=[("n0", "ScaleIn"), ("n1", "ScaleIn")],
        batches=1,
        after={"zone-a": 1, "zone-b": 1},
    ),
    Case(
        "surge-one-replaces-one-at-a-time",
        {"policies": {"rollout": {"maxSurge": 1, "maxUnavailable": 0}}},
        new_profile=True,
        creates=4,
        deletes=[("n0", "Rollout"), ("n1", "Rollout"), ("n2", "Rollout"), ("n3", "Rollout")],
        batches=5,
        replaces=True,
        summary="Replaces existing machines: yes, 4 of 4 nodes: the profile changes",
        # Replacements go where the outdated nodes were: the zones end as even as they
        # began (this preview showed 3/1 before the planner counted every node's zone).
        after={"zone-a": 2, "zone-b": 2},
    ),
    Case(
        "unavailable-two-replaces-two-at-a-time",
        {"policies": {"rollout": {"maxSurge": 0, "maxUnavailable": 2}}},
        new_profile=True,
        creates=4,
        deletes=[("n0", "Rollout"), ("n1", "Rollout"), ("n2", "Rollout"), ("n3", "Rollout")],
        batches=2,
        replaces=True,
        after={"zone-a": 2, "zone-b": 2},
    ),
    Case(
        "on-delete-keeps-the-machines",
        {"policies": {"rollout": {"strategy": "OnDelete"}}},
        new_profile=True,
        summary="Replaces existing machines: no. The profile changes",
        after={"zone-a": 2, "zone-b": 2},
    ),
    Case(
        "stopping-changes-power-only",
        {"desiredState": "Stopped"},
        power=4,
        batches=1,
        after={"zone-a": 2, "zone-b": 2},
    ),
    Case(
        "an-unhealthy-node-is-replaced-whatever-the-change",
        {"targetNodes": 4},
        nodes=[*zoned(3), node("n3", zone="zone-b", state="Failed", ready=False)],
        creates=1,
        deletes=[("n3", "Remediation")],
        batches=1,
        replaces=True,
        summary="Replaces existing machines: yes, 1 node (1 unhealthy, recreated)",
        after={"zone-a": 2, "zone-b": 2},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_preview_of_a_change(case: Case) -> None:
    p = run(case)
    assert p.creates == case.creates
    assert list(p.deletes) == case.deletes
    assert len(p.batches) == case.batches
    assert p.replaces_machines is case.replaces
    assert replacement_summary(p).startswith(case.summary)
    assert {z.zone: z.after for z in p.zones()} == case.after
    assert sum(len(z.power) for z in p.zones()) == case.power
    assert p.settled


@pytest.mark.parametrize(("surge", "unavailable"), [(1, 0), (0, 1), (2, 1), ("50%", "25%")])
def test_every_batch_of_a_rollout_keeps_within_its_budget(
    surge: int | str, unavailable: int | str
) -> None:
    rollout = {"policies": {"rollout": {"maxSurge": surge, "maxUnavailable": unavailable}}}
    live = spec(ZONES, {"targetNodes": 8})
    p = preview(
        declared(live),
        declared(spec(ZONES, rollout, {"targetNodes": 8}), profile_hash=NEW),
        observed(zoned(8)),
    )
    surge_n = {1: 1, 0: 0, 2: 2, "50%": 4}[surge]
    unavailable_n = {0: 0, 1: 1, "25%": 2}[unavailable]
    ready, total = 8, 8
    for batch in p.batches:
        # Deleted nodes go at once; new ones are not ready within their batch.
        ready -= len(batch.plan.deletes)
        total += len(batch.plan.creates) - len(batch.plan.deletes)
        assert ready >= 8 - unavailable_n, batch
        assert total <= 8 + max(surge_n, 1 if not unavailable_n else 0), batch
        ready += len(batch.plan.creates)
    assert sorted(name for name, _ in p.deletes) == [f"n{i}" for i in range(8)]
    assert p.creates == 8 and p.settled


def test_the_first_batch_is_the_planners_own_decision() -> None:
    # The same code path as the controller: step one is plan() itself, not a copy of it.
    changed = declared(spec(ZONES, {"targetNodes": 6}), profile_hash=NEW)
    now = observed(zoned(4))
    batches, _, _ = simulate(changed, now)
    assert batches[0].plan == plan(changed, now)


def test_no_change_says_so() -> None:
    p = run(Case("same", {}))
    assert (p.changed, p.batches, p.spec_changes) == (False, (), ())
    assert replacement_summary(p) == (
        "Replaces existing machines: no (the profile is unchanged; changes: nothing)"
    )


def test_a_policy_change_alone_is_a_change_without_batches() -> None:
    p = run(Case("grace", {"policies": {"deletion": {"gracePeriodSeconds": 30}}}))
    assert p.changed and not p.batches
    assert [c.path for c in p.spec_changes] == ["policies.deletion.gracePeriodSeconds"]


def test_work_under_way_is_shown_apart_from_the_change() -> None:
    # Three nodes for a target of four: the live spec still creates one.
    p = run(Case("under-way", {"targetNodes": 4}, nodes=zoned(3)))
    assert len(p.in_progress.creates) == 1
    assert p.creates == 1 and not p.spec_changes


def test_a_paused_cluster_does_nothing_and_says_why() -> None:
    p = run(Case("paused", {"paused": True, "targetNodes": 9}))
    assert p.batches == ()
    assert [b.reason for b in p.blockers] == ["Paused"]
    assert p.changed  # (the spec changes, though no machine does)


def test_a_suspended_launch_is_held_not_hidden() -> None:
    p = run(Case("held", {"suspend": ["Launch"], "targetNodes": 6}))
    assert p.creates == 0
    assert [h.process for h in p.held] == ["Launch"]


def test_a_held_rollout_replaces_nothing_now_and_says_so() -> None:
    p = run(Case("held", {"suspend": ["Rollout"]}, new_profile=True))
    assert not p.replaces_machines and not p.batches
    assert replacement_summary(p).startswith(
        "Replaces existing machines: no, not now (held back or blocked): the profile changes"
    )
    assert [h.process for h in p.held] == ["Rollout"]


def test_random_deletion_criteria_make_the_names_a_possible_draw() -> None:
    live = spec(ZONES, {"targetNodes": 4})
    p = preview(declared(live), declared(spec(ZONES, {"targetNodes": 2})), observed(zoned(4)))
    assert len(p.deletes) == 2
    assert p.deletions_certain is False
    assert run(Case("oldest", {"targetNodes": 2})).deletions_certain is True


def test_a_rollout_that_cannot_finish_is_reported_unsettled() -> None:
    rollout = {"policies": {"rollout": {"maxSurge": 1, "maxUnavailable": 0}}}
    changed = declared(spec(ZONES, rollout, {"targetNodes": 4}), profile_hash=NEW)
    batches, _, settled = simulate(changed, observed(zoned(4)), max_batches=2)
    assert len(batches) == 2 and not settled


def test_quota_headroom_is_spent_batch_by_batch() -> None:
    changed = declared(spec(ZONES, {"targetNodes": 8}))
    batches, after, _ = simulate(changed, observed(ready_nodes(4), headroom=2))
    assert sum(len(b.plan.creates) for b in batches) == 2
    assert len(after) == 6


def test_spec_changes_name_each_leaf_and_absent_values() -> None:
    before = {"targetNodes": 3, "profile": {"machineType": "small", "labels": {"a": "1"}}}
    after = {
        "targetNodes": 3,
        "profile": {"machineType": "large", "labels": {"a": "1"}},
        "maxNodes": 9,
        "policies": {"placement": {"zones": [{"name": "a"}]}},
    }
    changes = [(c.path, c.before, c.after) for c in spec_changes(before, after)]
    assert changes == [
        ("maxNodes", None, 9),
        ("policies", None, {"placement": {"zones": [{"name": "a"}]}}),
        ("profile.machineType", "small", "large"),
    ]
    assert Counter(c.path for c in spec_changes(after, after)) == Counter()


def test_every_reason_to_delete_has_words() -> None:
    # A cause the planner gains (WarmPool came with warm pools) must be said, not crash.
    for cause in get_args(DeletionCause):
        assert cause_text(cause) != cause, cause


def test_a_warm_pool_is_filled_beside_the_target_and_promoted_first() -> None:
    pool = {"warmPool": {"size": 2, "state": "Stopped"}}
    live = spec(ZONES, OLDEST, {"targetNodes": 4})
    fill = preview(
        declared(live), declared(spec(ZONES, OLDEST, pool, {"targetNodes": 4})), observed(zoned(4))
    )
    assert (fill.creates, fill.warm_creates, fill.settled) == (0, 2, True)
    assert sum(z.after for z in fill.zones()) == 4  # the pool is not in the target

    warm = [
        node(
            f"w{i}",
            zone=("zone-a", "zone-b")[i],
            warm=True,
            state="Stopped",
            ready=False,
            power_state="Stopped",
        )
        for i in range(2)
    ]
    pooled = spec(ZONES, OLDEST, pool, {"targetNodes": 4})
    out = preview(
        declared(pooled),
        declared(spec(ZONES, OLDEST, pool, {"targetNodes": 6})),
        observed([*zoned(4), *warm]),
    )
    assert sorted(out.moves) == [("w0", False), ("w1", False)]  # promoted, not created
    assert out.creates == 0 and out.warm_creates == 2  # then the pool refills
    assert out.settled
