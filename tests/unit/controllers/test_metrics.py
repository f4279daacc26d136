"""The metrics move as the fleet does: clusters converge, fail, are remediated, scale in and
go, and each family of the contract (controllers/metrics.py) says so, read as a scrape
reads it (the world's own registry)."""

from __future__ import annotations

from pathlib import Path

from clusters import NS, cluster_body, condition, live_nodes, nodes, state
from conftest import provider_body

from nodecluster.controllers.kubeapi import NODECLUSTERS, NODEPROVIDERS
from nodecluster.providers.base import CapacityExceeded, Retryable
from nodecluster.providers.simulator import Inventory
from nodecluster.testing import FakeKube, Harness
from nodecluster.testing.drivers import DriverFaults

CLUSTER = {"namespace": NS, "cluster": "web"}
LATENCY = 10.0
"""Seconds the simulator takes to make a machine Running (loop time)."""


def value(harness: Harness, family: str, **labels: str) -> float | None:
    """One sample of the running world's metrics, as a scrape shows it."""
    return harness.world.metrics.sample(family, labels)


def cluster_value(
    harness: Harness, family: str, cluster: str = "web", **labels: str
) -> float | None:
    """One sample of a cluster's series."""
    return value(harness, family, namespace=NS, cluster=cluster, **labels)


async def deployed(fake: FakeKube, harness: Harness, inventory: Path, **spec: object) -> None:
    """Provider `sim` (machines Running after LATENCY) and cluster `web`, Deployed."""
    fake.add(
        NODEPROVIDERS,
        provider_body(inventory, config={"createLatencySeconds": LATENCY}),
    )
    await fake.create(NODECLUSTERS, NS, cluster_body(**spec))
    await harness.wait_for(lambda: state(fake) == "Deployed", what="Deployed")


