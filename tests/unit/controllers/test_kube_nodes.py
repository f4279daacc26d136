"""Machines that become Kubernetes Nodes (`run --nodes`, issue 12): the link, the labels
and taints kept on the Node, Node health, and the drain before a machine is deleted.

The fake API has no kubelet: a test registers a machine's Node itself (`register`), with
the provider id the simulator gave the machine, as a kubelet or kwok would; pods are put
on a Node by `spec.nodeName`, and PodDisruptionBudgets carry the status the disruption
controller would give them.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clusters import NS, cluster_body, live_nodes, machines, nodes, state
from conftest import provider_body

from nodecluster.clock import LoopClock, rfc3339
from nodecluster.controllers.kubeapi import (
    CLUSTERNODES,
    NODECLUSTERS,
    NODEPROVIDERS,
    NODES,
    PODDISRUPTIONBUDGETS,
    PODS,
)
from nodecluster.controllers.world import Settings
from nodecluster.testing import FakeKube, Harness


@pytest.fixture
def settings() -> Settings:
    """Node integration on."""
    return Settings(nodes=True)


def node_body(
    name: str,
    provider_id: str,
    ready: str = "True",
    since: datetime | None = None,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Node as a kubelet registers it."""
    since = since or LoopClock().now()
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"providerID": provider_id, **({"taints": taints} if taints else {})},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": ready,
                    "reason": "KubeletReady" if ready == "True" else "KubeletNotReady",
                    "lastTransitionTime": rfc3339(since),
                    "lastHeartbeatTime": rfc3339(since),
                }
            ]
        },
    }


def register(fake: FakeKube, ready: str = "True") -> list[str]:
    """Register a Node for every ClusterNode whose machine has none yet (a kubelet's
    first status); the Nodes' names."""
    have = {n["spec"]["providerID"] for n in fake.objects(NODES)}
    names = []
    for cn in fake.objects(CLUSTERNODES, NS):
        pid = (cn.get("status") or {}).get("providerId")
        if pid and pid not in have and not cn["metadata"].get("deletionTimestamp"):
            name = f"node-{cn['metadata']['name']}"
            fake.add(NODES, node_body(name, pid, ready=ready))
            names.append(name)
    return names


def cn_status(fake: FakeKube, name: str) -> dict[str, Any]:
    return (fake.stored(CLUSTERNODES, NS, name) or {}).get("status", {})


def node_ready(fake: FakeKube, name: str) -> dict[str, Any]:
    conditions = cn_status(fake, name).get("conditions", [])
    return next((c for c in conditions if c["type"] == "NodeReady"), {})


def linked(fake: FakeKube) -> bool:
    return bool(nodes(fake)) and all(
        (n.get("status") or {}).get("nodeRef") for n in live_nodes(fake)
    )


def pod_body(name: str, node: str, app: str = "web", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "apps", "labels": {"app": app}, **meta},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0},
        "status": {"phase": "Running"},
    }


def budget_body(allowed: int, app: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": app, "namespace": "apps"},
        "spec": {"selector": {"matchLabels": {"app": app}}, "minAvailable": 1},
        "status": {
            "observedGeneration": 1,
            "disruptionsAllowed": allowed,
            "currentHealthy": 1 + allowed,
            "desiredHealthy": 1,
            "expectedPods": 1 + allowed,
        },
    }


async def deployed(
    fake: FakeKube, harness: Harness, inventory: Path, **spec: Any
) -> list[dict[str, Any]]:
    """A cluster whose machines all have Ready Nodes, linked; its ClusterNodes."""
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(**spec))
    await harness.wait_for(lambda: state(fake) == "Deployed", what="Deployed")
    register(fake)
    await harness.wait_for(lambda: linked(fake), what="every machine linked to its Node")
    # The provider's usage figures are refreshed a few seconds after the last create.
    await asyncio.sleep(10)
    await harness.idle()
    return nodes(fake)


# -- the link --------------------------------------------------------------------------------


async def test_a_machine_is_linked_to_the_node_with_its_provider_id(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=1))
    await harness.wait_for(lambda: state(fake) == "Deployed")
    [cn] = nodes(fake)
    name = cn["metadata"]["name"]
    # Running, no Node yet: said so, in the write that said Running.
    assert node_ready(fake, name)["reason"] == "NodeNotRegistered"
    assert "nodeRef" not in cn_status(fake, name)

    [node] = register(fake)
    await harness.wait_for(lambda: linked(fake), what="linked")

    stored = fake.stored(NODES, None, node)
    assert stored is not None
    assert cn_status(fake, name)["nodeRef"] == {"name": node, "uid": stored["metadata"]["uid"]}
    ready = node_ready(fake, name)
    assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")
    transition = stored["status"]["conditions"][0]["lastTransitionTime"]
    assert ready["lastTransitionTime"] == transition  # the Node's own time


