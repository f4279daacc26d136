"""Health: which nodes are unhealthy, and how plan() remediates them (bounded by
maxUnhealthy so that a provider outage does not become a remediation storm)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from builders import NOW, declared, node, observed, ready_nodes, spec

from nodecluster.api.nodecluster import HealthPolicy
from nodecluster.planning.model import NodeView
from nodecluster.planning.planner import DeleteNode, RebootNode, is_unhealthy, plan

DEFAULT = HealthPolicy()  # startup 600 s, unhealthy 300 s
STRICT = HealthPolicy.model_validate(
    {"nodeStartupTimeoutSeconds": 60, "unhealthyTimeoutSeconds": 0}
)


def since(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def never_got_a_machine(name: str, reason: str, state: str | None = None) -> NodeView:
    """A node that has waited long for a machine the provider refuses to make."""
    return node(name, state=state, ready=False, has_machine=False, age=9999, error_reason=reason)


@pytest.mark.parametrize(
    ("n", "policy", "expected"),
    [
        (node("ok"), DEFAULT, False),
        (node("failed", state="Failed", ready=False, age=1), DEFAULT, True),
        (node("failed-del", state="Failed", ready=False, deleting=True), DEFAULT, False),
        # Errors that are not the machine's fault: replacing it would not help.
        (never_got_a_machine("quota", "QuotaExceeded"), DEFAULT, False),
        (never_got_a_machine("capacity", "CapacityExceeded", state="Failed"), DEFAULT, False),
        (never_got_a_machine("config", "InvalidProviderConfig"), DEFAULT, False),
        (
            node("other-error", state="Failed", ready=False, error_reason="ProviderUnavailable"),
            DEFAULT,
            True,
        ),
        # A machine gone at the provider: unhealthy at once, whatever the timeouts.
        (
            node("missing", state="Failed", ready=False, age=1, error_reason="MachineMissing"),
            DEFAULT,
            True,
        ),
        # Transitional states are expected to be not ready.
        *[
            (
                node(s.lower(), state=s, ready=False, age=99999, unhealthy_since=since(99999)),
                DEFAULT,
                False,
            )
            for s in ("Stopping", "Stopped", "Starting", "Rebooting", "Deleting")
        ],
        # Startup: measured from creation against nodeStartupTimeoutSeconds.
        (
            node("nomachine-young", state=None, ready=False, has_machine=False, age=599),
            DEFAULT,
            False,
        ),
        (node("nomachine-old", state=None, ready=False, has_machine=False, age=601), DEFAULT, True),
        (node("pending-old", state="Pending", ready=False, age=601), DEFAULT, True),
        (node("provisioning-young", state="Provisioning", ready=False, age=599), DEFAULT, False),
        (node("provisioning-old", state="Provisioning", ready=False, age=601), DEFAULT, True),
        (node("provisioning-strict", state="Provisioning", ready=False, age=61), STRICT, True),
        # Running but not ready: measured from unhealthySince (or creation).
        (node("notready-brief", ready=False, unhealthy_since=since(299)), DEFAULT, False),
        (node("notready-long", ready=False, unhealthy_since=since(301)), DEFAULT, True),
        (node("notready-no-since", ready=False, age=301), DEFAULT, True),
        (node("notready-new", ready=False, age=10), DEFAULT, False),
        (node("notready-strict", ready=False, unhealthy_since=since(1)), STRICT, True),
        (
            node("unknown-long", state="Unknown", ready=False, unhealthy_since=since(301)),
            DEFAULT,
            True,
        ),
        (node("ready-with-old-since", unhealthy_since=since(99999)), DEFAULT, False),
    ],
    ids=lambda v: v.name if isinstance(v, NodeView) else None,
)
def test_is_unhealthy(n: NodeView, policy: HealthPolicy, expected: bool) -> None:
    assert is_unhealthy(n, NOW, policy) is expected


FAILED = node("failed", state="Failed", ready=False)
DEAD = node("dead", ready=False, unhealthy_since=since(3600))


def health(**fields: Any) -> dict[str, Any]:
    return {"policies": {"health": fields}}


def test_recreate_deletes_unhealthy_and_creates_replacements_in_one_plan() -> None:
    nodes = [*ready_nodes(3), FAILED, DEAD]
    p = plan(declared(spec(health(recovery="Recreate"), targetNodes=5)), observed(nodes))

    assert sorted(p.deletes, key=lambda d: d.name) == [
        DeleteNode("dead", "Remediation"),
        DeleteNode("failed", "Remediation"),
    ]
    assert len(p.creates) == 2
    assert not {c.name for c in p.creates} & {n.name for n in nodes}
    assert p.remediating
    assert sorted(p.unhealthy) == ["dead", "failed"]
    assert p.blockers == ()


def test_recreate_with_scale_in_does_not_delete_more_than_needed() -> None:
    nodes = [*ready_nodes(3), FAILED]
    p = plan(declared(spec(health(recovery="Recreate"), targetNodes=2)), observed(nodes))

    reasons = sorted((d.reason, d.name) for d in p.deletes)
    assert reasons[0] == ("Remediation", "failed")
    assert [r for r, _ in reasons].count("ScaleIn") == 1
    assert p.creates == ()


def test_reboot_asks_for_a_reboot_and_keeps_the_node() -> None:
    nodes = [*ready_nodes(2), DEAD]
    p = plan(declared(spec(health(recovery="Reboot"))), observed(nodes))

    assert p.reboots == (RebootNode("dead"),)
    assert p.deletes == () and p.creates == ()
    assert p.remediating


def test_recovery_none_only_reports() -> None:
    nodes = [*ready_nodes(2), DEAD]
    p = plan(declared(spec(health(recovery="None"))), observed(nodes))

    assert p.unhealthy == ("dead",)
    assert p.empty
    assert not p.remediating


MISSING = node("missing", state="Failed", ready=False, error_reason="MachineMissing")
"""A node whose machine was deleted at the provider behind the operator's back."""


