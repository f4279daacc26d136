"""Lifecycle hooks, pure: how a node's wait moves (planning.hooks.advance), and what the
cluster's planner and status make of nodes that wait.

Times are fixed (builders.NOW); every case says which rule could break it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from builders import NOW, declared, node, observed, spec
from pydantic import ValidationError

from nodecluster.api.hooks import HookWait, LifecycleHook
from nodecluster.api.reasons import Reason
from nodecluster.planning.hooks import advance, describe, waiting_message
from nodecluster.planning.planner import plan
from nodecluster.planning.status import derive_status

CONFIGURE = "hooks.nodecluster.io/configure"
REGISTER = "hooks.nodecluster.io/register"
BEAT = "heartbeat.hooks.nodecluster.io/configure"


def hooks(*items: dict[str, Any]) -> list[LifecycleHook]:
    return [LifecycleHook.model_validate(h) for h in items]


TWO = hooks(
    {"name": "configure", "transition": "Launch", "timeoutSeconds": 300},
    {"name": "register", "transition": "Launch", "timeoutSeconds": 60, "defaultResult": "Continue"},
    {"name": "backup", "transition": "Terminate", "timeoutSeconds": 120},
)


def later(seconds: float) -> Any:
    return NOW + timedelta(seconds=seconds)


def waiting(name: str = "configure", started: float = 0, deadline: float = 300) -> HookWait:
    return HookWait(
        name=name, transition="Launch", started_at=later(started), deadline=later(deadline)
    )


def test_no_hooks_of_the_transition_is_no_wait() -> None:
    for progress in (
        advance([], "Launch", None, {}, NOW),
        advance(None, "Terminate", None, {}, NOW),
    ):
        assert progress.wait is None
        assert progress.outcomes == ()


def test_the_first_hook_starts_with_its_own_timeout() -> None:
    progress = advance(TWO, "Launch", None, {}, NOW)

    assert progress.wait == waiting()
    assert progress.outcomes == ()


@pytest.mark.parametrize(
    ("annotations", "wait_on", "outcomes"),
    [
        # Completed in order: the second starts when the first ends, from then.
        ({CONFIGURE: "Continue"}, "register", ("configure: Continue",)),
        # Both already annotated (a Job that did both): both end in one look.
        (
            {CONFIGURE: "Continue", REGISTER: "Continue"},
            None,
            ("configure: Continue", "register: Continue"),
        ),
        # Abandon ends the sequence: register is never waited on.
        ({CONFIGURE: "Abandon", REGISTER: "Continue"}, None, ("configure: Abandon",)),
        # A hook's annotation counts only when it is the hook waited on.
        ({REGISTER: "Abandon"}, "configure", ()),
    ],
)
def test_annotations_complete_hooks_in_order(
    annotations: dict[str, str], wait_on: str | None, outcomes: tuple[str, ...]
) -> None:
    progress = advance(TWO, "Launch", waiting(), annotations, later(10))

    assert (progress.wait.name if progress.wait else None) == wait_on
    assert tuple(describe([o]) for o in progress.outcomes) == outcomes
    if wait_on == "register":
        assert progress.wait is not None
        assert progress.wait.started_at == later(10)
        assert progress.wait.deadline == later(70)


def test_an_invalid_value_is_reported_and_the_timeout_still_runs() -> None:
    progress = advance(TWO, "Launch", waiting(), {CONFIGURE: "continue"}, later(10))

    assert progress.wait == waiting()
    assert progress.invalid is not None
    assert "'continue'" in progress.invalid and CONFIGURE in progress.invalid

    timed_out = advance(TWO, "Launch", waiting(), {CONFIGURE: "yes"}, later(300))
    assert timed_out.abandoned  # configure's default
    assert describe(timed_out.outcomes) == "configure: Abandon (timed out)"


@pytest.mark.parametrize(
    ("now", "abandoned", "wait_on"),
    [
        (299, False, "configure"),  # one second before the deadline: still waiting
        (300, True, None),  # at it: configure's default, Abandon, ends everything
    ],
)
def test_the_deadline_applies_the_default(now: float, abandoned: bool, wait_on: str | None) -> None:
    progress = advance(TWO, "Launch", waiting(), {}, later(now))

    assert progress.abandoned is abandoned
    assert (progress.wait.name if progress.wait else None) == wait_on


def test_a_timeout_to_continue_goes_on() -> None:
    register = waiting("register", started=0, deadline=60)

    progress = advance(TWO, "Launch", register, {}, later(60))

    assert progress.wait is None
    assert not progress.abandoned
    assert describe(progress.outcomes) == "register: Continue (timed out)"


def test_a_new_heartbeat_restarts_the_timeout_and_the_same_one_does_not() -> None:
    beat = advance(TWO, "Launch", waiting(), {BEAT: "2025-03-01T12:04:00Z"}, later(240))

    assert beat.wait is not None
    assert beat.wait.deadline == later(540)
    assert beat.wait.heartbeat == "2025-03-01T12:04:00Z"

    same = advance(TWO, "Launch", beat.wait, {BEAT: "2025-03-01T12:04:00Z"}, later(540))
    assert same.abandoned  # no new heartbeat: the restarted timeout ran out


def test_heartbeats_cannot_extend_a_wait_past_its_bound() -> None:
    # configure: 300 s, so at most 100 x 300 s (8 h 20 min, under 48 h) from its start.
    bound = 100 * 300
    near = waiting(deadline=bound - 10)

    progress = advance(TWO, "Launch", near, {BEAT: "again"}, later(bound - 20))

    assert progress.wait is not None
    assert progress.wait.deadline == later(bound)


def test_a_cluster_deletion_ignores_heartbeats_and_bounds_each_hook_by_its_timeout() -> None:
    backup = HookWait(
        name="backup",
        transition="Terminate",
        started_at=later(0),
        deadline=later(5000),
        heartbeat="a",
    )
    beat = {"heartbeat.hooks.nodecluster.io/backup": "b"}

    progress = advance(TWO, "Terminate", backup, beat, later(1000), deleting_since=later(900))

    assert progress.wait is not None
    assert progress.wait.deadline == later(900 + 120)  # backup's timeout from the deletion
    assert progress.wait.heartbeat == "a"  # the new one was not taken
    done = advance(TWO, "Terminate", progress.wait, beat, later(1020), deleting_since=later(900))
    assert done.wait is None
    assert done.abandoned  # backup's default: the machine goes without later hooks


def test_a_hook_removed_while_waited_on_lets_the_node_go() -> None:
    gone = waiting("configured-before")

    progress = advance(TWO, "Launch", gone, {}, later(1))

    assert progress.wait is None
    assert not progress.abandoned
    assert describe(progress.outcomes) == "configured-before: Continue (hook removed)"


def test_the_waiting_message_says_how_to_complete_the_hook() -> None:
    message = waiting_message(waiting())

    assert message.startswith("Pending:Wait on Launch hook 'configure' until 2025-03-01T12:05:00Z")
    assert "hooks.nodecluster.io/configure=Continue or Abandon" in message
    assert BEAT in message


@pytest.mark.parametrize(
    ("hooks_spec", "field"),
    [
        ([{"name": "a", "transition": "Launch", "timeoutSeconds": 29}], "timeoutSeconds"),
        ([{"name": "a", "transition": "Launch", "timeoutSeconds": 3601}], "timeoutSeconds"),
        ([{"name": "A_b", "transition": "Launch"}], "name"),
        ([{"name": "a", "transition": "Boot"}], "on"),
        ([{"name": "a", "transition": "Launch", "defaultResult": "Retry"}], "defaultResult"),
        ([{"name": f"h{i}", "transition": "Launch"} for i in range(9)], "lifecycleHooks"),
    ],
)
def test_the_model_refuses_what_the_schema_refuses(hooks_spec: list[Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        spec({"policies": {"lifecycleHooks": hooks_spec}})
    assert field in str(err.value) or "lifecycle_hooks" in str(err.value)


def test_hooks_default_to_nothing_and_a_hook_to_ten_minutes_then_abandon() -> None:
    assert spec().policies.lifecycle_hooks is None
    hook = LifecycleHook.model_validate({"name": "a", "transition": "Launch"})
    assert (hook.timeout_seconds, hook.default_result) == (600, "Abandon")


# The cluster's side: a node waiting on its Launch hook is not ready, not updated, and
# not judged by health; a rollout does not go past it; status counts waits per hook.


def launching(name: str, age: float = 60, **fields: Any) -> Any:
    return node(name, age=age, ready=False, hook="configure", launching=True, **fields)


def test_a_launching_node_is_not_remediated_however_long_it_waits() -> None:
    the_spec = spec(targetNodes=1)  # unhealthyTimeoutSeconds 300, startup 600

    p = plan(declared(the_spec), observed([launching("n0", age=3000)]))

    assert p.unhealthy == ()
    assert p.deletes == ()
    assert p.recheck_at is None  # its hook's deadline is the node's to look at


def test_a_rollout_does_not_go_past_nodes_waiting_on_their_launch_hook() -> None:
    the_spec = spec({"policies": {"rollout": {"maxSurge": 1, "maxUnavailable": 0}}}, targetNodes=2)
    old = [node("o0", profile_hash="old"), node("o1", profile_hash="old")]

    p = plan(declared(the_spec), observed([*old, launching("n0")]))

    assert p.rolling
    assert p.deletes == ()  # the new node is not available yet: nothing old goes
    assert p.creates == ()  # and the surge is used by it


def test_an_abandoned_launch_is_replaced_whatever_the_recovery() -> None:
    the_spec = spec({"policies": {"health": {"recovery": "None"}}}, targetNodes=1)
    abandoned = node("n0", state="Failed", ready=False, error_reason=Reason.LAUNCH_ABANDONED)

    p = plan(declared(the_spec), observed([abandoned]))

    assert [(d.name, d.reason) for d in p.deletes] == [("n0", "Remediation")]


def test_status_counts_waits_per_hook_and_no_launching_node_as_ready_or_updated() -> None:
    the_spec = spec(targetNodes=3)
    nodes = [
        node("n0"),
        launching("n1"),
        launching("n2"),
        node("n3", deleting=True, ready=False, hook="backup"),
    ]
    obs = observed(nodes)

    status = derive_status(declared(the_spec), obs, plan(declared(the_spec), obs))

    assert status.hook_waits == {"backup": 1, "configure": 2}
    assert (status.ready_nodes, status.updated_nodes, status.current_nodes) == (1, 1, 3)
    assert status.state != "Deployed"


def test_a_cluster_without_hooks_reports_no_hook_waits() -> None:
    obs = observed([node("n0"), node("n1"), node("n2")])
    status = derive_status(declared(spec()), obs, plan(declared(spec()), obs))

    assert status.hook_waits is None
    assert "hookWaits" not in status.wire()
    assert status.updated_nodes == 3