async def test_a_node_registering_costs_one_status_write_and_its_heartbeats_none(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    """The link goes in a status write the node makes anyway when it can (a Node there
    before the machine's first report costs nothing); a Node registering later costs one.
    Heartbeats (status updates of nothing the operator reads) cost nothing, not a read."""
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=1))
    await harness.wait_for(lambda: state(fake) == "Deployed")
    await harness.idle()
    name = nodes(fake)[0]["metadata"]["name"]
    writes = len(fake.calls_of("patch_status", "clusternodes", name))
    register(fake)
    await harness.wait_for(lambda: linked(fake))
    await harness.idle()
    assert len(fake.calls_of("patch_status", "clusternodes", name)) == writes + 1
    fake.reset_journal()

    # A heartbeat (a status update that changes nothing the operator reads).
    [node] = fake.objects(NODES)
    conditions = node["status"]["conditions"]
    conditions[0]["lastHeartbeatTime"] = rfc3339(LoopClock().now() + timedelta(minutes=5))
    await fake.patch(
        NODES, None, node["metadata"]["name"], {"status": {"conditions": conditions}}, status=True
    )
    await harness.idle()
    assert fake.writes == 1  # the heartbeat itself
    assert not fake.calls_of(resource="clusternodes")  # not even a read


async def test_a_node_going_not_ready_and_going_away_is_followed(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    [cn] = await deployed(fake, harness, inventory, targetNodes=1)
    name = cn["metadata"]["name"]
    node = cn_status(fake, name)["nodeRef"]["name"]
    since = clock.now().replace(microsecond=0)
    unready = node_body(node, cn_status(fake, name)["providerId"], ready="Unknown", since=since)
    await fake.patch(NODES, None, node, {"status": unready["status"]}, status=True)
    await harness.wait_for(lambda: node_ready(fake, name).get("status") == "Unknown")
    assert node_ready(fake, name)["lastTransitionTime"] == rfc3339(since)

    await fake.delete(NODES, None, node)
    await harness.wait_for(lambda: node_ready(fake, name).get("reason") == "NodeNotRegistered")
    assert "nodeRef" not in cn_status(fake, name)


async def test_after_a_restart_a_node_registered_meanwhile_is_linked_and_nothing_else_written(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deployed(fake, harness, inventory, targetNodes=2)
    fake.reset_journal()
    await harness.restart()
    await harness.idle()
    assert fake.writes == 0, fake.calls

    await harness.stop()
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 3}})
    await harness.start()
    await harness.wait_for(lambda: state(fake) == "Deployed" and len(nodes(fake)) == 3)
    # The provider's usage totals follow a few seconds later.
    await harness.wait_for(
        lambda: (
            (fake.stored(NODEPROVIDERS, None, "sim") or {})
            .get("status", {})
            .get("usage", {})
            .get("machines")
            == 3
        )
    )
    await harness.idle()
    await harness.stop()
    register(fake)  # while the operator is away
    fake.reset_journal()
    await harness.start()
    await harness.wait_for(lambda: linked(fake), what="the new Node linked")
    await harness.idle()
    assert len(fake.calls_of("patch_status")) == 1  # the one node whose Node is new
    assert fake.writes == 1


# -- labels and taints -----------------------------------------------------------------------


PROFILE = {
    "machineType": "small",
    "nodeLabels": {"node-role.kubernetes.io/web": "", "tier": "front"},
    "nodeTaints": [{"key": "dedicated", "value": "web", "effect": "NoSchedule"}],
}