@pytest.mark.parametrize("recovery", ["Recreate", "Reboot", "None"])
def test_a_missing_machine_is_replaced_whatever_the_recovery(recovery: str) -> None:
    nodes = [*ready_nodes(2), MISSING]
    p = plan(declared(spec(health(recovery=recovery))), observed(nodes))

    assert p.deletes == (DeleteNode("missing", "Remediation"),)
    assert len(p.creates) == 1
    assert p.reboots == ()
    assert p.remediating
    assert p.unhealthy == ("missing",)


def test_reboot_replaces_the_missing_and_reboots_the_rest() -> None:
    nodes = [*ready_nodes(1), MISSING, DEAD]
    p = plan(declared(spec(health(recovery="Reboot"))), observed(nodes))

    assert p.deletes == (DeleteNode("missing", "Remediation"),)
    assert p.reboots == (RebootNode("dead"),)


def test_recovery_none_leaves_a_failed_machine_that_still_exists() -> None:
    nodes = [*ready_nodes(1), MISSING, FAILED]
    p = plan(declared(spec(health(recovery="None"))), observed(nodes))

    assert p.deletes == (DeleteNode("missing", "Remediation"),)
    assert sorted(p.unhealthy) == ["failed", "missing"]


@pytest.mark.parametrize("recovery", ["Reboot", "None"])
def test_max_unhealthy_bounds_the_replacement_of_missing_machines(recovery: str) -> None:
    """A provider answering NotFound for every machine must not get them all recreated."""
    gone = [
        node(f"gone{i}", state="Failed", ready=False, error_reason="MachineMissing")
        for i in range(3)
    ]
    the_spec = spec(health(recovery=recovery, maxUnhealthy=1), targetNodes=3)
    p = plan(declared(the_spec), observed(gone))

    assert [b.reason for b in p.blockers] == ["TooManyUnhealthy"]
    assert p.empty


@pytest.mark.parametrize(
    ("sick", "asked"),
    [
        (DEAD, True),
        (replace(DEAD, reboot_pending=True), False),
        (replace(DEAD, state="Rebooting"), False),
        (replace(FAILED, reboot_pending=True), False),
    ],
    ids=["not-asked-yet", "asked-not-carried-out", "rebooting", "failed-asked"],
)
def test_a_reboot_is_not_asked_for_again_while_one_is_pending(sick: NodeView, asked: bool) -> None:
    p = plan(declared(spec(health(recovery="Reboot"))), observed([*ready_nodes(2), sick]))

    assert p.reboots == ((RebootNode(sick.name),) if asked else ())
    assert p.deletes == () and p.creates == ()


