"""A ClusterNode drives one machine: created, reported, powered, rebooted, deleted.

The nodes here are made by hand (as a person may, and as the NodeCluster controller does
with `child_body`), mostly without a NodeCluster, so that nothing but the ClusterNode
controller acts on them. The provider is the simulator behind the fault-injecting
wrapper (`faults`), so a test can make exactly one call fail.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import provider_body

from nodecluster import API_VERSION
from nodecluster.clock import LoopClock, rfc3339
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.controllers.world import NODE_FINALIZER
from nodecluster.providers.base import (
    CapacityExceeded,
    InvalidConfig,
    Machine,
    MachineSpec,
    ProviderConfig,
    ProviderDriver,
    ProviderError,
    QuotaExceeded,
    Retryable,
)
from nodecluster.providers.identity import node_of
from nodecluster.providers.registry import ProviderRegistry
from nodecluster.providers.simulator import Inventory
from nodecluster.testing import FakeKube, Harness
from nodecluster.testing.drivers import DriverFaults, FaultyPowerDriver, faulty_simulator

NS = "team-a"
CLUSTER_LABEL = "nodecluster.io/cluster"
"""The label naming a ClusterNode's cluster (what `kubectl get cn -l` selects on)."""
NODE = "web-x1"


@dataclass
class TimedFaults(DriverFaults):
    """DriverFaults that also note when (loop time) each call came."""

    moments: list[tuple[str, float]] = field(default_factory=list)

    async def around(self, call: Any, name: str | None, effect: Any) -> Any:
        self.moments.append((call, asyncio.get_running_loop().time()))
        return await super().around(call, name, effect)

    def at(self, call: str) -> list[float]:
        """The loop times of every `call`."""
        return [t for c, t in self.moments if c == call]


@pytest.fixture
def faults() -> TimedFaults:
    return TimedFaults()


class RecordingDriver(FaultyPowerDriver):
    """The faulty simulator, keeping every MachineSpec it is asked to create."""

    def __init__(self, inner: ProviderDriver, faults: DriverFaults, specs: list[MachineSpec]):
        super().__init__(inner, faults)
        self.specs = specs

    async def create(self, spec: MachineSpec) -> Machine:
        self.specs.append(spec)
        return await super().create(spec)


@pytest.fixture
def specs() -> list[MachineSpec]:
    """What the provider was asked to create, in order."""
    return []


@pytest.fixture
def registry(faults: TimedFaults, specs: list[MachineSpec]) -> ProviderRegistry:
    """`faulty` as in conftest, recording the specs it creates."""
    simulator = faulty_simulator(faults)

    def build(config: ProviderConfig) -> ProviderDriver:
        wrapped = simulator(config)
        assert isinstance(wrapped, FaultyPowerDriver)
        return RecordingDriver(wrapped.inner, faults, specs)

    registry = ProviderRegistry()
    registry.register("faulty", build)
    return registry