async def test_the_profiles_labels_and_taints_are_kept_on_the_node(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    [cn] = await deployed(fake, harness, inventory, targetNodes=1, profile=PROFILE)
    name = cn_status(fake, cn["metadata"]["name"])["nodeRef"]["name"]

    def node() -> dict[str, Any]:
        stored = fake.stored(NODES, None, name)
        assert stored is not None
        return stored

    await harness.wait_for(lambda: node()["metadata"]["labels"].get("tier") == "front")
    assert node()["metadata"]["labels"]["node-role.kubernetes.io/web"] == ""
    assert node()["metadata"]["labels"]["kubernetes.io/hostname"] == name  # others kept
    assert node()["spec"]["taints"] == [
        {"key": "dedicated", "value": "web", "effect": "NoSchedule"}
    ]

    # Someone else's taint, and our label removed: ours is put back, theirs kept.
    other = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}
    await fake.patch(
        NODES,
        None,
        name,
        {"metadata": {"labels": {"tier": None}}, "spec": {"taints": [other]}},
    )
    await harness.wait_for(lambda: node()["metadata"]["labels"].get("tier") == "front")
    await harness.wait_for(lambda: len(node()["spec"].get("taints", [])) == 2)
    assert node()["spec"]["taints"][0] == other

    # In sync: nothing is written, whatever wakes the node.
    await harness.idle()
    fake.reset_journal()
    await fake.patch(NODES, None, name, {"metadata": {"labels": {"unrelated": "x"}}})
    await harness.idle()
    assert fake.writes == 1  # the test's own patch
    assert not fake.calls_of("patch", "nodes")[1:]


# -- health ----------------------------------------------------------------------------------


async def test_a_node_not_ready_past_the_timeout_gets_its_machine_replaced(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    health = {"nodeNotReadyTimeoutSeconds": 120}
    [cn] = await deployed(fake, harness, inventory, targetNodes=1, policies={"health": health})
    victim = cn["metadata"]["name"]
    status = cn_status(fake, victim)
    unready = node_body(status["nodeRef"]["name"], status["providerId"], ready="False")
    await fake.patch(
        NODES, None, status["nodeRef"]["name"], {"status": unready["status"]}, status=True
    )
    await harness.wait_for(lambda: node_ready(fake, victim).get("status") == "False")
    noticed = clock.now()

    await harness.wait_for(lambda: victim not in {n["metadata"]["name"] for n in nodes(fake)})
    waited = (clock.now() - noticed).total_seconds()
    assert 120 <= waited < 180
    [event] = fake.events_about("web", reason="NodeRemediated")
    assert event["message"] == f"node {victim} is unhealthy; recreating it"


async def test_a_machine_whose_node_never_registers_is_replaced_after_the_startup_timeout(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    health = {"nodeNotReadyTimeoutSeconds": 60, "nodeStartupTimeoutSeconds": 300}
    fake.add(NODEPROVIDERS, provider_body(inventory))
    started = clock.now()
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=1, policies={"health": health}))
    await harness.wait_for(lambda: state(fake) == "Deployed")
    [first] = [n["metadata"]["name"] for n in nodes(fake)]

    await harness.wait_for(lambda: first not in {n["metadata"]["name"] for n in nodes(fake)})
    assert 300 <= (clock.now() - started).total_seconds() < 360
    assert fake.events_about("web", reason="NodeRemediated")


async def test_a_stopped_machine_is_not_judged_by_its_node_nor_when_started_again(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    """A stopped machine's Node goes NotReady (its kubelet is off): that is the stop, not a
    fault, however long it lasts. Started again, the machine runs before its kubelet has
    posted Ready: its Node, NotReady since the stop, gets nodeStartupTimeoutSeconds from
    then, as a new machine's does, instead of counting the stop as time not Ready."""
    health = {"nodeNotReadyTimeoutSeconds": 60, "nodeStartupTimeoutSeconds": 300}
    [cn] = await deployed(fake, harness, inventory, targetNodes=1, policies={"health": health})
    name = cn["metadata"]["name"]
    status = cn_status(fake, name)
    node, provider_id = status["nodeRef"]["name"], status["providerId"]

    async def node_goes(ready: str) -> None:
        since = clock.now().replace(microsecond=0)
        body = node_body(node, provider_id, ready=ready, since=since)
        await fake.patch(NODES, None, node, {"status": body["status"]}, status=True)
        await harness.wait_for(lambda: node_ready(fake, name).get("status") == ready)

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"desiredState": "Stopped"}})
    await harness.wait_for(lambda: state(fake) == "Stopped", what="Stopped")
    await node_goes("Unknown")
    await asyncio.sleep(3600)
    assert [n["metadata"]["name"] for n in nodes(fake)] == [name]

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"desiredState": "Running"}})
    await harness.wait_for(lambda: cn_status(fake, name).get("state") == "Running")
    await asyncio.sleep(250)  # a slow boot, within the startup timeout
    await harness.idle()
    assert [n["metadata"]["name"] for n in live_nodes(fake)] == [name]
    await node_goes("True")
    await harness.wait_for(lambda: state(fake) == "Deployed")
    assert not fake.events_about("web", reason="NodeRemediated")

    # A kubelet that never comes back is still noticed, once the startup timeout is over.
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"desiredState": "Stopped"}})
    await harness.wait_for(lambda: state(fake) == "Stopped", what="Stopped again")
    await node_goes("Unknown")
    await asyncio.sleep(600)
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"desiredState": "Running"}})
    await harness.wait_for(lambda: cn_status(fake, name).get("state") == "Running")
    started = clock.now()
    await harness.wait_for(lambda: name not in {n["metadata"]["name"] for n in nodes(fake)})
    assert 300 <= (clock.now() - started).total_seconds() < 360
    assert fake.events_about("web", reason="NodeRemediated")