@pytest.mark.parametrize(
    ("max_unhealthy", "target", "unhealthy", "blocked"),
    [
        (None, 5, 4, False),
        (0, 5, 1, True),
        (1, 5, 1, False),
        (1, 5, 2, True),
        ("40%", 5, 2, False),
        ("40%", 5, 3, True),
        ("50%", 3, 1, False),  # 1.5 rounds down to 1
        ("50%", 3, 2, True),
        ("100%", 4, 4, False),
    ],
    ids=[
        "unlimited",
        "zero",
        "count-at-limit",
        "count-over",
        "percent-at-limit",
        "percent-over",
        "percent-rounds-down-at",
        "percent-rounds-down-over",
        "all",
    ],
)
@pytest.mark.parametrize("recovery", ["Recreate", "Reboot"])
def test_max_unhealthy_short_circuits_remediation(
    max_unhealthy: int | str | None, target: int, unhealthy: int, blocked: bool, recovery: str
) -> None:
    sick = [node(f"sick{i}", ready=False, unhealthy_since=since(3600)) for i in range(unhealthy)]
    nodes = [*ready_nodes(target - unhealthy), *sick]
    the_spec = spec(health(recovery=recovery, maxUnhealthy=max_unhealthy), targetNodes=target)
    p = plan(declared(the_spec), observed(nodes))

    assert len(p.unhealthy) == unhealthy
    if blocked:
        assert [b.reason for b in p.blockers] == ["TooManyUnhealthy"]
        assert p.empty
        assert not p.remediating
    else:
        assert p.blockers == ()
        assert p.remediating
        touched = len(p.deletes) if recovery == "Recreate" else len(p.reboots)
        assert touched == unhealthy


# -- the Kubernetes Node (`run --nodes`, healthPolicy.nodeNotReadyTimeoutSeconds) -------------

NODES = HealthPolicy.model_validate(
    {"nodeNotReadyTimeoutSeconds": 120, "nodeStartupTimeoutSeconds": 600}
)


@pytest.mark.parametrize(
    ("n", "policy", "watching", "expected"),
    [
        (node("ready", node="Ready", node_since=since(9999)), NODES, True, False),
        (node("notready-brief", node="NotReady", node_since=since(119)), NODES, True, False),
        (node("notready-long", node="NotReady", node_since=since(121)), NODES, True, True),
        (node("unregistered-young", node="NotRegistered", age=599), NODES, True, False),
        (node("unregistered-old", node="NotRegistered", age=601), NODES, True, True),
        # Without the option, or without the operator following Nodes, the Node is not
        # looked at: a NodeReady left by an earlier run must not remediate anything.
        (node("no-option", node="NotReady", node_since=since(9999)), DEFAULT, True, False),
        (node("not-watching", node="NotReady", node_since=since(9999)), NODES, False, False),
        (node("unknown", node=None), NODES, True, False),
        # The machine's own health still comes first.
        (node("stopped", state="Stopped", ready=False, node="NotReady"), NODES, True, False),
        # Asked to stop (desiredState Stopped, a StopNodes operation) and its status not
        # written since: its Node going NotReady is the stop, not a fault.
        (
            node("stop-asked", power_state="Stopped", node="NotReady", node_since=since(9999)),
            NODES,
            True,
            False,
        ),
        # Running again after a stop or a reboot, its Node NotReady since before: a kubelet
        # starting, given nodeStartupTimeoutSeconds from the restart, as a new machine is.
        *[
            (
                node(name, node=health, node_since=since(9999), restarted_at=since(ago)),
                NODES,
                True,
                bad,
            )
            for name, health, ago, bad in (
                ("restarted-booting", "NotReady", 599, False),
                ("restarted-never-back", "NotReady", 601, True),
                ("restarted-unregistered", "NotRegistered", 599, False),
                ("restarted-unregistered-long", "NotRegistered", 601, True),
            )
        ],
        (
            node(
                "restarted-same-second",
                node="NotReady",
                node_since=since(200),
                restarted_at=since(200),
            ),
            NODES,
            True,
            False,
        ),
        # Not Ready again since the restart: the ordinary timeout, from then.
        (
            node(
                "restarted-fell-over",
                node="NotReady",
                node_since=since(121),
                restarted_at=since(500),
            ),
            NODES,
            True,
            True,
        ),
    ],
    ids=lambda v: v.name if isinstance(v, NodeView) else None,
)
def test_node_health(n: NodeView, policy: HealthPolicy, watching: bool, expected: bool) -> None:
    assert is_unhealthy(n, NOW, policy, watching_nodes=watching) is expected


def test_a_node_not_ready_is_looked_at_again_when_its_timeout_runs_out() -> None:
    cluster = spec(targetNodes=2, policies={"health": NODES.wire()})
    nodes = [
        node("a", node="NotReady", node_since=since(20)),
        node("b", node="Ready", node_since=since(9999)),
    ]

    p = plan(declared(cluster), observed(nodes, watching_nodes=True))

    assert p.empty
    assert p.recheck_at == since(20) + timedelta(seconds=120)


def test_a_node_not_ready_too_long_is_recreated() -> None:
    cluster = spec(targetNodes=2, policies={"health": NODES.wire()})
    nodes = [node("a", node="NotReady", node_since=since(200)), node("b", node="Ready")]

    p = plan(declared(cluster), observed(nodes, watching_nodes=True))

    assert p.deletes == (DeleteNode("a", "Remediation"),)
    assert p.unhealthy == ("a",)
