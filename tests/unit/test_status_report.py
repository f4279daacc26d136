"""cluster_status: what a NodeCluster reconcile writes after executing its plan.

The rules the controller used to apply by overriding fields (Terminating while anything
remains, lastScaleTime only for a change of size, a remediation's Recovering kept while
its replacements come) now live in one pure function, tested here by tables.
"""

from __future__ import annotations

import pytest
from builders import NOW, declared, node, observed, ready_nodes, spec

from nodecluster.api.nodecluster import NodeClusterStatus
from nodecluster.planning.model import NodeView
from nodecluster.planning.planner import plan
from nodecluster.planning.status import SizeChange, after, cluster_status


@pytest.mark.parametrize(
    ("existing", "target", "change"),
    [
        (3, 5, SizeChange(3, 5)),
        (5, 2, SizeChange(5, 2)),
        (0, 3, SizeChange(0, 3)),
        (3, 3, None),
    ],
    ids=["scale-out", "scale-in", "first-deploy", "no-change"],
)
def test_a_change_of_size_stamps_the_last_scale_time(
    existing: int, target: int, change: SizeChange | None
) -> None:
    d = declared(spec(targetNodes=target))
    o = observed(ready_nodes(existing))

    report = cluster_status(d, o, plan(d, o))

    assert report.size_change == change
    assert report.status.last_scale_time == (NOW if change else None)


def test_replacing_a_broken_node_is_no_change_of_size() -> None:
    d = declared(spec(targetNodes=3))
    o = observed([*ready_nodes(2), node("broken", state="Failed", ready=False)])
    p = plan(d, o)
    assert p.deletes and p.creates

    report = cluster_status(d, o, p)

    assert report.size_change is None
    assert report.status.state == "Recovering"
    assert report.status.unhealthy_nodes == 1


@pytest.mark.parametrize(
    ("existing", "left", "expected"),
    [(3, 0, "Terminating"), (0, 2, "Terminating"), (0, 0, "Terminated")],
    ids=["nodes-left", "orphan-machines-left", "all-gone"],
)
def test_a_terminating_cluster_is_terminated_only_when_nothing_remains(
    existing: int, left: int, expected: str
) -> None:
    d = declared(spec(desiredState="Terminated"))
    o = observed(ready_nodes(existing))

    report = cluster_status(d, o, plan(d, o), machines_left=left)

    assert report.status.state == expected
    assert report.size_change is None


def stopped_nodes(count: int) -> list[NodeView]:
    return ready_nodes(count, state="Stopped", ready=False, power_state="Stopped")


@pytest.mark.parametrize(
    ("desired_state", "existing", "previous", "target", "expected"),
    [
        ("Stopped", stopped_nodes(3), "Stopped", 1, "Stopping"),
        ("Stopped", stopped_nodes(3), "Stopped", 0, "Stopping"),
        ("Running", ready_nodes(3), "Deployed", 1, "Scaling"),
        ("Running", ready_nodes(3), "Deployed", 0, "Scaling"),
    ],
    ids=["stopped-scale-in", "stopped-to-zero", "deployed-scale-in", "running-to-empty"],
)
def test_the_write_that_issues_deletes_is_not_ready(
    desired_state: str, existing: list[NodeView], previous: str, target: int, expected: str
) -> None:
    d = declared(spec(targetNodes=target, desiredState=desired_state))
    o = observed(existing, previous=NodeClusterStatus(state=previous))
    p = plan(d, o)
    assert len(p.deletes) == 3 - target

    status = cluster_status(d, o, p).status

    conditions = {c.type: c.status for c in status.conditions}
    assert (status.state, conditions["Ready"], conditions["Reconciling"]) == (
        expected,
        "False",
        "True",
    )
    assert status.current_nodes == target


def test_the_status_counts_what_the_plan_is_about_to_do() -> None:
    d = declared(spec(targetNodes=5))
    o = observed(ready_nodes(3), previous=NodeClusterStatus(state="Deployed"))
    p = plan(d, o)

    status = cluster_status(d, o, p).status

    assert status.current_nodes == 5
    assert status.ready_nodes == 3
    assert status.state == "Scaling"


def test_after_marks_deletes_and_adds_creates() -> None:
    d = declared(spec(targetNodes=2, desiredState="Stopped"))
    o = observed(ready_nodes(3), headroom=4)
    p = plan(d, o)

    world = after(o, p, d.profile_hash)

    deleting = [n.name for n in world.nodes if n.deleting]
    assert len(deleting) == len(p.deletes) == 1
    assert {n.power_state for n in world.nodes if not n.deleting} == {"Stopped"}
    assert world.headroom == 4 - len(p.creates)