async def test_without_the_option_a_node_not_ready_changes_nothing(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    [cn] = await deployed(fake, harness, inventory, targetNodes=1)
    name = cn["metadata"]["name"]
    status = cn_status(fake, name)
    unready = node_body(status["nodeRef"]["name"], status["providerId"], ready="False")
    await fake.patch(
        NODES, None, status["nodeRef"]["name"], {"status": unready["status"]}, status=True
    )
    await harness.wait_for(lambda: node_ready(fake, name).get("status") == "False")
    await asyncio.sleep(3600)
    assert [n["metadata"]["name"] for n in nodes(fake)] == [name]


# -- the drain -------------------------------------------------------------------------------


async def test_a_scale_in_drains_the_node_as_its_budget_allows_then_deletes_machine_and_node(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    [cn] = await deployed(fake, harness, inventory, targetNodes=1)
    victim = cn["metadata"]["name"]
    node = cn_status(fake, victim)["nodeRef"]["name"]
    fake.add(PODS, pod_body("web-1", node))
    fake.add(
        PODS,
        pod_body(
            "agent-1",
            node,
            app="agent",
            ownerReferences=[
                {
                    "apiVersion": "apps/v1",
                    "kind": "DaemonSet",
                    "name": "agent",
                    "uid": "u1",
                    "controller": True,
                }
            ],
        ),
    )
    fake.add(
        PODS,
        pod_body("static-1", node, app="static", annotations={"kubernetes.io/config.mirror": "x"}),
    )
    fake.add(PODDISRUPTIONBUDGETS, budget_body(allowed=0))

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 0}})
    await harness.wait_for(
        lambda: bool((cn_status(fake, victim).get("drain") or {}).get("blocked"))
    )
    drain = cn_status(fake, victim)["drain"]
    assert drain["pods"] == 1
    assert "The disruption budget web needs 1 healthy pods and has 1 currently" in drain["blocked"]
    assert fake.stored(NODES, None, node)["spec"]["unschedulable"] is True  # type: ignore[index]
    assert machines(inventory)  # not deleted while draining
    assert len(fake.events_about(victim, reason="Draining")) == 1

    # A minute of retries: the refusal is said once.
    await asyncio.sleep(60)
    assert len(fake.events_about(victim, reason="DrainBlocked")) == 1
    assert len(fake.calls_of("evict", "pods", "web-1")) >= 5

    # The budget allows it now (the disruption controller's job): the drain finishes.
    await fake.patch(
        PODDISRUPTIONBUDGETS, "apps", "web", {"status": budget_body(1)["status"]}, status=True
    )
    await harness.wait_for(lambda: fake.stored(CLUSTERNODES, NS, victim) is None, what="node gone")
    assert fake.stored(PODS, "apps", "web-1") is None
    assert fake.stored(PODS, "apps", "agent-1") is not None  # DaemonSet pods stay
    assert fake.stored(PODS, "apps", "static-1") is not None  # and mirror pods
    assert not machines(inventory)
    assert fake.stored(NODES, None, node) is None  # the Node goes after the machine
    assert not fake.calls_of("evict", "pods", "agent-1")
    assert not fake.events_about(victim, reason="DrainTimedOut")


