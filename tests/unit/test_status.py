"""derive_status / derive_state: the lifecycle state and kstatus conditions a reconcile
writes, computed from the same (declared, observed, plan) the controller uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from builders import NOW, OUTDATED, declared, node, observed, ready_nodes, spec

from nodecluster.api.common import Condition
from nodecluster.api.nodecluster import NodeClusterSpec, NodeClusterStatus
from nodecluster.planning.model import NodeView
from nodecluster.planning.planner import plan
from nodecluster.planning.status import derive_state, derive_status, selector_for

EARLIER = NOW - timedelta(hours=5)
NO_PROVIDER = ("ProviderNotFound", "NodeProvider 'sim' does not exist")


@dataclass
class Case:
    """One world and what its status must say."""

    state: str
    nodes: list[NodeView] = field(default_factory=list)
    spec: dict[str, Any] = field(default_factory=dict)
    previous: str | None = None
    deleting: bool = False
    observed: dict[str, Any] = field(default_factory=dict)
    conditions: tuple[bool, bool, bool, bool] = (False, True, False, False)
    """Expected statuses of Ready, Reconciling, Stalled, Degraded; default PROGRESSING."""
    stalled_reason: str | None = None
    degraded_reason: str | None = None


def status_of(case: Case, generation: int = 1) -> NodeClusterStatus:
    d = declared(spec(case.spec), generation=generation, deleting=case.deleting)
    o = observed(case.nodes, previous=NodeClusterStatus(state=case.previous), **case.observed)
    return derive_status(d, o, plan(d, o))


def stopped(name: str, **fields: Any) -> NodeView:
    return node(name, state="Stopped", ready=False, power_state="Stopped", **fields)


def deleting(name: str) -> NodeView:
    return node(name, state="Deleting", ready=False, deleting=True)


def failing(name: str, reason: str) -> NodeView:
    return node(
        name,
        state=None,
        ready=False,
        has_machine=False,
        age=30,
        error_reason=reason,
        error_message=f"{reason} at the provider",
    )


# Ready, Reconciling, Stalled, Degraded
CONVERGED = (True, False, False, False)
STUCK = (False, False, True, False)
STUCK_DEGRADED = (False, False, True, True)
FIXING = (False, True, False, True)

CASES = {
    "init-no-provider": Case(
        "Init",
        observed={"provider_problem": NO_PROVIDER},
        conditions=STUCK,
        stalled_reason="ProviderNotFound",
    ),
    "deploying-fresh": Case("Deploying"),
    "deploying-provisioning": Case(
        "Deploying",
        nodes=[node(f"p{i}", state="Provisioning", ready=False, age=30) for i in range(3)],
        previous="Deploying",
    ),
    "deployed": Case("Deployed", ready_nodes(3), previous="Deploying", conditions=CONVERGED),
    "deployed-with-a-node-held-stopped": Case(
        "Deployed",
        [*ready_nodes(2), stopped("held", power_hold="Stopped")],
        previous="Deployed",
        conditions=CONVERGED,
    ),
    "partly-deployed-node-error": Case(
        "PartlyDeployed",
        [*ready_nodes(2), failing("f0", "CapacityExceeded")],
        previous="Deploying",
        conditions=STUCK_DEGRADED,
        stalled_reason="CapacityExceeded",
        degraded_reason="CapacityExceeded",
    ),
    "partly-deployed-quota": Case(
        "PartlyDeployed",
        ready_nodes(3),
        spec={"targetNodes": 5},
        previous="Deployed",
        observed={"headroom": 0},
        conditions=STUCK,
        stalled_reason="QuotaExceeded",
    ),
    "error-every-node-failing": Case(
        "Error",
        [failing(f"f{i}", "QuotaExceeded") for i in range(3)],
        previous="Deploying",
        conditions=STUCK_DEGRADED,
        stalled_reason="QuotaExceeded",
        degraded_reason="QuotaExceeded",
    ),
    "error-provider-lost-after-deploy": Case(
        "Error",
        previous="Deployed",
        observed={"provider_problem": NO_PROVIDER},
        conditions=STUCK,
        stalled_reason="ProviderNotFound",
    ),
    "deployed-but-provider-deleted": Case(
        # The nodes are as they were; nothing about them can change any more.
        "Deployed",
        ready_nodes(3),
        previous="Deployed",
        observed={"provider_problem": NO_PROVIDER},
        conditions=STUCK,
        stalled_reason="ProviderNotFound",
    ),
    "deployed-provider-misconfigured": Case(
        # It exists and is fixed in place: nothing to change meanwhile, so still Ready.
        "Deployed",
        ready_nodes(3),
        previous="Deployed",
        observed={"provider_problem": ("InvalidProviderConfig", "NodeProvider 'sim': bad")},
        conditions=CONVERGED,
    ),
    "deployed-provider-being-deleted": Case(
        "Deployed",
        ready_nodes(3),
        previous="Deployed",
        observed={"no_new_machines": ("ProviderDeleting", "NodeProvider 'sim' is being deleted")},
        conditions=CONVERGED,
    ),
    "scaling-up-provider-being-deleted": Case(
        "PartlyDeployed",
        ready_nodes(3),
        spec={"targetNodes": 5},
        previous="Deployed",
        observed={"no_new_machines": ("ProviderDeleting", "NodeProvider 'sim' is being deleted")},
        conditions=STUCK,
        stalled_reason="ProviderDeleting",
    ),
    "terminating-provider-deleted": Case(
        "Terminating",
        [deleting("d0")],
        deleting=True,
        previous="Terminating",
        observed={"provider_problem": NO_PROVIDER},
        conditions=STUCK,
        stalled_reason="ProviderNotFound",
    ),
    "terminated-provider-deleted": Case(
        "Terminated",
        spec={"desiredState": "Terminated"},
        previous="Terminated",
        observed={"provider_problem": NO_PROVIDER},
        conditions=CONVERGED,
    ),
    "scaling-up": Case("Scaling", ready_nodes(3), spec={"targetNodes": 5}, previous="Deployed"),
    "scaling-down": Case("Scaling", ready_nodes(5), spec={"targetNodes": 3}, previous="Deployed"),
    "scaling-down-machines-going": Case(
        "Scaling", [*ready_nodes(3), deleting("d0"), deleting("d1")], previous="Scaling"
    ),
    "updating": Case("Updating", ready_nodes(3, profile_hash=OUTDATED), previous="Deployed"),
    "recovering": Case(
        "Recovering",
        [*ready_nodes(2), node("bad", state="Failed", ready=False)],
        previous="Deployed",
        conditions=FIXING,
        degraded_reason="UnhealthyNodes",
    ),
    "stopping": Case(
        "Stopping", ready_nodes(3), spec={"desiredState": "Stopped"}, previous="Deployed"
    ),
    "stopping-partly": Case(
        "Stopping",
        [stopped("s0"), node("s1", state="Stopping", ready=False, power_state="Stopped")],
        spec={"desiredState": "Stopped", "targetNodes": 2},
        previous="Stopping",
    ),
    "stopping-machines-going": Case(
        "Stopping",
        [stopped("s0"), deleting("d0"), deleting("d1")],
        spec={"desiredState": "Stopped", "targetNodes": 1},
        previous="Stopped",
    ),
    "stopping-to-zero-machines-going": Case(
        "Stopping",
        [deleting("d0")],
        spec={"desiredState": "Stopped", "targetNodes": 0},
        previous="Stopped",
    ),
    "stopped": Case(
        "Stopped",
        [stopped(f"s{i}") for i in range(3)],
        spec={"desiredState": "Stopped"},
        previous="Stopping",
        conditions=CONVERGED,
    ),
    "starting": Case("Starting", [stopped(f"s{i}") for i in range(3)], previous="Stopped"),
    "starting-midway": Case(
        "Starting",
        [*ready_nodes(2), node("s2", state="Starting", ready=False)],
        previous="Starting",
    ),
    "terminating": Case(
        "Terminating", ready_nodes(2), spec={"desiredState": "Terminated"}, previous="Deployed"
    ),
    "terminating-machines-going": Case(
        "Terminating", [deleting("d0")], deleting=True, previous="Terminating"
    ),
    "terminated": Case(
        "Terminated",
        spec={"desiredState": "Terminated"},
        previous="Terminating",
        conditions=CONVERGED,
    ),
    "empty": Case("Empty", spec={"targetNodes": 0}, conditions=CONVERGED),
    "emptying-machines-going": Case(
        "Scaling", [deleting("d0")], spec={"targetNodes": 0}, previous="Deployed"
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_state(case: Case) -> None:
    d = declared(spec(case.spec), deleting=case.deleting)
    o = observed(case.nodes, previous=NodeClusterStatus(state=case.previous), **case.observed)
    state, message = derive_state(d, o, plan(d, o))
    assert state == case.state
    assert message


def test_every_state_is_covered() -> None:
    from typing import get_args

    from nodecluster.api.nodecluster import ClusterState

    assert {c.state for c in CASES.values()} == set(get_args(ClusterState))


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_conditions_follow_kstatus(case: Case) -> None:
    status = status_of(case)
    by_type = {c.type: c for c in status.conditions}

    assert list(by_type) == ["Ready", "Reconciling", "Stalled", "Degraded"]
    got = tuple(by_type[t].status == "True" for t in by_type)
    assert got == case.conditions
    assert status.state == case.state
    # kstatus: never both Ready and in progress / stuck.
    if by_type["Ready"].status == "True":
        assert by_type["Reconciling"].status == "False"
        assert by_type["Stalled"].status == "False"
    if case.stalled_reason:
        assert by_type["Stalled"].reason == case.stalled_reason
        assert by_type["Stalled"].message
    if case.degraded_reason:
        assert by_type["Degraded"].reason == case.degraded_reason
    for c in status.conditions:
        assert c.reason, c
        assert c.last_transition_time == NOW


@pytest.mark.parametrize("generation", [1, 2, 17])
def test_observed_generation_is_the_declared_generation(generation: int) -> None:
    status = status_of(CASES["deployed"], generation=generation)
    assert status.observed_generation == generation
    assert {c.observed_generation for c in status.conditions} == {generation}


def test_selector_is_the_cluster_label() -> None:
    assert status_of(CASES["deployed"]).selector == "nodecluster.io/cluster=web"
    assert selector_for("db") == "nodecluster.io/cluster=db"


def previous_conditions(ready: str, at: datetime) -> NodeClusterStatus:
    other = "False" if ready == "True" else "True"
    return NodeClusterStatus(
        state="Deployed",
        conditions=[
            Condition(type="Ready", status=ready, reason="Old", last_transition_time=at),
            Condition(type="Reconciling", status=other, reason="Old", last_transition_time=at),
            Condition(type="Stalled", status="False", reason="Old", last_transition_time=at),
            Condition(type="Degraded", status="False", reason="Old", last_transition_time=at),
        ],
    )


@pytest.mark.parametrize(
    ("before", "nodes", "ready_now", "ready_since", "reconciling_since"),
    [
        ("True", ready_nodes(3), "True", EARLIER, EARLIER),
        ("False", ready_nodes(3), "True", NOW, NOW),
        ("True", ready_nodes(2), "False", NOW, NOW),
        ("False", ready_nodes(2), "False", EARLIER, EARLIER),
    ],
    ids=["stays-ready", "becomes-ready", "stops-being-ready", "stays-unready"],
)
def test_last_transition_time_moves_only_when_status_changes(
    before: str,
    nodes: list[NodeView],
    ready_now: str,
    ready_since: datetime,
    reconciling_since: datetime,
) -> None:
    d = declared(spec())
    o = observed(nodes, previous=previous_conditions(before, EARLIER))
    status = derive_status(d, o, plan(d, o))
    by_type = {c.type: c for c in status.conditions}

    assert by_type["Ready"].status == ready_now
    assert by_type["Ready"].last_transition_time == ready_since
    assert by_type["Reconciling"].last_transition_time == reconciling_since
    # Stalled stayed False: its time is kept even though its reason changed.
    assert by_type["Stalled"].status == "False"
    assert by_type["Stalled"].last_transition_time == EARLIER
    assert by_type["Stalled"].reason != "Old"


def test_ready_needs_an_empty_plan_not_just_the_right_count() -> None:
    # Three ready nodes, but one was asked to stop and must be powered on again.
    nodes = [*ready_nodes(2), node("asked-to-stop", power_state="Stopped")]
    d = declared(spec())
    o = observed(nodes, previous=NodeClusterStatus(state="Deployed"))
    p = plan(d, o)
    status = derive_status(d, o, p)

    assert not p.empty
    by_type = {c.type: c.status for c in status.conditions}
    assert by_type == {
        "Ready": "False",
        "Reconciling": "True",
        "Stalled": "False",
        "Degraded": "False",
    }


def test_paused_is_neither_ready_nor_reconciling() -> None:
    d = declared(spec(paused=True, targetNodes=5))
    o = observed(ready_nodes(3), previous=NodeClusterStatus(state="Deployed"))
    status = derive_status(d, o, plan(d, o))
    by_type = {c.type: c for c in status.conditions}

    assert by_type["Ready"].status == "False"
    assert by_type["Reconciling"].status == "False"
    assert by_type["Reconciling"].reason == "Paused"


def test_too_many_unhealthy_is_degraded_with_that_reason() -> None:
    sick = [node(f"sick{i}", state="Failed", ready=False) for i in range(2)]
    d = declared(spec({"policies": {"health": {"maxUnhealthy": 1}}}))
    o = observed([*ready_nodes(1), *sick], previous=NodeClusterStatus(state="Deployed"))
    status = derive_status(d, o, plan(d, o))
    degraded = next(c for c in status.conditions if c.type == "Degraded")

    assert degraded.status == "True"
    assert degraded.reason == "TooManyUnhealthy"
    assert status.unhealthy_nodes == 2


def test_counts_exclude_deleting_nodes() -> None:
    the_spec: NodeClusterSpec = spec(targetNodes=4)
    nodes = [
        node("a0", zone="a"),
        node("a1", zone="a", profile_hash=OUTDATED),
        node("b0", zone="b", state="Provisioning", ready=False, age=10),
        stopped("b1", zone="b"),
        node("gone", zone="c", deleting=True, ready=False, state="Deleting"),
    ]
    d = declared(the_spec, profile_hash="hash-current")
    o = observed(nodes, previous=NodeClusterStatus(state="Scaling"))
    status = derive_status(d, o, plan(d, o))

    assert status.current_nodes == 4
    assert status.ready_nodes == 2
    assert status.stopped_nodes == 1
    assert status.updated_nodes == 3
    assert status.zones == {"a": 2, "b": 2}
    assert status.profile_hash == "hash-current"
