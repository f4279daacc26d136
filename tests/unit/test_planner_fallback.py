"""plan() with policies.capacityFallback: which choice each new node is made from, how a
node refused for capacity is replaced, and how long an exhausted choice is left alone.

Choice 0 is the profile's (machine type `small`, the provider's default capacity type);
the alternatives here are `big` (default capacity type), then `small` Spot.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from builders import NOW, declared, node, observed, ready_nodes, spec

from nodecluster.api.fallback import ExhaustedCapacity
from nodecluster.api.reasons import Reason
from nodecluster.planning.fallback import CAPACITY_FALLBACK, backoff
from nodecluster.planning.planner import plan
from nodecluster.planning.status import cluster_status

FALLBACK = {
    "policies": {
        "capacityFallback": {
            "alternatives": [{"machineType": "big"}, {"capacityType": "Spot"}],
        }
    }
}
ZONES = {"policies": {"placement": {"zones": [{"name": "zone-a"}, {"name": "zone-b"}]}}}

SMALL = ("small", None)
BIG = ("big", None)
SPOT = ("small", "Spot")


def refused(name: str, *, age: float = 10, zone: str | None = None, **fields: Any) -> Any:
    """A node whose create the provider refused for capacity: no machine, erroring."""
    fields.setdefault("machine_type", "small")
    return node(
        name,
        age=age,
        state="Pending",
        ready=False,
        has_machine=False,
        zone=zone,
        error_reason="CapacityExceeded",
        **fields,
    )


def exhausted(
    offering: tuple[str, str | None],
    *,
    zone: str | None = None,
    refusals: int = 1,
    ago: float = 0,
) -> ExhaustedCapacity:
    """An offering refused `ago` seconds before NOW, `refusals` times in a row."""
    at = NOW - timedelta(seconds=ago)
    return ExhaustedCapacity.model_validate(
        {
            "machineType": offering[0],
            "capacityType": offering[1],
            "zone": zone,
            "refusals": refusals,
            "lastRefusalTime": at,
            "retryTime": at + backoff(refusals),
        }
    )


def made_of(p: Any) -> list[tuple[str, str | None, str | None, int]]:
    """What each create of a plan is made from: (machine type, capacity type, zone, alt)."""
    return [(c.machine_type, c.capacity_type, c.zone, c.alternative) for c in p.creates]


@pytest.mark.parametrize(
    ("refusals", "seconds"),
    [(1, 60), (2, 120), (3, 240), (4, 480), (5, 600), (6, 600), (40, 600)],
)
def test_the_back_off_doubles_from_a_minute_to_ten(refusals: int, seconds: int) -> None:
    assert backoff(refusals) == timedelta(seconds=seconds)


def test_without_the_policy_a_refused_node_retries_its_own_choice() -> None:
    # Today's behaviour: the node stays (its controller retries with backoff), nothing is
    # remembered, nothing is created in its place.
    p = plan(declared(spec(targetNodes=2)), observed([node("n0"), refused("n1")]))

    assert p.deletes == () and p.creates == ()
    assert p.exhausted == ()


def test_a_refused_node_is_replaced_by_one_of_the_next_choice() -> None:
    p = plan(declared(spec(FALLBACK, targetNodes=2)), observed([node("n0"), refused("n1")]))

    assert [(d.name, d.reason) for d in p.deletes] == [("n1", "CapacityFallback")]
    assert made_of(p) == [("big", None, None, 1)]
    [entry] = p.exhausted
    assert (entry.machine_type, entry.capacity_type, entry.refusals) == ("small", None, 1)
    assert entry.retry_time == NOW + timedelta(minutes=1)
    assert p.recheck_at == entry.retry_time


def test_with_launch_suspended_a_refused_node_is_kept_and_remembered() -> None:
    # Its replacement would be a new node, which a suspended Launch forbids: the refused
    # node stays (retrying its own choice), and the exhaustion is still recorded.
    p = plan(
        declared(spec(FALLBACK, targetNodes=2, suspend=["Launch"])),
        observed([node("n0"), refused("n1")]),
    )

    assert p.deletes == () and p.creates == ()
    assert [(e.machine_type, e.refusals) for e in p.exhausted] == [("small", 1)]


def test_nodes_refused_together_are_one_refusal() -> None:
    # A scale-out of three, all refused before the first refusal was known.
    nodes = [refused(f"n{i}") for i in range(3)]
    p = plan(declared(spec(FALLBACK, targetNodes=3)), observed(nodes))

    assert len(p.deletes) == 3
    assert [e.refusals for e in p.exhausted] == [1]
    assert made_of(p) == [("big", None, None, 1)] * 3


@pytest.mark.parametrize(
    ("exhausted_now", "expected"),
    [
        ([], [("small", None, None, 0)] * 2),
        ([exhausted(SMALL)], [("big", None, None, 1)] * 2),
        ([exhausted(SMALL), exhausted(BIG)], [("small", "Spot", None, 2)] * 2),
        # Only the Spot alternative is out: the profile's choice comes first anyway.
        ([exhausted(SPOT)], [("small", None, None, 0)] * 2),
    ],
    ids=["none", "profile", "profile-and-first", "last-only"],
)
def test_each_new_node_takes_the_first_choice_not_exhausted(
    exhausted_now: list[ExhaustedCapacity], expected: list[Any]
) -> None:
    p = plan(declared(spec(FALLBACK, targetNodes=2)), observed(exhausted=tuple(exhausted_now)))

    assert made_of(p) == expected
    assert p.blockers == ()


def test_every_choice_exhausted_stalls_naming_them() -> None:
    every = (exhausted(SMALL), exhausted(BIG, ago=30), exhausted(SPOT, refusals=3))
    p = plan(declared(spec(FALLBACK, targetNodes=2)), observed(exhausted=every))

    assert p.creates == ()
    [blocker] = p.blockers
    assert blocker.reason is Reason.CAPACITY_EXCEEDED and blocker.reason.stalls
    for words in ("2 nodes wait", "small default capacity", "big default capacity", "small Spot"):
        assert words in blocker.message
    # The cluster looks again when the first back-off ends.
    assert p.recheck_at == NOW + timedelta(seconds=30)

    status = cluster_status(declared(spec(FALLBACK, targetNodes=2)), observed(exhausted=every), p)
    stalled = next(c for c in status.status.conditions if c.type == "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "CapacityExceeded")


def test_after_the_back_off_one_node_probes_the_preferred_choice() -> None:
    # Retried from 1 minute after the refusal: one new node tries it, the rest fall back.
    entry = exhausted(SMALL, ago=61)
    p = plan(declared(spec(FALLBACK, targetNodes=3)), observed(exhausted=(entry,)))

    assert sorted(made_of(p)) == [("big", None, None, 1)] * 2 + [("small", None, None, 0)]
    assert p.exhausted == (entry,)  # remembered until the probe tells


def test_while_a_probe_waits_for_its_machine_no_second_one_is_made() -> None:
    entry = exhausted(SMALL, ago=70)
    probe = node(
        "probe", age=5, state="Pending", ready=False, has_machine=False, machine_type="small"
    )
    p = plan(declared(spec(FALLBACK, targetNodes=3)), observed([probe], exhausted=(entry,)))

    assert made_of(p) == [("big", None, None, 1)] * 2


@pytest.mark.parametrize(
    ("made_ago", "refusals_after"),
    [(5, 2), (65, 1)],
    ids=["probe-refused-doubles", "made-before-the-refusal-counts-nothing"],
)
def test_a_refusal_doubles_the_back_off_only_for_a_probe(
    made_ago: float, refusals_after: int
) -> None:
    entry = exhausted(SMALL, ago=70)  # retried from 10 seconds ago
    p = plan(
        declared(spec(FALLBACK, targetNodes=1)),
        observed([refused("n0", age=made_ago)], exhausted=(entry,)),
    )

    assert [d.name for d in p.deletes] == ["n0"]
    [after] = p.exhausted
    assert after.refusals == refusals_after
    if refusals_after == 2:
        assert after.retry_time == NOW + timedelta(minutes=2)
        assert made_of(p) == [("big", None, None, 1)]
    else:
        assert after == entry


def test_a_machine_of_the_choice_ends_its_exhaustion() -> None:
    entry = exhausted(SMALL, ago=70)
    got_one = node("probe", age=5, machine_type="small")
    p = plan(declared(spec(FALLBACK, targetNodes=1)), observed([got_one], exhausted=(entry,)))

    assert p.exhausted == ()


def test_an_old_machine_of_the_choice_does_not_end_it() -> None:
    entry = exhausted(SMALL, ago=30)
    older = node("n0", age=3600, machine_type="small")  # running since before the refusal
    p = plan(declared(spec(FALLBACK, targetNodes=1)), observed([older], exhausted=(entry,)))

    assert p.exhausted == (entry,)


def test_a_choice_nobody_tried_again_is_forgotten() -> None:
    entry = exhausted(SMALL, ago=60 + 600)
    p = plan(declared(spec(FALLBACK, targetNodes=1)), observed([node("n0")], exhausted=(entry,)))

    assert p.exhausted == ()


def test_a_probe_out_past_the_forget_time_asks_for_no_look_in_the_past() -> None:
    # Its retry and forget times have both passed, and the probe still waits: the entry
    # is kept, and the cluster is not asked to look again at a time already gone.
    entry = exhausted(SMALL, ago=60 + 700)
    probe = node(
        "probe", age=650, state="Pending", ready=False, has_machine=False, machine_type="small"
    )
    p = plan(declared(spec(FALLBACK, targetNodes=1)), observed([probe], exhausted=(entry,)))

    assert p.exhausted == (entry,)
    assert p.recheck_at is None or p.recheck_at > NOW


def test_nodes_made_from_an_alternative_stay_when_the_preferred_choice_is_back() -> None:
    # Not outdated (same profile hash): no rollout, no replacement; only new nodes return.
    nodes = ready_nodes(2, machine_type="big")
    p = plan(declared(spec(FALLBACK, targetNodes=3)), observed(nodes))

    assert not p.rolling and p.deletes == ()
    assert made_of(p) == [("small", None, None, 0)]


def test_with_placement_zones_exhaustion_is_per_zone_and_spread_holds() -> None:
    # The profile's choice is out in zone-a only: zone-a's node falls back, zone-b's not.
    p = plan(
        declared(spec(FALLBACK, ZONES, targetNodes=2)),
        observed(exhausted=(exhausted(SMALL, zone="zone-a"),)),
    )

    assert sorted(made_of(p)) == [("big", None, "zone-a", 1), ("small", None, "zone-b", 0)]


def test_an_alternative_with_a_zone_applies_to_nodes_placed_there_only() -> None:
    zoned = {"policies": {"capacityFallback": {"alternatives": [{"zone": "zone-b"}]}}}
    p = plan(
        declared(spec(zoned, ZONES, targetNodes=2)),
        observed(exhausted=(exhausted(SMALL, zone="zone-a"),)),
    )

    # zone-a has nothing left; its node is not moved to zone-b (spread holds).
    assert made_of(p) == [("small", None, "zone-b", 0)]
    [blocker] = p.blockers
    assert "1 nodes wait" in blocker.message and "in zone-a: small" in blocker.message


def test_without_placement_zones_an_alternative_zone_is_where_its_nodes_go() -> None:
    zoned = {"policies": {"capacityFallback": {"alternatives": [{"zone": "zone-c"}]}}}
    p = plan(declared(spec(zoned, targetNodes=1)), observed(exhausted=(exhausted(SMALL),)))

    assert made_of(p) == [("small", None, "zone-c", 1)]


def test_status_says_which_choices_are_exhausted() -> None:
    d = declared(spec(FALLBACK, targetNodes=2))
    o = observed([node("n0"), refused("n1")])
    p = plan(d, o)
    status = cluster_status(d, o, p).status

    assert [(e.machine_type, e.refusals) for e in status.exhausted_capacity or []] == [("small", 1)]
    c = next(c for c in status.conditions if c.type == CAPACITY_FALLBACK)
    assert (c.status, c.reason) == ("True", "CapacityExhausted")
    assert "small default capacity (refused 1x" in c.message
    # The refused node is replaced, not reported: the cluster does not stall.
    stalled = next(c for c in status.conditions if c.type == "Stalled")
    assert stalled.status == "False"


def test_status_of_a_cluster_without_the_policy_is_as_before() -> None:
    d = declared(spec(targetNodes=1))
    o = observed([node("n0")])
    status = cluster_status(d, o, plan(d, o)).status

    assert status.exhausted_capacity is None
    assert [c.type for c in status.conditions] == ["Ready", "Reconciling", "Stalled", "Degraded"]


def test_the_condition_clears_when_the_back_off_ends() -> None:
    d = declared(spec(FALLBACK, targetNodes=1))
    o = observed([node("n0")], exhausted=(exhausted(SMALL, ago=90),))
    status = cluster_status(d, o, plan(d, o)).status

    c = next(c for c in status.conditions if c.type == CAPACITY_FALLBACK)
    assert (c.status, c.reason) == ("False", "AsExpected")
    assert status.exhausted_capacity  # still remembered for the doubling


def test_paused_keeps_the_memory() -> None:
    entry = exhausted(SMALL)
    p = plan(declared(spec(FALLBACK, paused=True)), observed(exhausted=(entry,)))

    assert p.exhausted == (entry,)
