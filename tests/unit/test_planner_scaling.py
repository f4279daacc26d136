"""plan(): how many nodes to create or delete, their names, their zones, and the limits
(min/max, the provider's quota headroom, a provider that cannot be used)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
from builders import CLUSTER, declared, node, observed, ready_nodes, spec

from nodecluster.planning.model import NodeView
from nodecluster.planning.planner import (
    NAME_ALPHABET,
    Blocker,
    desired_count,
    plan,
    resolve_int_or_percent,
)

NAME = re.compile(rf"^{CLUSTER}-[{NAME_ALPHABET}]{{5}}$")


@pytest.mark.parametrize("target", [1, 3, 25])
def test_scale_up_from_zero_creates_target_nodes_with_unique_generated_names(target: int) -> None:
    p = plan(declared(spec(targetNodes=target)), observed())

    names = [c.name for c in p.creates]
    assert len(names) == target
    assert len(set(names)) == target
    assert all(NAME.match(n) for n in names), names
    assert p.deletes == () and p.blockers == ()
    assert p.desired == target


def test_new_names_never_collide_with_existing_nodes() -> None:
    # The same seed on an empty cluster tells which names this seed draws first;
    # with those names taken, the planner must draw others.
    seed = 7
    first = plan(declared(spec(targetNodes=4)), observed(seed=seed))
    taken = [node(c.name, deleting=True, ready=False, state="Deleting") for c in first.creates[:2]]

    again = plan(declared(spec(targetNodes=4)), observed(taken, seed=seed))

    new = {c.name for c in again.creates}
    assert len(new) == 4
    assert not new & {n.name for n in taken}


def test_same_seed_gives_the_same_names() -> None:
    a = plan(declared(spec(targetNodes=3)), observed(seed=42))
    b = plan(declared(spec(targetNodes=3)), observed(seed=42))
    c = plan(declared(spec(targetNodes=3)), observed(seed=43))
    assert a.creates == b.creates
    assert a.creates != c.creates


@pytest.mark.parametrize(
    ("existing", "target", "creates", "deletes"),
    [
        (0, 0, 0, 0),
        (0, 3, 3, 0),
        (2, 5, 3, 0),
        (5, 5, 0, 0),
        (5, 2, 0, 3),
        (4, 0, 0, 4),
    ],
    ids=["empty", "from-zero", "up", "steady", "down", "to-zero"],
)
def test_scale_moves_count_to_target(
    existing: int, target: int, creates: int, deletes: int
) -> None:
    nodes = ready_nodes(existing)
    p = plan(declared(spec(targetNodes=target)), observed(nodes))

    assert len(p.creates) == creates
    assert len(p.deletes) == deletes
    assert all(d.reason == "ScaleIn" for d in p.deletes)
    assert {d.name for d in p.deletes} <= {n.name for n in nodes}
    assert len({d.name for d in p.deletes}) == deletes


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"targetNodes": 3}, 3),
        ({"targetNodes": 0}, 0),
        ({"targetNodes": 1, "minNodes": 2}, 2),
        ({"targetNodes": 9, "maxNodes": 5}, 5),
        ({"targetNodes": 5, "minNodes": 2, "maxNodes": 8}, 5),
        ({"targetNodes": 2, "minNodes": 2, "maxNodes": 2}, 2),
        # CEL rejects min > max; if one slipped through, the maximum wins.
        ({"targetNodes": 3, "minNodes": 5, "maxNodes": 4}, 4),
    ],
    ids=["plain", "zero", "below-min", "above-max", "inside", "pinned", "min-over-max"],
)
def test_desired_count_clamps_target_to_min_and_max(fields: dict[str, Any], expected: int) -> None:
    the_spec = spec(**fields)
    assert desired_count(the_spec) == expected
    assert len(plan(declared(the_spec), observed()).creates) == expected


@pytest.mark.parametrize(
    ("value", "total", "round_up", "expected"),
    [
        (None, 10, True, 0),
        (3, 10, True, 3),
        (3, 10, False, 3),
        ("25%", 10, True, 3),
        ("25%", 10, False, 2),
        ("50%", 4, True, 2),
        ("50%", 4, False, 2),
        ("33%", 3, True, 1),
        ("33%", 3, False, 0),
        ("0%", 10, True, 0),
        ("100%", 7, False, 7),
        ("10%", 0, True, 0),
        ("1%", 1, True, 1),
    ],
    ids=str,
)
def test_resolve_int_or_percent_rounds_surge_up_and_unavailable_down(
    value: int | str | None, total: int, round_up: bool, expected: int
) -> None:
    assert resolve_int_or_percent(value, total, round_up) == expected


def test_deleting_nodes_are_not_counted_as_active() -> None:
    nodes = [*ready_nodes(3), node("old", deleting=True, ready=False, state="Deleting")]

    steady = plan(declared(spec(targetNodes=3)), observed(nodes))
    grow = plan(declared(spec(targetNodes=4)), observed(nodes))

    assert steady.empty
    assert len(grow.creates) == 1
    assert grow.creates[0].name != "old"
    assert "old" not in {d.name for d in grow.deletes}


ZONES_2_1 = {"policies": {"placement": {"zones": [{"name": "a", "weight": 2}, {"name": "b"}]}}}
ZONES_ABC = {"policies": {"placement": {"zones": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}}}
ZONES_AB = {"policies": {"placement": {"zones": [{"name": "a"}, {"name": "b"}]}}}


def _zoned(counts: dict[str, int]) -> list[NodeView]:
    return [
        node(f"{zone}{i}", zone=zone, age=3600 - i)
        for zone, count in counts.items()
        for i in range(count)
    ]


@pytest.mark.parametrize(
    ("placement", "existing", "target", "expected"),
    [
        (ZONES_2_1, {}, 6, {"a": 4, "b": 2}),
        (ZONES_2_1, {}, 3, {"a": 2, "b": 1}),
        (ZONES_ABC, {}, 6, {"a": 2, "b": 2, "c": 2}),
        (ZONES_ABC, {}, 4, {"a": 2, "b": 1, "c": 1}),
        (ZONES_AB, {"a": 3}, 6, {"a": 3, "b": 3}),
        (ZONES_2_1, {"b": 2}, 6, {"a": 4, "b": 2}),
    ],
    ids=["weighted-6", "weighted-3", "even-6", "even-4-ties-to-first", "fill-gap", "weighted-fill"],
)
def test_scale_up_places_nodes_by_zone_weight(
    placement: dict[str, Any], existing: dict[str, int], target: int, expected: dict[str, int]
) -> None:
    nodes = _zoned(existing)
    p = plan(declared(spec(placement, targetNodes=target)), observed(nodes))

    after = Counter(n.zone for n in nodes) + Counter(c.zone for c in p.creates)
    assert dict(after) == expected


def test_without_zones_new_nodes_leave_the_zone_to_the_provider() -> None:
    p = plan(declared(spec(targetNodes=2)), observed())
    assert [c.zone for c in p.creates] == [None, None]


@pytest.mark.parametrize(
    ("placement", "existing", "target", "expected"),
    [
        (ZONES_ABC, {"a": 3, "b": 3, "c": 3}, 6, {"a": 2, "b": 2, "c": 2}),
        (ZONES_AB, {"a": 4, "b": 2}, 4, {"a": 2, "b": 2}),
        (ZONES_2_1, {"a": 3, "b": 3}, 3, {"a": 2, "b": 1}),
        (ZONES_AB, {"a": 1, "b": 3}, 2, {"a": 1, "b": 1}),
    ],
    ids=["even", "uneven-to-even", "weighted", "heavy-zone-shrinks"],
)
@pytest.mark.parametrize("criteria", ["OldestFirst", "YoungestFirst", "Random"])
def test_scale_in_keeps_the_spread(
    placement: dict[str, Any],
    existing: dict[str, int],
    target: int,
    expected: dict[str, int],
    criteria: str,
) -> None:
    nodes = _zoned(existing)
    the_spec = spec(
        placement, {"policies": {"deletion": {"criteria": criteria}}}, targetNodes=target
    )
    p = plan(declared(the_spec), observed(nodes, seed=3))

    gone = {d.name for d in p.deletes}
    left = Counter(n.zone for n in nodes if n.name not in gone)
    assert dict(left) == expected


def test_nodes_in_unknown_zones_go_first_on_scale_in() -> None:
    nodes = [*_zoned({"a": 1, "b": 1}), node("x0", zone="retired", age=10)]
    the_spec = spec(
        ZONES_AB, {"policies": {"deletion": {"criteria": "YoungestFirst"}}}, targetNodes=2
    )
    p = plan(declared(the_spec), observed(nodes))
    assert [d.name for d in p.deletes] == ["x0"]


@pytest.mark.parametrize(
    ("headroom", "target", "creates", "blocked"),
    [
        (None, 5, 5, False),
        (10, 5, 5, False),
        (5, 5, 5, False),
        (2, 5, 2, True),
        (0, 5, 0, True),
        (0, 0, 0, False),
        # A quota lowered below what is in use: nothing more, and nothing to report
        # while nothing more is needed.
        (-3, 5, 0, True),
        (-3, 0, 0, False),
    ],
    ids=[
        "unlimited",
        "room",
        "exact",
        "partial",
        "full",
        "full-nothing-needed",
        "over",
        "over-idle",
    ],
)
def test_quota_headroom_limits_creates(
    headroom: int | None, target: int, creates: int, blocked: bool
) -> None:
    p = plan(declared(spec(targetNodes=target)), observed(headroom=headroom))

    assert len(p.creates) == creates
    reasons = [b.reason for b in p.blockers]
    assert reasons == (["QuotaExceeded"] if blocked else [])
    if blocked:
        assert f"{target} are needed" in p.blockers[0].message


def test_quota_headroom_does_not_stop_scale_in() -> None:
    p = plan(declared(spec(targetNodes=1)), observed(ready_nodes(3), headroom=0))
    assert len(p.deletes) == 2
    assert p.blockers == ()


@pytest.mark.parametrize(
    ("existing", "target", "creates", "deletes", "blocked"),
    [(0, 3, 0, 0, True), (3, 3, 0, 0, False), (4, 2, 0, 2, False)],
    ids=["blocks-creates", "nothing-needed", "scale-in-still-works"],
)
def test_provider_problem_blocks_creates_with_its_reason(
    existing: int, target: int, creates: int, deletes: int, blocked: bool
) -> None:
    problem = ("InvalidProviderConfig", "NodeProvider sim: cannot open inventory")
    p = plan(
        declared(spec(targetNodes=target)),
        observed(ready_nodes(existing), provider_problem=problem),
    )

    assert len(p.creates) == creates
    assert len(p.deletes) == deletes
    assert list(p.blockers) == ([Blocker(*problem)] if blocked else [])


@pytest.mark.parametrize(
    ("existing", "target", "creates", "deletes", "blocked"),
    [(3, 5, 0, 0, True), (3, 3, 0, 0, False), (4, 2, 0, 2, False)],
    ids=["blocks-creates", "nothing-needed", "scale-in-still-works"],
)
def test_a_provider_being_deleted_blocks_only_creates(
    existing: int, target: int, creates: int, deletes: int, blocked: bool
) -> None:
    refused = ("ProviderDeleting", "NodeProvider 'sim' is being deleted")
    p = plan(
        declared(spec(targetNodes=target)),
        observed(ready_nodes(existing), no_new_machines=refused),
    )

    assert len(p.creates) == creates
    assert len(p.deletes) == deletes
    assert list(p.blockers) == ([Blocker(*refused)] if blocked else [])