async def test_a_converging_cluster_exports_its_counts_state_and_conditions(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deployed(fake, harness, inventory)

    assert cluster_value(harness, "nodecluster_info", provider="sim") == 1
    for gauge in ("target", "current", "ready", "updated"):
        assert cluster_value(harness, f"nodecluster_{gauge}_nodes") == 3, gauge
    assert cluster_value(harness, "nodecluster_unhealthy_nodes") == 0
    assert cluster_value(harness, "nodecluster_state", state="Deployed") == 1
    assert cluster_value(harness, "nodecluster_state", state="Deploying") == 0
    ready = {"type": "Ready", "status": "True", "reason": condition(fake, "Ready")["reason"]}
    assert cluster_value(harness, "nodecluster_condition", **ready) == 1
    assert cluster_value(harness, "nodecluster_machines_created_total", reason="ScaleOut") == 3


async def test_machine_startup_is_measured_once_per_machine_from_create_to_running(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deployed(fake, harness, inventory)

    startup = "nodecluster_machine_startup_duration_seconds"
    assert value(harness, f"{startup}_count", provider="sim") == 3
    total = value(harness, f"{startup}_sum", provider="sim")
    assert total is not None and total >= 3 * LATENCY
    # Within the bucket of the simulator's latency and the one after, none sooner.
    assert value(harness, f"{startup}_bucket", provider="sim", le="5.0") == 0

    await harness.restart()
    await harness.idle()
    # The status says Running already: a restarted operator does not count them again,
    # and still exports the cluster after its first look (which writes nothing).
    assert value(harness, f"{startup}_count", provider="sim") is None
    assert cluster_value(harness, "nodecluster_ready_nodes") == 3


async def test_provider_calls_and_reconciles_are_timed_and_queues_counted(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deployed(fake, harness, inventory)

    creates = value(
        harness, "nodecluster_provider_call_duration_seconds_count", provider="sim", call="create"
    )
    assert creates == 3
    for kind in ("NodeCluster", "ClusterNode", "NodeProvider"):
        count = value(harness, "nodecluster_reconcile_duration_seconds_count", kind=kind)
        assert count is not None and count >= 1, kind
        assert value(harness, "workqueue_adds_total", name=kind), kind
        assert value(harness, "workqueue_depth", name=kind) == 0, kind
    assert value(harness, "nodecluster_reconcile_errors_total", kind="NodeCluster") is None


async def test_the_provider_gauges_follow_its_usage_and_quota(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, quotas={"maxNodes": 2}))
    await fake.create(NODECLUSTERS, NS, cluster_body())

    await harness.wait_for(lambda: value(harness, "nodeprovider_nodes", provider="sim") == 2)
    assert value(harness, "nodeprovider_nodes_limit", provider="sim") == 2
    assert value(harness, "nodeprovider_cores_limit", provider="sim") is None  # not set
    assert value(harness, "nodeprovider_ready", provider="sim") == 1
    stalled = {"type": "Stalled", "status": "True", "reason": "QuotaExceeded"}
    await harness.wait_for(lambda: cluster_value(harness, "nodecluster_condition", **stalled) == 1)
    assert cluster_value(harness, "nodecluster_current_nodes") == 2
    assert cluster_value(harness, "nodecluster_target_nodes") == 3


async def test_failed_provider_calls_are_counted_by_error_class_and_reason(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    faults.fail("create", Retryable("the cloud is down"), times=2)
    faults.fail("create", CapacityExceeded("no small machines in zone-a"), times=1)

    await deployed(fake, harness, inventory)

    errors = "nodecluster_provider_call_errors_total"
    labels = {"provider": "sim", "call": "create"}
    assert value(harness, errors, error="Retryable", **labels) == 2
    assert value(harness, errors, error="CapacityExceeded", **labels) == 1
    failed = "nodecluster_machines_failed_total"
    assert cluster_value(harness, failed, reason="ProviderUnavailable") == 2
    assert cluster_value(harness, failed, reason="CapacityExceeded") == 1
    retries = value(harness, "workqueue_retries_total", name="ClusterNode")
    assert retries is not None and retries >= 3
    # Handled failures (reported on the node, retried): no unexpected reconcile error.
    assert value(harness, "nodecluster_reconcile_errors_total", kind="ClusterNode") is None


async def test_a_call_cut_off_by_its_deadline_counts_as_a_timeout(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    faults.hang("create", times=1)
    fake.add(NODEPROVIDERS, provider_body(inventory, callTimeoutSeconds=30))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=1))
    await harness.wait_for(lambda: state(fake) == "Deployed", what="Deployed")

    errors = "nodecluster_provider_call_errors_total"
    assert value(harness, errors, provider="sim", call="create", error="Timeout") == 1


async def test_an_unexpected_reconcile_error_is_counted_and_shown_as_degraded(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    # The status write fails once: the failure is reported (Degraded) and retried.
    broken = fake.fail("patch_status", "nodeclusters", 500)
    await fake.create(NODECLUSTERS, NS, cluster_body())

    await harness.wait_for(lambda: broken.fired == 1, what="the failed write")
    degraded = {"type": "Degraded", "status": "True", "reason": "APIUnavailable"}
    await harness.wait_for(
        lambda: cluster_value(harness, "nodecluster_condition", **degraded) == 1,
        what="Degraded in the gauges",
    )
    assert value(harness, "nodecluster_reconcile_errors_total", kind="NodeCluster") == 1
    await harness.wait_for(lambda: state(fake) == "Deployed", what="Deployed")
    assert cluster_value(harness, "nodecluster_condition", **degraded) is None


async def test_a_broken_machine_counts_as_remediated_deleted_and_replaced(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deployed(fake, harness, inventory)
    victim = nodes(fake)[0]["metadata"]["name"]
    broken = Inventory(inventory)
    try:
        assert broken.set_failed(victim)
    finally:
        broken.close()

    await harness.wait_for(
        lambda: (
            victim not in {n["metadata"]["name"] for n in nodes(fake)} and state(fake) == "Deployed"
        ),
        what="the broken node replaced",
    )
    assert cluster_value(harness, "nodecluster_machines_remediated_total", reason="MachineFailed")
    assert cluster_value(harness, "nodecluster_machines_deleted_total", reason="Remediation") == 1
    assert cluster_value(harness, "nodecluster_machines_created_total", reason="Replacement") == 1
    assert cluster_value(harness, "nodecluster_machines_created_total", reason="ScaleOut") == 3


async def test_a_scale_in_counts_deletions_and_a_deleted_cluster_leaves_no_series(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deployed(fake, harness, inventory)
    await fake.create(NODECLUSTERS, NS, cluster_body(name="db", targetNodes=1))
    await harness.wait_for(lambda: state(fake, "db") == "Deployed", what="db Deployed")

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 1}})
    await harness.wait_for(lambda: len(nodes(fake)) == 1, what="scaled in")
    await harness.wait_for(lambda: cluster_value(harness, "nodecluster_current_nodes") == 1)
    assert cluster_value(harness, "nodecluster_machines_deleted_total", reason="ScaleIn") == 2

    await fake.delete(NODECLUSTERS, NS, "web")
    await harness.wait_for(lambda: fake.stored(NODECLUSTERS, NS, "web") is None, what="gone")
    await harness.idle()

    assert cluster_value(harness, "nodecluster_info", provider="sim") is None
    assert cluster_value(harness, "nodecluster_state", state="Terminating") is None
    assert cluster_value(harness, "nodecluster_machines_created_total", reason="ScaleOut") is None
    assert harness.world.metrics.clusters.keys() == {(NS, "db")}
    assert harness.world.metrics.machine_events.keys() == {(NS, "db")}
    assert cluster_value(harness, "nodecluster_ready_nodes", cluster="db") == 1
    assert live_nodes(fake, "db")


async def test_a_reboot_recovery_counts_as_remediated_and_deletes_nothing(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deployed(fake, harness, inventory, policies={"health": {"recovery": "Reboot"}})
    victim = nodes(fake)[0]["metadata"]["name"]
    broken = Inventory(inventory)
    try:
        assert broken.set_failed(victim)
    finally:
        broken.close()

    remediated = "nodecluster_machines_remediated_total"
    await harness.wait_for(
        lambda: cluster_value(harness, remediated, reason="MachineFailed") == 1,
        what="the reboot counted",
    )
    await harness.wait_for(lambda: state(fake) == "Deployed", what="Deployed again")
    assert cluster_value(harness, remediated, reason="MachineFailed") == 1
    deleted = "nodecluster_machines_deleted_total"
    assert cluster_value(harness, deleted, reason="Remediation") is None
    assert victim in {n["metadata"]["name"] for n in nodes(fake)}
