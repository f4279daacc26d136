"""plan() with spec.suspend: each process stops its own kind of change, and says so.

Each case is a cluster needing one kind of change; suspending that change's process
must leave the plan without it, with a Hold naming the process, while the other kinds
of change go on. Deleting the cluster is never held.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from builders import NOW, OUTDATED, declared, node, observed, ready_nodes, spec

from nodecluster.api.nodecluster import SUSPENDABLE_PROCESSES
from nodecluster.planning.model import NodeView
from nodecluster.planning.planner import Plan, plan
from nodecluster.planning.status import cluster_status, derive_status


def planned(nodes: list[NodeView], *suspend: str, **fields: Any) -> Plan:
    the_spec = spec(fields, suspend=list(suspend)) if suspend else spec(fields)
    return plan(declared(the_spec), observed(nodes))


def failed(name: str) -> NodeView:
    return node(name, state="Failed", ready=False)


# (what the cluster needs, its nodes, spec fields, the change the plan makes unsuspended)
NEEDS: dict[str, tuple[list[NodeView], dict[str, Any]]] = {
    "Launch": (ready_nodes(1), {"targetNodes": 3}),
    "Terminate": (ready_nodes(5), {"targetNodes": 3}),
    "Remediate": ([*ready_nodes(2), failed("broken")], {"targetNodes": 3}),
    "Rollout": (ready_nodes(3, profile_hash=OUTDATED), {"targetNodes": 3}),
    "PowerChange": (ready_nodes(3), {"targetNodes": 3, "desiredState": "Stopped"}),
}


def changes(p: Plan) -> dict[str, int]:
    """The plan's changes by kind."""
    return {
        "creates": len(p.creates),
        "deletes": len(p.deletes),
        "power": len(p.power),
        "reboots": len(p.reboots),
    }


@pytest.mark.parametrize("process", SUSPENDABLE_PROCESSES)
def test_each_process_needed_changes_something_when_not_suspended(process: str) -> None:
    nodes, fields = NEEDS[process]

    p = planned(nodes, **fields)

    assert not p.empty
    assert p.held == ()


@pytest.mark.parametrize(
    ("process", "held_change"),
    [
        ("Launch", {"creates": 0, "deletes": 0}),
        ("Terminate", {"creates": 0, "deletes": 0}),
        ("Remediate", {"creates": 0, "deletes": 0}),
        ("Rollout", {"creates": 0, "deletes": 0}),
        ("PowerChange", {"power": 0}),
    ],
)
def test_a_suspended_process_holds_its_change_and_names_itself(
    process: str, held_change: dict[str, int]
) -> None:
    nodes, fields = NEEDS[process]

    p = planned(nodes, process, **fields)

    assert p.empty, changes(p)
    assert {k: v for k, v in changes(p).items() if k in held_change} == held_change
    assert [h.process for h in p.held] == [process]
    assert p.held[0].message


# Every process but the one a change needs (and Launch, which a replacement needs too).
NEEDED_BY = {"Remediate": {"Remediate", "Launch"}, "Rollout": {"Rollout", "Launch"}}
UNRELATED = [
    (process, need)
    for need in SUSPENDABLE_PROCESSES
    for process in SUSPENDABLE_PROCESSES
    if process not in NEEDED_BY.get(need, {need})
]


@pytest.mark.parametrize(("process", "need"), UNRELATED, ids=[f"{p}-{n}" for p, n in UNRELATED])
def test_suspending_another_process_changes_nothing(process: str, need: str) -> None:
    nodes, fields = NEEDS[need]

    assert planned(nodes, process, **fields) == planned(nodes, **fields)


def test_launch_suspended_holds_a_rollout_rather_than_shrink_the_cluster() -> None:
    # maxUnavailable 1 would delete an old node before its replacement exists: with no
    # replacement coming, the cluster would stay one short for as long as Launch waits.
    nodes = ready_nodes(3, profile_hash=OUTDATED)
    fields = {"policies": {"rollout": {"maxSurge": 0, "maxUnavailable": 1}}}

    p = planned(nodes, "Launch", **fields)

    assert p.empty
    assert not p.rolling
    assert [h.process for h in p.held] == ["Launch"]
    assert "a replacement needs a new node" in p.held[0].message


def test_launch_suspended_still_removes_a_broken_node_without_replacing_it() -> None:
    p = planned([*ready_nodes(2), failed("broken")], "Launch")

    assert [(d.name, d.reason) for d in p.deletes] == [("broken", "Remediation")]
    assert p.creates == ()
    assert [h.process for h in p.held] == ["Launch"]