def node_body(name: str = NODE, cluster: str = "web", **spec: Any) -> dict[str, Any]:
    """A ClusterNode as the NodeCluster controller makes one (finalizer included)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterNode",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {CLUSTER_LABEL: cluster},
            "finalizers": [NODE_FINALIZER],
        },
        "spec": {
            "clusterName": cluster,
            "providerRef": {"name": "sim"},
            "profile": {"machineType": "small"},
            **spec,
        },
    }


def cluster_body(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "NodeCluster",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "providerRef": {"name": "sim"},
            "profile": {"machineType": "small"},
            "targetNodes": 1,
            **spec,
        },
    }


def node(fake: FakeKube, name: str = NODE) -> dict[str, Any] | None:
    return fake.stored(CLUSTERNODES, NS, name)


def node_status(fake: FakeKube, name: str = NODE) -> dict[str, Any]:
    return (node(fake, name) or {}).get("status", {})


def ready(fake: FakeKube, name: str = NODE) -> dict[str, Any]:
    conditions = node_status(fake, name).get("conditions", [])
    return next((c for c in conditions if c["type"] == "Ready"), {})


def machine_node(row: Any) -> str:
    """The node an inventory row belongs to (machines are named by the node's identity)."""
    return node_of(row["name"], json.loads(row["tags"]))


def live_machines(inventory: Path, clock: LoopClock) -> dict[str, str]:
    """Machines not being deleted, by node -> state column (read on the operator's clock)."""
    inv = Inventory(inventory, lambda: clock.now().timestamp())
    try:
        return {machine_node(r): r["power"] for r in inv.list() if r["deleting_at"] is None}
    finally:
        inv.close()


async def patch_spec(fake: FakeKube, **spec: Any) -> None:
    await fake.patch(CLUSTERNODES, NS, NODE, {"spec": spec})


async def running(fake: FakeKube, harness: Harness, name: str = NODE) -> None:
    await harness.wait_for(lambda: ready(fake, name).get("status") == "True", what="Ready")


async def test_a_new_node_gets_a_running_machine_and_reports_it(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(CLUSTERNODES, NS, node_body())

    await running(fake, harness)

    status = node_status(fake)
    assert status["state"] == "Running"
    assert status["ready"] is True
    assert status["providerId"].startswith("sim://")
    assert status["observedGeneration"] == 1
    assert status["machineType"] == "small"
    assert status["addresses"][0]["type"] == "InternalIP"
    assert status["addresses"][0]["address"].startswith("10.")
    assert ready(fake) | {"lastTransitionTime": None} == {
        "type": "Ready",
        "status": "True",
        "reason": "MachineRunning",
        "message": "machine is Running",
        "observedGeneration": 1,
        "lastTransitionTime": None,
    }
    assert faults.count("create", NODE) == 1


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (CapacityExceeded("no small machines left in zone-a"), "CapacityExceeded"),
        (QuotaExceeded("machine quota reached: 5 of 5 in use"), "QuotaExceeded"),
        (InvalidConfig("image ami-0 does not exist"), "InvalidProviderConfig"),
        (Retryable("503 Service Unavailable"), "ProviderUnavailable"),
        (ProviderError("something odd"), "ProviderError"),
    ],
)
async def test_a_refused_create_is_reported_by_the_errors_type(
    fake: FakeKube,
    harness: Harness,
    inventory: Path,
    faults: DriverFaults,
    error: ProviderError,
    reason: str,
) -> None:
    faults.fail("create", error, times=None)
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(CLUSTERNODES, NS, node_body())

    await harness.wait_for(lambda: ready(fake).get("reason") == reason, what=reason)

    assert ready(fake)["status"] == "False"
    assert ready(fake)["message"] == str(error)
    status = node_status(fake)
    assert status["message"] == str(error)
    assert status["state"] == "Pending"
    assert status["ready"] is False
    assert "providerId" not in status


async def test_a_failing_create_is_retried_with_growing_backoff_until_it_succeeds(
    fake: FakeKube, harness: Harness, inventory: Path, faults: TimedFaults
) -> None:
    faults.fail("create", Retryable("503 Service Unavailable"), times=3)
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(CLUSTERNODES, NS, node_body())

    await running(fake, harness)

    attempts = faults.at("create")
    assert len(attempts) == 4
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # 1s, 2s, 4s, each +-20% jitter: every wait longer than the one before.
    assert 0.8 <= gaps[0] <= 1.2
    assert gaps[0] < gaps[1] < gaps[2]
    status = node_status(fake)
    assert status["state"] == "Running"
    assert "message" not in status
    assert ready(fake)["reason"] == "MachineRunning"


async def test_a_node_of_a_missing_provider_says_so_and_creates_nothing(
    fake: FakeKube, harness: Harness, faults: TimedFaults
) -> None:
    await fake.create(CLUSTERNODES, NS, node_body())

    await harness.wait_for(lambda: ready(fake).get("reason") == "ProviderNotFound")

    assert ready(fake)["status"] == "False"
    assert ready(fake)["message"] == "NodeProvider 'sim' does not exist"
    assert node_status(fake)["state"] == "Pending"
    assert faults.calls == []


async def test_a_node_waiting_for_its_provider_gets_its_machine_once_the_provider_exists(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await fake.create(CLUSTERNODES, NS, node_body())
    await harness.wait_for(lambda: ready(fake).get("reason") == "ProviderNotFound")

    fake.add(NODEPROVIDERS, provider_body(inventory))

    await running(fake, harness)


async def test_a_settling_machine_is_reported_provisioning_then_running_on_the_next_poll(
    fake: FakeKube, harness: Harness, inventory: Path, faults: TimedFaults
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, config={"createLatencySeconds": 20}))
    await fake.create(CLUSTERNODES, NS, node_body())
    await harness.wait_for(lambda: node_status(fake).get("state") == "Provisioning")
    created = faults.at("create")[0]
    assert ready(fake)["status"] == "False"
    assert ready(fake)["reason"] == "MachineProvisioning"

    await running(fake, harness)

    # The provider's list call (every second while a machine settles) noticed the machine
    # running and woke the node, long before its own fallback look (every 15 seconds).
    assert asyncio.get_running_loop().time() - created < 22
    assert node_status(fake)["state"] == "Running"
    assert len(faults.at("list")) >= 10
    assert len(faults.at("get")) <= 2


