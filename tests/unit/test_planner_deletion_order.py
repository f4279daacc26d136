"""plan(): which nodes a scale-in removes, strongest rule first.

broken (failed, in error, unhealthy, no machine) > annotated for deletion > outdated
profile > zone spread > criteria (OldestFirst / YoungestFirst / OldestProfileFirst /
Random), and protected nodes never.

Rollouts are set to OnDelete and health recovery to None here, so that outdated and
broken nodes are only touched by scale-in (remediation has its own tests).
"""

from __future__ import annotations

from typing import Any

import pytest
from builders import OUTDATED, declared, node, observed, spec

from nodecluster.planning.model import NodeView
from nodecluster.planning.planner import plan

ON_DELETE = {"policies": {"rollout": {"strategy": "OnDelete"}, "health": {"recovery": "None"}}}
ZONES_AB = {"policies": {"placement": {"zones": [{"name": "a"}, {"name": "b"}]}}}


def criteria(name: str) -> dict[str, Any]:
    return {"policies": {"deletion": {"criteria": name}}}


def victims(nodes: list[NodeView], keep: int, *parts: dict[str, Any], seed: int = 0) -> list[str]:
    the_spec = spec(ON_DELETE, *parts, targetNodes=keep)
    p = plan(declared(the_spec), observed(nodes, seed=seed))
    assert all(d.reason == "ScaleIn" for d in p.deletes)
    return [d.name for d in p.deletes]


# Three healthy nodes, `old` the oldest and `young` the youngest.
OLD = node("old", age=9000)
MID = node("mid", age=5000)
YOUNG = node("young", age=100)


@pytest.mark.parametrize(
    ("odd_one", "order"),
    [
        (node("failed", age=50, state="Failed", ready=False), "OldestFirst"),
        (node("erred", age=50, error_reason="ProviderUnavailable", ready=False), "OldestFirst"),
        (node("sick", age=50, ready=False, unhealthy_since=node("x").created_at), "OldestFirst"),
        (node("pending", age=50, state="Pending", ready=False, has_machine=False), "OldestFirst"),
        (node("nomachine", age=50, state=None, ready=False, has_machine=False), "OldestFirst"),
        (node("unknown", age=50, state="Unknown", ready=False), "OldestFirst"),
        (node("failed", age=99999, state="Failed", ready=False), "YoungestFirst"),
        (node("marked", age=50, marked_for_deletion=True), "OldestFirst"),
        (node("marked", age=99999, marked_for_deletion=True), "YoungestFirst"),
        (node("outdated", age=50, profile_hash=OUTDATED), "OldestFirst"),
        (node("outdated", age=99999, profile_hash=OUTDATED), "YoungestFirst"),
    ],
    ids=lambda v: v.name if isinstance(v, NodeView) else v,
)
def test_a_stronger_rule_beats_the_criteria(odd_one: NodeView, order: str) -> None:
    assert victims([OLD, MID, YOUNG, odd_one], 3, criteria(order)) == [odd_one.name]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (node("broken", state="Failed", ready=False), node("marked", marked_for_deletion=True)),
        (node("marked", marked_for_deletion=True), node("outdated", profile_hash=OUTDATED)),
        (node("broken", state="Failed", ready=False), node("outdated", profile_hash=OUTDATED)),
    ],
    ids=["broken-before-marked", "marked-before-outdated", "broken-before-outdated"],
)
@pytest.mark.parametrize("order", ["OldestFirst", "YoungestFirst", "Random"])
def test_rules_rank_in_order(first: NodeView, second: NodeView, order: str) -> None:
    assert victims([OLD, second, first, YOUNG], 3, criteria(order)) == [first.name]
    assert victims([OLD, second, first, YOUNG], 2, criteria(order)) == [first.name, second.name]