async def test_a_drain_that_cannot_finish_times_out_and_the_machine_goes_anyway(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    deletion = {"drainTimeoutSeconds": 120}
    [cn] = await deployed(fake, harness, inventory, targetNodes=1, policies={"deletion": deletion})
    victim = cn["metadata"]["name"]
    node = cn_status(fake, victim)["nodeRef"]["name"]
    fake.add(PODS, pod_body("web-1", node))
    fake.add(PODDISRUPTIONBUDGETS, budget_body(allowed=0))
    start = clock.now()

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 0}})
    await harness.wait_for(lambda: fake.stored(CLUSTERNODES, NS, victim) is None, what="node gone")

    assert 120 <= (clock.now() - start).total_seconds() < 140
    [event] = fake.events_about(victim, reason="DrainTimedOut")
    assert "1 pods left" in event["message"]
    assert not machines(inventory)
    assert fake.stored(PODS, "apps", "web-1") is not None  # the budget was honoured


async def test_a_restart_mid_drain_keeps_its_start_and_says_nothing_twice(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    deletion = {"drainTimeoutSeconds": 300}
    [cn] = await deployed(fake, harness, inventory, targetNodes=1, policies={"deletion": deletion})
    victim = cn["metadata"]["name"]
    node = cn_status(fake, victim)["nodeRef"]["name"]
    fake.add(PODS, pod_body("web-1", node))
    fake.add(PODDISRUPTIONBUDGETS, budget_body(allowed=0))
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 0}})
    await harness.wait_for(
        lambda: bool((cn_status(fake, victim).get("drain") or {}).get("blocked"))
    )
    started = cn_status(fake, victim)["drain"]["startedAt"]

    await harness.restart(kill=True)
    await asyncio.sleep(30)
    assert cn_status(fake, victim)["drain"]["startedAt"] == started
    assert len(fake.events_about(victim, reason="Draining")) == 1
    assert len(fake.events_about(victim, reason="DrainBlocked")) == 1

    await harness.wait_for(lambda: fake.stored(CLUSTERNODES, NS, victim) is None, what="node gone")
    began = datetime.fromisoformat(started.replace("Z", "+00:00"))
    assert 300 <= (clock.now() - began).total_seconds() < 320  # from the first start


async def test_a_node_that_is_not_ready_does_not_wait_for_pods_it_cannot_stop(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    [cn] = await deployed(fake, harness, inventory, targetNodes=1)
    victim = cn["metadata"]["name"]
    status = cn_status(fake, victim)
    node = status["nodeRef"]["name"]
    pod = pod_body("web-1", node)
    pod["spec"]["terminationGracePeriodSeconds"] = 30  # stays terminating: no kubelet
    fake.add(PODS, pod)
    unready = node_body(node, status["providerId"], ready="Unknown")
    await fake.patch(NODES, None, node, {"status": unready["status"]}, status=True)
    start = clock.now()

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 0}})
    await harness.wait_for(lambda: fake.stored(CLUSTERNODES, NS, victim) is None, what="node gone")
    assert (clock.now() - start).total_seconds() < 30
    assert fake.stored(PODS, "apps", "web-1")["metadata"]["deletionTimestamp"]  # type: ignore[index]


async def test_deleting_the_cluster_drains_every_node(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    children = await deployed(fake, harness, inventory, targetNodes=2)
    for cn in children:
        node = cn_status(fake, cn["metadata"]["name"])["nodeRef"]["name"]
        fake.add(PODS, pod_body(f"pod-{node}", node, app=node))
    await fake.delete(NODECLUSTERS, NS, "web")
    await harness.wait_for(lambda: fake.stored(NODECLUSTERS, NS, "web") is None)
    assert not fake.objects(PODS, "apps")
    assert not fake.objects(NODES)
    assert not machines(inventory)


# -- off -------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [Settings(nodes=False)])
async def test_without_node_integration_nodes_are_never_touched(
    fake: FakeKube, harness: Harness, inventory: Path, settings: Settings
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=2, profile=PROFILE))
    await harness.wait_for(lambda: state(fake) == "Deployed")
    name = register(fake)[0]
    fake.add(PODS, pod_body("web-1", name))
    await asyncio.sleep(60)
    for cn in nodes(fake):
        status = cn["status"]
        assert "nodeRef" not in status
        assert [c["type"] for c in status["conditions"]] == ["Ready"]
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 0}})
    await harness.wait_for(lambda: not nodes(fake))

    assert not [c for c in fake.calls if c.resource in ("nodes", "pods")]
    assert fake.stored(PODS, "apps", "web-1") is not None
    assert len(fake.objects(NODES)) == 2
