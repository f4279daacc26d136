"""plan() with policies.rollout.maxNodeLifetimeSeconds: expired nodes are replaced.

A node older than the lifetime is replaced as a node of an older profile is, within
maxSurge and maxUnavailable, oldest first; suspending Rollout holds it; the plan says
when the next node expires (recheck_at) so an idle cluster is looked at then.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from builders import (
    CURRENT,
    NOW,
    OUTDATED,
    declared,
    execute,
    node,
    observed,
    settle,
    spec,
)

from nodecluster.planning.model import NodeView
from nodecluster.planning.planner import plan
from nodecluster.planning.status import derive_status

HOUR = 3600


def lifetime(seconds: int = HOUR, **rollout: Any) -> dict[str, Any]:
    return {"policies": {"rollout": {"maxNodeLifetimeSeconds": seconds, **rollout}}}


def aged(*ages: float, profile_hash: str = CURRENT) -> list[NodeView]:
    """Ready nodes n0, n1, ... of these ages in seconds."""
    return [node(f"n{i}", age=age, profile_hash=profile_hash) for i, age in enumerate(ages)]


def test_without_a_lifetime_old_nodes_stay() -> None:
    p = plan(declared(spec(targetNodes=2)), observed(aged(10 * 365 * 86400, 5)))

    assert p.empty
    assert p.expired == ()
    assert p.recheck_at is None


def test_an_expired_node_gets_a_surge_replacement_first() -> None:
    the_spec = spec(lifetime(maxSurge=1, maxUnavailable=0), targetNodes=2)

    p = plan(declared(the_spec), observed(aged(HOUR + 1, 60)))

    assert p.rolling
    assert p.expired == ("n0",)
    assert len(p.creates) == 1
    assert p.deletes == ()


def test_once_the_replacement_is_ready_the_expired_node_goes_as_expired() -> None:
    the_spec = spec(lifetime(maxSurge=1, maxUnavailable=0), targetNodes=2)

    p = plan(declared(the_spec), observed(aged(HOUR + 1, 60, 5)))

    assert [(d.name, d.reason) for d in p.deletes] == [("n0", "Expired")]
    assert p.creates == ()


def test_expired_nodes_go_oldest_first_within_max_unavailable() -> None:
    the_spec = spec(lifetime(maxSurge=0, maxUnavailable=1), targetNodes=3)

    p = plan(declared(the_spec), observed(aged(HOUR + 10, HOUR + 30, HOUR + 20)))

    assert [d.name for d in p.deletes] == ["n1"]
    assert len(p.creates) == 1
    assert set(p.expired) == {"n0", "n1", "n2"}


def test_a_node_expires_at_its_lifetime_exactly() -> None:
    the_spec = spec(lifetime(), targetNodes=1)

    assert plan(declared(the_spec), observed(aged(HOUR))).expired == ("n0",)
    assert plan(declared(the_spec), observed(aged(HOUR - 1))).expired == ()


def test_the_plan_says_when_the_next_node_expires() -> None:
    the_spec = spec(lifetime(), targetNodes=2)

    p = plan(declared(the_spec), observed(aged(600, 1800)))

    assert p.empty
    assert p.recheck_at == NOW + timedelta(seconds=HOUR - 1800)


def test_a_health_deadline_before_the_expiry_comes_first() -> None:
    # nodeStartupTimeoutSeconds 600 for a node still provisioning: the earlier wins.
    the_spec = spec(lifetime(), targetNodes=2)
    nodes = [*aged(1800), node("new", age=100, state="Provisioning", ready=False)]

    p = plan(declared(the_spec), observed(nodes))

    assert p.recheck_at == NOW + timedelta(seconds=500)


def test_suspended_rollout_holds_expired_nodes_and_looks_again_only_for_the_next() -> None:
    the_spec = spec(lifetime(), suspend=["Rollout"], targetNodes=2)

    p = plan(declared(the_spec), observed(aged(HOUR + 5, 600)))

    assert p.empty
    assert p.expired == ("n0",)
    assert [h.process for h in p.held] == ["Rollout"]
    assert "1 past maxNodeLifetimeSeconds" in p.held[0].message
    # The expired node is not a reason to look again (it would be at once, for ever).
    assert p.recheck_at == NOW + timedelta(seconds=HOUR - 600)


def test_expiry_replaces_nodes_under_on_delete_too() -> None:
    # OnDelete is about profile changes; a lifetime is asked for explicitly. The old
    # profile's young node stays.
    the_spec = spec(lifetime(strategy="OnDelete", maxSurge=0, maxUnavailable=1), targetNodes=2)
    nodes = [*aged(HOUR + 5), node("old-young", age=60, profile_hash=OUTDATED)]

    p = plan(declared(the_spec), observed(nodes))

    assert [(d.name, d.reason) for d in p.deletes] == [("n0", "Expired")]
    assert len(p.creates) == 1


def test_expired_nodes_of_an_older_profile_are_replaced_once() -> None:
    the_spec = spec(lifetime(maxSurge=0, maxUnavailable=2), targetNodes=2)
    nodes = aged(HOUR + 5, 60, profile_hash=OUTDATED)

    p = plan(declared(the_spec), observed(nodes))

    assert sorted((d.name, d.reason) for d in p.deletes) == [("n0", "Expired"), ("n1", "Rollout")]
    assert len(p.creates) == 2


def test_a_protected_expired_node_is_kept_and_the_plan_says_why() -> None:
    the_spec = spec(lifetime(maxSurge=0, maxUnavailable=1), targetNodes=1)
    nodes = [node("keep", age=HOUR + 5, protected=True)]

    p = plan(declared(the_spec), observed(nodes))

    assert p.deletes == ()
    assert [b.reason for b in p.blockers] == ["ProtectedFromScaleIn"]


def test_the_status_says_expired_nodes_are_being_replaced() -> None:
    the_spec = spec(lifetime(), targetNodes=2)
    d, o = declared(the_spec), observed(aged(HOUR + 5, 60))

    status = derive_status(d, o, plan(d, o))

    assert status.state == "Updating"
    assert status.message == "replacing nodes past maxNodeLifetimeSeconds"


@pytest.mark.parametrize(("desired", "surge", "unavailable"), [(3, 1, 0), (4, 0, 1), (5, 2, 1)])
def test_a_fleet_past_its_lifetime_is_replaced_within_its_budget(
    desired: int, surge: int, unavailable: int
) -> None:
    # Play the controller: every node expired at once; each step executes the plan, the
    # machines come up, 30 s pass. The replacements (young) never expire meanwhile.
    the_spec = spec(
        lifetime(maxSurge=surge, maxUnavailable=unavailable),
        {"policies": {"deletion": {"criteria": "OldestFirst"}}},
        targetNodes=desired,
    )
    nodes = aged(*(HOUR + 100 + i for i in range(desired)))
    oldest_first = sorted(nodes, key=lambda n: n.created_at)
    order: list[str] = []
    now = NOW
    for step in range(4 * desired + 6):
        p = plan(declared(the_spec), observed(nodes, now=now, seed=step))
        if p.empty and not p.expired:
            break
        assert p.blockers == ()
        order += [d.name for d in p.deletes]
        nodes = execute(p, nodes, now)
        active = [n for n in nodes if not n.deleting]
        assert sum(1 for n in active if n.ready) >= desired - unavailable, f"step {step}"
        assert len(active) <= desired + surge, f"step {step}: too many"
        nodes = settle(nodes)
        now += timedelta(seconds=30)
    else:
        pytest.fail("no convergence")

    assert order == [n.name for n in oldest_first]
    assert len(nodes) == desired