def test_outdated_profile_beats_zone_spread() -> None:
    nodes = [
        node("a1", zone="a"),
        node("a2", zone="a"),
        node("b1", zone="b", profile_hash=OUTDATED),
    ]
    # Zone a is over its share of 2, but the outdated node in b still goes first.
    assert victims(nodes, 2, ZONES_AB, criteria("OldestFirst")) == ["b1"]


def test_zone_spread_beats_the_criteria() -> None:
    nodes = [
        node("a-new", zone="a", age=10),
        node("a-newer", zone="a", age=5),
        node("b-oldest", zone="b", age=99999),
    ]
    assert victims(nodes, 2, ZONES_AB, criteria("OldestFirst")) == ["a-new"]


@pytest.mark.parametrize(
    ("order", "keep", "expected"),
    [
        ("OldestFirst", 2, ["old"]),
        ("OldestFirst", 1, ["old", "mid"]),
        ("YoungestFirst", 2, ["young"]),
        ("YoungestFirst", 1, ["young", "mid"]),
        ("OldestProfileFirst", 2, ["old"]),
    ],
    ids=["oldest", "oldest-two", "youngest", "youngest-two", "oldest-profile-same-profile"],
)
def test_criteria_order_equal_nodes(order: str, keep: int, expected: list[str]) -> None:
    assert victims([YOUNG, OLD, MID], keep, criteria(order)) == expected


def test_oldest_profile_first_prefers_an_older_profile_over_an_older_node() -> None:
    nodes = [OLD, MID, node("young-outdated", age=10, profile_hash=OUTDATED)]
    assert victims(nodes, 2, criteria("OldestProfileFirst")) == ["young-outdated"]


def test_equal_nodes_fall_back_to_name_order() -> None:
    same_age = [node(n, age=100) for n in ("c", "a", "b")]
    assert victims(same_age, 1, criteria("OldestFirst")) == ["a", "b"]


EQUALS = [node(f"n{i:02d}", age=100) for i in range(12)]


@pytest.mark.parametrize("seed", [0, 1, 2, 99])
def test_random_is_deterministic_for_a_seed(seed: int) -> None:
    first = victims(EQUALS, 9, criteria("Random"), seed=seed)
    again = victims(list(reversed(EQUALS)), 9, criteria("Random"), seed=seed)
    assert first == again
    assert len(set(first)) == 3


def test_random_varies_with_the_seed() -> None:
    choices = {tuple(victims(EQUALS, 9, criteria("Random"), seed=s)) for s in range(20)}
    assert len(choices) > 5


def test_random_still_respects_the_stronger_rules() -> None:
    nodes = [*EQUALS, node("broken", state="Failed", ready=False)]
    for seed in range(10):
        assert victims(nodes, 12, criteria("Random"), seed=seed) == ["broken"]


@pytest.mark.parametrize(
    ("nodes", "keep", "deleted", "short"),
    [
        ([node("p1", protected=True), node("p2", protected=True), MID], 1, ["mid"], 1),
        ([node("p1", protected=True), node("p2", protected=True)], 0, [], 2),
        (
            [node("pf", protected=True, state="Failed", ready=False), OLD, YOUNG],
            2,
            ["old"],
            0,
        ),
        ([node("p1", protected=True, marked_for_deletion=True), OLD, YOUNG], 2, ["old"], 0),
    ],
    ids=["excess-not-met", "all-protected", "protected-even-when-broken", "protection-wins-mark"],
)
def test_protected_nodes_are_never_chosen(
    nodes: list[NodeView], keep: int, deleted: list[str], short: int
) -> None:
    the_spec = spec(ON_DELETE, criteria("OldestFirst"), targetNodes=keep)
    p = plan(declared(the_spec), observed(nodes))

    assert [d.name for d in p.deletes] == deleted
    blockers = [b for b in p.blockers if b.reason == "ProtectedFromScaleIn"]
    if short:
        assert len(blockers) == 1
        assert blockers[0].message.startswith(f"{short} more nodes should go")
    else:
        assert blockers == []
