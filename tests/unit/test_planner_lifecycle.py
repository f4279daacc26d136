"""plan(): the cluster's lifecycle — paused, Stopped, Running again, Terminated, deleted."""

from __future__ import annotations

from typing import Any

import pytest
from builders import OUTDATED, declared, node, observed, ready_nodes, spec

from nodecluster.planning.model import NodeView
from nodecluster.planning.planner import Blocker, DeleteNode, SetPower, plan

BROKEN = node("broken", state="Failed", ready=False)


@pytest.mark.parametrize(
    ("nodes", "target"),
    [
        ([], 3),
        (ready_nodes(5), 2),
        ([*ready_nodes(2), BROKEN], 3),
        ([*ready_nodes(2), node("outdated", profile_hash=OUTDATED)], 3),
        (ready_nodes(3, power_state="Stopped"), 3),
    ],
    ids=["would-create", "would-delete", "would-remediate", "would-roll", "would-power"],
)
def test_paused_changes_nothing_and_says_why(nodes: list[NodeView], target: int) -> None:
    p = plan(declared(spec(targetNodes=target, paused=True)), observed(nodes))

    assert p.empty
    assert p.paused
    assert p.desired == target
    assert [b.reason for b in p.blockers] == ["Paused"]


def test_paused_does_not_hold_back_termination() -> None:
    nodes = ready_nodes(2)
    p = plan(declared(spec(paused=True, desiredState="Terminated")), observed(nodes))
    assert p.terminating
    assert len(p.deletes) == 2


@pytest.mark.parametrize(
    ("the_spec", "deleting"),
    [
        (spec(desiredState="Terminated"), False),
        (spec(), True),
        (spec(targetNodes=5, minNodes=5), True),
    ],
    ids=["desired-terminated", "object-deleted", "deleted-despite-min"],
)
def test_termination_deletes_every_node(the_spec: Any, deleting: bool) -> None:
    nodes = [
        *ready_nodes(2),
        BROKEN,
        node("protected", protected=True),
        node("gone", deleting=True, ready=False, state="Deleting"),
    ]
    p = plan(declared(the_spec, deleting=deleting), observed(nodes, headroom=0))

    assert p.terminating
    assert p.desired == 0
    assert p.creates == () and p.power == () and p.reboots == ()
    assert sorted(p.deletes, key=lambda d: d.name) == [
        DeleteNode(n, "Terminating") for n in ("broken", "n0", "n1", "protected")
    ]


def test_termination_is_done_when_only_deleting_nodes_remain() -> None:
    nodes = [node("gone", deleting=True, ready=False, state="Deleting")]
    p = plan(declared(spec(desiredState="Terminated")), observed(nodes))
    assert p.terminating
    assert p.empty


def test_stopped_powers_running_nodes_off() -> None:
    nodes = [*ready_nodes(2), node("already", power_state="Stopped", state="Stopped", ready=False)]
    p = plan(declared(spec(desiredState="Stopped")), observed(nodes))

    assert list(p.power) == [SetPower("n0", "Stopped"), SetPower("n1", "Stopped")]
    assert p.creates == () and p.deletes == ()


def test_stopped_cluster_creates_nodes_stopped() -> None:
    nodes = [node("s0", power_state="Stopped", state="Stopped", ready=False)]
    p = plan(declared(spec(desiredState="Stopped", targetNodes=3)), observed(nodes))

    assert len(p.creates) == 2
    assert {c.power_state for c in p.creates} == {"Stopped"}
    assert p.power == ()


def test_stopped_nodes_are_not_unhealthy() -> None:
    nodes = [
        node(f"s{i}", power_state="Stopped", state=state, ready=False, age=99999)
        for i, state in enumerate(["Stopping", "Stopped", "Stopped"])
    ]
    p = plan(declared(spec(desiredState="Stopped")), observed(nodes))
    assert p.unhealthy == ()
    assert p.empty


def test_running_again_powers_stopped_nodes_on() -> None:
    nodes = [
        node("s0", power_state="Stopped", state="Stopped", ready=False),
        node("s1", power_state="Stopped", state="Stopped", ready=False),
        node("r0"),
    ]
    p = plan(declared(spec(desiredState="Running")), observed(nodes))

    assert list(p.power) == [SetPower("s0", "Running"), SetPower("s1", "Running")]
    assert p.creates == () and p.deletes == ()


def test_running_cluster_creates_nodes_running() -> None:
    p = plan(declared(spec(targetNodes=2)), observed())
    assert {c.power_state for c in p.creates} == {"Running"}


def test_power_is_not_requested_for_nodes_being_removed() -> None:
    nodes = ready_nodes(4)
    p = plan(declared(spec(desiredState="Stopped", targetNodes=2)), observed(nodes))

    removed = {d.name for d in p.deletes}
    assert len(removed) == 2
    assert {s.name for s in p.power} == {n.name for n in nodes} - removed


def test_plan_empty_reports_whether_anything_is_to_be_done() -> None:
    steady = plan(declared(spec()), observed(ready_nodes(3)))
    assert steady.empty
    assert steady.blockers == ()
    assert not plan(declared(spec()), observed(ready_nodes(2))).empty


def test_paused_blocker_message_names_the_field() -> None:
    p = plan(declared(spec(paused=True)), observed())
    assert p.blockers == (Blocker("Paused", "spec.paused is true: nothing is changed"),)


@pytest.mark.parametrize(
    ("desired_state", "held"),
    [("Running", "Stopped"), ("Stopped", "Running")],
    ids=["held-stopped-in-running-cluster", "held-running-in-stopped-cluster"],
)
def test_a_node_held_by_an_operation_keeps_its_power_state(desired_state: str, held: str) -> None:
    other = "Stopped" if desired_state == "Stopped" else "Running"
    nodes = [
        node("held", power_state=held, state=held, ready=held == "Running", power_hold=held),
        node("free", power_state=held, state=held, ready=held == "Running"),
    ]
    p = plan(declared(spec(desiredState=desired_state, targetNodes=2)), observed(nodes))

    assert list(p.power) == [SetPower("free", other)]