async def test_a_settling_node_still_gets_running_when_the_providers_list_fails(
    fake: FakeKube, harness: Harness, inventory: Path, faults: TimedFaults
) -> None:
    faults.fail("list", Retryable("list throttled"), times=None)
    fake.add(NODEPROVIDERS, provider_body(inventory, config={"createLatencySeconds": 20}))
    await fake.create(CLUSTERNODES, NS, node_body())

    await running(fake, harness)

    assert faults.count("get", NODE) >= 1


async def test_a_node_asked_to_stop_powers_its_machine_off_and_keeps_it(
    fake: FakeKube, harness: Harness, inventory: Path, faults: TimedFaults, clock: LoopClock
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, config={"powerLatencySeconds": 5}))
    await fake.create(CLUSTERNODES, NS, node_body())
    await running(fake, harness)
    provider_id = node_status(fake)["providerId"]

    await patch_spec(fake, powerState="Stopped")

    await harness.wait_for(lambda: node_status(fake).get("state") == "Stopping")
    await harness.wait_for(lambda: node_status(fake).get("state") == "Stopped")
    status = node_status(fake)
    assert status["ready"] is False
    assert status["providerId"] == provider_id
    assert status["observedGeneration"] == 2
    assert ready(fake)["reason"] == "MachineStopped"
    assert "unhealthySince" not in status  # stopped as asked is not unhealthy
    assert faults.count("stop", NODE) == 1
    assert live_machines(inventory, clock) == {NODE: "Stopped"}


async def test_a_stopped_node_asked_to_run_starts_its_machine(
    fake: FakeKube, harness: Harness, inventory: Path, faults: TimedFaults
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, config={"powerLatencySeconds": 5}))
    await fake.create(CLUSTERNODES, NS, node_body(powerState="Stopped"))
    await harness.wait_for(lambda: node_status(fake).get("state") == "Stopped")

    await patch_spec(fake, powerState="Running")

    await harness.wait_for(lambda: node_status(fake).get("state") == "Starting")
    await running(fake, harness)
    assert node_status(fake)["state"] == "Running"
    assert faults.count("start", NODE) == 1
    assert faults.count("create", NODE) == 1


async def test_a_reboot_request_reboots_the_machine_once_and_records_when(
    fake: FakeKube, harness: Harness, inventory: Path, faults: TimedFaults, clock: LoopClock
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, config={"powerLatencySeconds": 5}))
    await fake.create(CLUSTERNODES, NS, node_body())
    await running(fake, harness)
    await asyncio.sleep(60)  # moves loop time: the reboot's time is not the create's
    asked = rfc3339(clock.now())

    await patch_spec(fake, rebootRequestedAt=asked)

    await harness.wait_for(lambda: "lastRebootTime" in node_status(fake))
    assert node_status(fake)["lastRebootTime"] >= asked
    await running(fake, harness)
    assert faults.count("reboot", NODE) == 1
    # Looked at again (as any event or resync would), it is not rebooted a second time.
    gets = faults.count("get", NODE)
    harness.world.queues.node.add((NS, NODE))
    await harness.wait_for(lambda: faults.count("get", NODE) > gets)
    await harness.idle()
    assert faults.count("reboot", NODE) == 1