def test_remediate_suspended_still_reports_the_unhealthy_nodes() -> None:
    p = planned([*ready_nodes(2), failed("broken")], "Remediate")

    assert p.unhealthy == ("broken",)
    assert "broken" in p.held[0].message


def test_remediate_suspended_holds_reboots_too() -> None:
    p = planned(
        [*ready_nodes(2), failed("broken")],
        "Remediate",
        policies={"health": {"recovery": "Reboot"}},
    )

    assert p.reboots == ()
    assert [h.process for h in p.held] == ["Remediate"]


def test_too_many_unhealthy_is_said_as_its_blocker_not_as_a_hold() -> None:
    nodes = [*ready_nodes(1), failed("b1"), failed("b2")]

    p = planned(nodes, "Remediate", policies={"health": {"maxUnhealthy": 1}})

    assert [b.reason for b in p.blockers] == ["TooManyUnhealthy"]
    assert p.held == ()


def test_terminate_suspended_keeps_scaling_out() -> None:
    p = planned(ready_nodes(1), "Terminate", targetNodes=3)

    assert len(p.creates) == 2
    assert p.held == ()


@pytest.mark.parametrize("deleting", [True, False], ids=["deleted", "desiredState-Terminated"])
def test_deleting_the_cluster_is_never_held(deleting: bool) -> None:
    every = list(SUSPENDABLE_PROCESSES)
    fields: dict[str, Any] = {} if deleting else {"desiredState": "Terminated"}
    the_spec = spec(fields, suspend=every)

    p = plan(declared(the_spec, deleting=deleting), observed(ready_nodes(3)))

    assert p.terminating
    assert len(p.deletes) == 3
    assert p.held == ()


def test_paused_still_stops_everything() -> None:
    p = planned(ready_nodes(1), "Terminate", targetNodes=3, paused=True)

    assert p.paused and p.empty


def test_a_held_change_keeps_the_cluster_from_ready_and_says_what_waits() -> None:
    the_spec = spec(suspend=["Rollout", "Terminate"])
    nodes = ready_nodes(3, profile_hash=OUTDATED)
    d, o = declared(the_spec), observed(nodes)

    status = derive_status(d, o, plan(d, o))

    conditions = {c.type: c for c in status.conditions}
    assert status.state == "Deployed"
    assert conditions["Ready"].status == "False"
    assert conditions["Ready"].reason == "ChangesHeldBack"
    assert conditions["Reconciling"].status == "False"
    assert conditions["Reconciling"].reason == "ChangesHeldBack"
    assert conditions["Stalled"].status == "False"
    suspended = conditions["Suspended"]
    assert (suspended.status, suspended.reason) == ("True", "ChangesHeldBack")
    assert suspended.message.startswith("Rollout, Terminate suspended; held back: Rollout: 3")


def test_a_held_scale_out_is_said_in_the_state_message() -> None:
    the_spec = spec(suspend=["Launch"], targetNodes=3)
    d, o = declared(the_spec), observed(ready_nodes(1))

    report = cluster_status(d, o, plan(d, o))

    conditions = {c.type: c for c in report.status.conditions}
    assert conditions["Ready"].status == "False"
    assert conditions["Reconciling"].reason == "ChangesHeldBack"
    assert "2 nodes not created" in conditions["Reconciling"].message
    assert report.status.message is not None
    assert report.status.message.endswith("(held back: Launch)")


def test_suspended_with_nothing_to_hold_is_ready() -> None:
    the_spec = spec(suspend=["Launch"])
    d, o = declared(the_spec), observed(ready_nodes(3))

    status = derive_status(d, o, plan(d, o))

    conditions = {c.type: c for c in status.conditions}
    assert conditions["Ready"].status == "True"
    assert (conditions["Suspended"].status, conditions["Suspended"].reason) == (
        "True",
        "ProcessesSuspended",
    )


def test_a_cluster_suspending_nothing_writes_no_suspended_condition() -> None:
    for the_spec in (spec(), spec(suspend=[])):
        d, o = declared(the_spec), observed(ready_nodes(3))
        status = derive_status(d, o, plan(d, o))
        assert [c.type for c in status.conditions] == [
            "Ready",
            "Reconciling",
            "Stalled",
            "Degraded",
        ]


def test_nodes_still_coming_up_under_a_held_launch_are_still_reconciling() -> None:
    the_spec = spec(suspend=["Launch"], targetNodes=3)
    nodes = [*ready_nodes(1), replace(node("new", age=5), state="Provisioning", ready=False)]
    d, o = declared(the_spec), observed(nodes, now=NOW + timedelta(seconds=1))

    status = derive_status(d, o, plan(d, o))

    reconciling = next(c for c in status.conditions if c.type == "Reconciling")
    assert reconciling.status == "True"
