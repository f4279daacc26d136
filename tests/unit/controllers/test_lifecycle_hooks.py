"""Lifecycle hooks on the fake API: a node waits at launch and at termination, visibly,
until its annotation (or its timeout, on the fake clock) says how to go on.

The annotation is what a Job or a person writes (`kubectl annotate`); the clock moves
with `asyncio.sleep` under looptime. Each test asserts on what was written: the node's
status and conditions, the cluster's counts, Events, the machines at the provider.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from clusters import NS, cluster_body, live_nodes, machines, nodes, state, status
from conftest import provider_body

from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.testing import FakeKube, Harness

CONFIGURE = {"name": "configure", "transition": "Launch", "timeoutSeconds": 300}
BACKUP = {
    "name": "backup",
    "transition": "Terminate",
    "timeoutSeconds": 120,
    "defaultResult": "Continue",
}


def node_status(fake: FakeKube, name: str) -> dict[str, Any]:
    return dict((fake.stored(CLUSTERNODES, NS, name) or {}).get("status", {}))


def node_condition(fake: FakeKube, name: str, ctype: str) -> dict[str, Any]:
    conditions = node_status(fake, name).get("conditions", [])
    return next((c for c in conditions if c["type"] == ctype), {})


def waiting_on(fake: FakeKube, name: str) -> str | None:
    hook = node_status(fake, name).get("lifecycleHook")
    return None if hook is None else str(hook["name"])


async def annotate(fake: FakeKube, name: str, **annotations: str) -> None:
    await fake.patch(CLUSTERNODES, NS, name, {"metadata": {"annotations": annotations}})


async def with_hooks(fake: FakeKube, inventory: Path, *hooks: dict[str, Any], **spec: Any) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    policies = {"lifecycleHooks": list(hooks), **spec.pop("policies", {})}
    await fake.create(NODECLUSTERS, NS, cluster_body(policies=policies, **spec))


async def first_waiting(fake: FakeKube, harness: Harness) -> str:
    await harness.wait_for(
        lambda: any(waiting_on(fake, n["metadata"]["name"]) for n in nodes(fake)),
        what="a node waiting on its launch hook",
    )
    return next(
        n["metadata"]["name"] for n in nodes(fake) if waiting_on(fake, n["metadata"]["name"])
    )


async def test_a_launch_hook_holds_the_node_not_ready_until_continue(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await with_hooks(fake, inventory, CONFIGURE, targetNodes=1)
    name = await first_waiting(fake, harness)
    await harness.idle()

    assert node_status(fake, name)["state"] == "Running"  # the machine runs ...
    assert node_status(fake, name)["ready"] is False  # ... but the node is not Ready
    ready = node_condition(fake, name, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "LaunchHookWait")
    hook = node_condition(fake, name, "LifecycleHook")
    assert (hook["status"], hook["reason"]) == ("True", "LaunchHookWait")
    assert "Pending:Wait on Launch hook 'configure'" in hook["message"]
    # (counts are progress: the cluster writes them within status_progress_seconds)
    await harness.wait_for(lambda: "hookWaits" in status(fake), what="hookWaits in status")
    assert status(fake)["readyNodes"] == 0
    assert status(fake)["updatedNodes"] == 0
    assert status(fake)["hookWaits"] == {"configure": 1}
    assert state(fake) != "Deployed"

    await annotate(fake, name, **{"hooks.nodecluster.io/configure": "Continue"})

    await harness.wait_for(lambda: state(fake) == "Deployed", what="Deployed after Continue")
    assert node_status(fake, name)["ready"] is True
    assert "lifecycleHook" not in node_status(fake, name)
    done = node_condition(fake, name, "LifecycleHook")
    assert (done["status"], done["reason"]) == ("False", "LaunchHooksCompleted")
    assert done["message"] == "configure: Continue"
    assert "hookWaits" not in status(fake)


async def test_a_launch_wait_outlives_the_health_timeouts_and_heartbeats_extend_it(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    """unhealthyTimeoutSeconds (60 here) does not judge a waiting node: its hook's
    timeout does; a new heartbeat restarts that timeout."""
    health = {"unhealthyTimeoutSeconds": 60}
    await with_hooks(fake, inventory, CONFIGURE, targetNodes=1, policies={"health": health})
    name = await first_waiting(fake, harness)
    deadline = node_status(fake, name)["lifecycleHook"]["deadline"]

    await asyncio.sleep(200)
    await annotate(fake, name, **{"heartbeat.hooks.nodecluster.io/configure": "1"})
    await harness.wait_for(lambda: node_status(fake, name)["lifecycleHook"]["deadline"] != deadline)
    await asyncio.sleep(250)  # 450 s after the start, past the first deadline

    assert waiting_on(fake, name) == "configure"
    assert [n["metadata"]["name"] for n in live_nodes(fake)] == [name]
    assert len(machines(inventory)) == 1


async def test_a_launch_timeout_abandons_the_machine_and_the_cluster_replaces_the_node(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await with_hooks(fake, inventory, CONFIGURE, targetNodes=1)
    name = await first_waiting(fake, harness)
    first_machine = {m["name"] for m in machines(inventory)}
    patches = len(fake.calls_of("patch", "clusternodes", name))

    await asyncio.sleep(301)  # the deadline passes: only the requeue at it can notice

    await harness.wait_for(
        lambda: (
            name not in {n["metadata"]["name"] for n in live_nodes(fake)}
            and len(live_nodes(fake)) == 1
        ),
        what="the abandoned node replaced",
    )
    assert len(fake.calls_of("patch", "clusternodes", name)) > patches
    events = fake.events_about(name, "LaunchAbandoned")
    assert len(events) == 1
    assert events[0]["type"] == "Warning"
    assert "configure: Abandon (timed out)" in events[0]["message"]
    failed = harness.world.metrics.machine_events[(NS, "web")]
    assert failed[("failed", "LaunchAbandoned")] == 1
    await harness.wait_for(
        lambda: not first_machine & {m["name"] for m in machines(inventory)},
        what="the abandoned machine deleted",
    )
    replacement = await first_waiting(fake, harness)
    assert replacement != name  # the new node waits on its own launch hook


async def test_an_invalid_value_is_said_in_the_condition_and_a_warning(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await with_hooks(fake, inventory, CONFIGURE, targetNodes=1)
    name = await first_waiting(fake, harness)

    await annotate(fake, name, **{"hooks.nodecluster.io/configure": "Done"})

    await harness.wait_for(
        lambda: node_condition(fake, name, "LifecycleHook").get("reason") == "InvalidHookResult"
    )
    assert (
        "'Done' is neither Continue nor Abandon"
        in node_condition(fake, name, "LifecycleHook")["message"]
    )
    await harness.idle()
    warnings = fake.events_about(name, "InvalidHookResult")
    assert [e["type"] for e in warnings] == ["Warning"]  # once, however many looks
    assert waiting_on(fake, name) == "configure"


async def test_a_restart_resumes_the_wait_with_its_deadline(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await with_hooks(fake, inventory, CONFIGURE, targetNodes=1)
    name = await first_waiting(fake, harness)
    before = node_status(fake, name)["lifecycleHook"]
    await harness.restart()

    await asyncio.sleep(100)
    await harness.idle()

    assert node_status(fake, name)["lifecycleHook"] == before
    await annotate(fake, name, **{"hooks.nodecluster.io/configure": "Continue"})
    await harness.wait_for(lambda: state(fake) == "Deployed")


async def test_a_node_deleted_during_its_launch_wait_runs_no_terminate_hook(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await with_hooks(fake, inventory, CONFIGURE, BACKUP, targetNodes=1, minNodes=0)
    name = await first_waiting(fake, harness)

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 0}})

    await harness.wait_for(
        lambda: fake.stored(CLUSTERNODES, NS, name) is None, within=30, what="the node gone"
    )
    assert machines(inventory) == []
    await harness.wait_for(lambda: state(fake) == "Empty")
    assert "hookWaits" not in status(fake)


async def test_a_terminate_hook_holds_the_machine_until_continue(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await with_hooks(fake, inventory, BACKUP, targetNodes=2)
    await harness.wait_for(lambda: state(fake) == "Deployed")
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 1}})

    await harness.wait_for(
        lambda: any(waiting_on(fake, n["metadata"]["name"]) == "backup" for n in nodes(fake)),
        what="the node scaled in waiting on its terminate hook",
    )
    name = next(
        n["metadata"]["name"] for n in nodes(fake) if waiting_on(fake, n["metadata"]["name"])
    )
    await asyncio.sleep(60)
    assert len(machines(inventory)) == 2  # the machine waits
    assert node_status(fake, name)["state"] == "Deleting"
    hook = node_condition(fake, name, "LifecycleHook")
    assert (hook["status"], hook["reason"]) == ("True", "TerminateHookWait")
    await harness.wait_for(lambda: status(fake).get("hookWaits") == {"backup": 1})

    await annotate(fake, name, **{"hooks.nodecluster.io/backup": "Continue"})

    await harness.wait_for(lambda: len(nodes(fake)) == 1 and len(machines(inventory)) == 1)


async def test_a_terminate_hook_times_out_and_a_cluster_deletion_ignores_heartbeats(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await with_hooks(fake, inventory, BACKUP, targetNodes=1)
    await harness.wait_for(lambda: state(fake) == "Deployed")
    name = nodes(fake)[0]["metadata"]["name"]

    await fake.delete(NODECLUSTERS, NS, "web")
    await harness.wait_for(lambda: waiting_on(fake, name) == "backup")
    for beat in range(2):  # heartbeats would keep it for ever; a deletion ignores them
        await asyncio.sleep(50)
        await annotate(fake, name, **{"heartbeat.hooks.nodecluster.io/backup": str(beat)})

    assert waiting_on(fake, name) == "backup"  # 100 s: within its timeout, it still waits

    await harness.wait_for(
        lambda: fake.stored(NODECLUSTERS, NS, "web") is None, within=30, what="cluster gone"
    )
    assert machines(inventory) == []
    timed_out = fake.events_about(name, "LifecycleHookTimedOut")
    assert len(timed_out) == 1


async def test_a_cluster_without_hooks_writes_nothing_more(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=2))
    await harness.wait_for(lambda: state(fake) == "Deployed")
    for n in nodes(fake):
        assert "lifecycleHook" not in n["status"]
        assert [c["type"] for c in n["status"]["conditions"]] == ["Ready"]
    await harness.idle()
    fake.reset_journal()
    await asyncio.sleep(3600)
    await harness.idle()
    assert fake.calls_of(resource="clusternodes") == []  # not a read, not a write