async def test_a_reboot_brings_a_failed_machine_back(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(CLUSTERNODES, NS, node_body())
    await running(fake, harness)
    broken = Inventory(inventory)
    broken.set_failed(NODE)
    broken.close()
    await harness.wait_for(lambda: node_status(fake).get("state") == "Failed", within=120)

    await patch_spec(fake, rebootRequestedAt=rfc3339(clock.now()))

    await running(fake, harness)
    assert "lastRebootTime" in node_status(fake)


def machine_rows(inventory: Path, clock: LoopClock) -> dict[str, bool]:
    """Every machine still in the inventory -> whether it is being deleted."""
    inv = Inventory(inventory, lambda: clock.now().timestamp())
    try:
        return {machine_node(r): r["deleting_at"] is not None for r in inv.list()}
    finally:
        inv.close()


async def test_a_deleted_node_drains_for_its_clusters_grace_period_then_loses_its_machine(
    fake: FakeKube, harness: Harness, inventory: Path, faults: TimedFaults, clock: LoopClock
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(
        NODECLUSTERS, NS, cluster_body(policies={"deletion": {"gracePeriodSeconds": 60}})
    )
    await harness.wait_for(lambda: len(fake.objects(CLUSTERNODES, NS)) == 1)
    name = fake.objects(CLUSTERNODES, NS)[0]["metadata"]["name"]
    await running(fake, harness, name)
    deleted_at = asyncio.get_running_loop().time()

    await fake.delete(CLUSTERNODES, NS, name)

    await harness.wait_for(lambda: node_status(fake, name).get("state") == "Deleting")
    assert node_status(fake, name)["message"] == "draining; machine deleted in 60s"
    assert node_status(fake, name)["ready"] is False
    await asyncio.sleep(50)
    assert faults.count("delete", name) == 0
    assert machine_rows(inventory, clock)[name] is False

    await harness.wait_for(lambda: node(fake, name) is None, within=120)

    assert faults.at("delete")[0] - deleted_at >= 60
    assert name not in machine_rows(inventory, clock)


async def test_a_deleted_node_deletes_its_machine_until_not_found_then_goes(
    fake: FakeKube, harness: Harness, inventory: Path, faults: TimedFaults, clock: LoopClock
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, config={"deleteLatencySeconds": 10}))
    await fake.create(CLUSTERNODES, NS, node_body())
    await running(fake, harness)

    await fake.delete(CLUSTERNODES, NS, NODE)

    await harness.wait_for(lambda: node_status(fake).get("state") == "Deleting")
    assert "message" not in node_status(fake)  # no grace period without a cluster
    assert NODE_FINALIZER in node(fake)["metadata"]["finalizers"]  # type: ignore[index]
    await harness.wait_for(lambda: node(fake) is None, within=60)
    # Asked again until the provider said the machine is gone, and only then let go.
    assert faults.count("delete", NODE) >= 3
    assert machine_rows(inventory, clock) == {}
    release = fake.calls_of("patch", "clusternodes", NODE)
    assert [c.status for c in release] == [200]


async def test_a_conflict_on_removing_the_finalizer_is_read_again_and_retried(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(CLUSTERNODES, NS, node_body())
    await running(fake, harness)
    fake.fail("patch", "clusternodes", 409, name=NODE)

    await fake.delete(CLUSTERNODES, NS, NODE)

    await harness.wait_for(lambda: node(fake) is None)
    assert [c.status for c in fake.calls_of("patch", "clusternodes", NODE)] == [409, 200]


async def test_a_failing_machine_delete_is_reported_and_retried(
    fake: FakeKube, harness: Harness, inventory: Path, faults: TimedFaults
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(CLUSTERNODES, NS, node_body())
    await running(fake, harness)
    faults.fail("delete", Retryable("delete throttled"), times=2)

    await fake.delete(CLUSTERNODES, NS, NODE)

    await harness.wait_for(lambda: ready(fake).get("reason") == "ProviderUnavailable")
    assert ready(fake)["message"] == "delete throttled"
    assert node(fake) is not None
    await harness.wait_for(lambda: node(fake) is None)
    assert faults.count("delete", NODE) >= 3


async def test_a_node_whose_machine_was_never_created_is_released_at_once(
    fake: FakeKube, harness: Harness, inventory: Path, faults: TimedFaults
) -> None:
    faults.fail("create", CapacityExceeded("zone-a is full"), times=None)
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(CLUSTERNODES, NS, node_body())
    await harness.wait_for(lambda: ready(fake).get("reason") == "CapacityExceeded")

    await fake.delete(CLUSTERNODES, NS, NODE)

    await harness.wait_for(lambda: node(fake) is None, within=5)
    # Nothing recorded shows a machine of its own: looked for once, deleted nothing.
    assert faults.count("get", NODE) + faults.count("delete", NODE) == 1


async def test_a_deleting_node_without_the_operators_finalizer_is_left_alone(
    fake: FakeKube, harness: Harness, inventory: Path, faults: TimedFaults
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    body = node_body()
    body["metadata"]["finalizers"] = ["example.com/backup"]
    body["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    fake.add(CLUSTERNODES, body)

    await harness.idle()
    await asyncio.sleep(60)

    assert [call for call in faults.calls if call[1] == NODE] == []
    assert fake.calls_of("patch_status", "clusternodes") == []
    assert node(fake)["metadata"]["finalizers"] == ["example.com/backup"]  # type: ignore[index]


async def test_user_data_from_the_profiles_secret_reaches_the_providers_create(
    fake: FakeKube, harness: Harness, inventory: Path, specs: list[MachineSpec]
) -> None:
    fake.put_secret(NS, "web-boot", {"userData": "#cloud-config\nruncmd: [echo hi]\n"})
    fake.add(NODEPROVIDERS, provider_body(inventory))
    profile = {
        "machineType": "small",
        "image": "debian-13",
        "labels": {"team": "batch"},
        "userDataSecretRef": "web-boot",
    }
    await fake.create(CLUSTERNODES, NS, node_body(profile=profile, zone="zone-b"))

    await running(fake, harness)

    assert len(specs) == 1
    spec = specs[0]
    assert spec.user_data == "#cloud-config\nruncmd: [echo hi]\n"
    assert spec.tags["nodecluster.io/node"] == NODE and spec.name.startswith(f"{NODE}-")
    assert spec.cluster == f"{NS}/web"
    assert spec.zone == "zone-b"
    assert spec.image == "debian-13"
    assert spec.labels == {"team": "batch", CLUSTER_LABEL: "web"}
    assert [c.name for c in fake.calls_of("read_secret")] == ["web-boot"]


async def test_a_node_without_user_data_creates_its_machine_without_reading_a_secret(
    fake: FakeKube, harness: Harness, inventory: Path, specs: list[MachineSpec]
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(CLUSTERNODES, NS, node_body())

    await running(fake, harness)

    assert specs[0].user_data is None
    assert fake.calls_of("read_secret") == []


async def test_a_machine_that_vanished_at_the_provider_is_reported_not_ready(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    health = {"recovery": "None", "pollIntervalSeconds": 10}
    await fake.create(NODECLUSTERS, NS, cluster_body(policies={"health": health}))
    await harness.wait_for(lambda: len(fake.objects(CLUSTERNODES, NS)) == 1)
    name = fake.objects(CLUSTERNODES, NS)[0]["metadata"]["name"]
    await running(fake, harness, name)

    gone = Inventory(inventory, lambda: clock.now().timestamp())
    machine = next(r["name"] for r in gone.list() if machine_node(r) == name)
    gone.mark_deleting(machine, 0)  # deleted behind the operator's back
    gone.close()

    # The provider's health poll (at the cluster's 10 s) notices.
    await harness.wait_for(lambda: ready(fake, name).get("status") == "False", within=30)
    assert node_status(fake, name)["ready"] is False
    assert node_status(fake, name)["state"] != "Running"


async def test_a_wake_up_for_a_node_that_no_longer_exists_does_nothing(
    fake: FakeKube, harness: Harness, inventory: Path, faults: TimedFaults
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await harness.idle()
    fake.reset_journal()

    harness.world.queues.node.add((NS, "web-gone"))
    await harness.idle()

    assert [(c.verb, c.status) for c in fake.calls] == [("get", 404)]
    assert [call for call in faults.calls if call[1] == "web-gone"] == []


@pytest.fixture
def no_power_registry(faults: TimedFaults) -> ProviderRegistry:
    registry = ProviderRegistry()
    registry.register("faulty", faulty_simulator(faults, power=False))
    return registry


async def test_a_node_asked_to_stop_on_a_provider_without_power_control_keeps_its_machine(
    fake: FakeKube, no_power_registry: ProviderRegistry, clock: LoopClock, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    async with Harness(fake, registry=no_power_registry, clock=clock) as harness:
        await fake.create(CLUSTERNODES, NS, node_body(powerState="Stopped"))

        await harness.wait_for(lambda: node_status(fake).get("state") == "Running")

        assert node_status(fake)["ready"] is False
        assert ready(fake)["status"] == "False"
        assert live_machines(inventory, clock) == {NODE: "Running"}


async def test_a_node_force_removed_while_its_machine_delete_hangs_leaves_no_machine(
    fake: FakeKube, harness: Harness, inventory: Path, faults: TimedFaults, clock: LoopClock
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, callTimeoutSeconds=30))
    health = {"pollIntervalSeconds": 10}
    await fake.create(NODECLUSTERS, NS, cluster_body(policies={"health": health}))
    await harness.wait_for(lambda: len(fake.objects(CLUSTERNODES, NS)) == 1)
    name = fake.objects(CLUSTERNODES, NS)[0]["metadata"]["name"]
    await running(fake, harness, name)
    faults.hang("delete", name=name)

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 0}})
    await harness.wait_for(lambda: faults.count("delete", name) == 1)
    # Someone strips the finalizer while the provider does not answer: the node is gone.
    await fake.patch(CLUSTERNODES, NS, name, {"metadata": {"finalizers": []}})
    assert node(fake, name) is None

    # The hung call is cut off; its error has no node left to be written to.
    await harness.wait_for(
        lambda: fake.calls_of("patch_status", "clusternodes", name)[-1].status == 404, within=60
    )
    # The machine, now nobody's, is found by the health poll and deleted after the grace.
    await harness.wait_for(lambda: faults.count("delete", name) > 1, within=120)
    assert machine_rows(inventory, clock).get(name, True) is True
