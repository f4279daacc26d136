"""A NodeProvider's status, its credentials, and its health poll over the machines it holds.

The provider controller builds the driver, says whether it could (Ready/Stalled and an
Event when that changes), and polls the provider with one list call per interval: the
poll wakes nodes whose machine changed, and finds machines nobody owns any more.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import provider_body

from nodecluster import API_VERSION
from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.controllers.world import NODE_FINALIZER, Settings
from nodecluster.providers.base import MachineSpec, ProviderConfig, ProviderDriver, Retryable
from nodecluster.providers.identity import node_of
from nodecluster.providers.registry import ProviderRegistry
from nodecluster.providers.simulator import Inventory, SimulatorDriver
from nodecluster.testing import FakeKube, Harness
from nodecluster.testing.drivers import DriverFaults, faulty_simulator

NS = "team-a"
CLUSTER_LABEL = "nodecluster.io/cluster"
"""The label naming a ClusterNode's cluster (what `kubectl get cn -l` selects on)."""
ZONES = ["zone-a", "zone-b"]


@pytest.fixture
def configs() -> list[ProviderConfig]:
    """Every ProviderConfig a driver was built from, in order."""
    return []


@pytest.fixture
def registry(faults: DriverFaults, configs: list[ProviderConfig]) -> ProviderRegistry:
    """`faulty` as in conftest, noting the configs its drivers are built from."""
    simulator = faulty_simulator(faults)

    def build(config: ProviderConfig) -> ProviderDriver:
        configs.append(config)
        return simulator(config)

    registry = ProviderRegistry()
    registry.register("faulty", build)
    return registry


@pytest.fixture
def settings() -> Settings:
    """The defaults, with a longer orphan grace (so that its effect can be seen)."""
    return Settings(orphan_grace_seconds=90.0)


def provider(fake: FakeKube, name: str = "sim") -> dict[str, Any]:
    return fake.stored(NODEPROVIDERS, None, name) or {}


def provider_condition(fake: FakeKube, ctype: str, name: str = "sim") -> dict[str, Any]:
    conditions = provider(fake, name).get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == ctype), {})


def phase(fake: FakeKube, name: str = "sim") -> str | None:
    return provider(fake, name).get("status", {}).get("phase")


def cluster_body(name: str = "web", provider_name: str = "sim", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "NodeCluster",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "providerRef": {"name": provider_name},
            "profile": {"machineType": "small"},
            "targetNodes": 1,
            **spec,
        },
    }


def cluster_condition(fake: FakeKube, ctype: str, name: str = "web") -> dict[str, Any]:
    body = fake.stored(NODECLUSTERS, NS, name) or {}
    conditions = body.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == ctype), {})


def cluster_state(fake: FakeKube, name: str = "web") -> str | None:
    body = fake.stored(NODECLUSTERS, NS, name) or {}
    return body.get("status", {}).get("state")


def node_body(name: str, cluster: str = "web") -> dict[str, Any]:
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
        },
    }


def node_status(fake: FakeKube, name: str) -> dict[str, Any]:
    return (fake.stored(CLUSTERNODES, NS, name) or {}).get("status", {})


def live_machines(inventory: Path, clock: LoopClock) -> set[str]:
    """Machines in the inventory not being deleted (read on the operator's clock)."""
    inv = Inventory(inventory, lambda: clock.now().timestamp())
    try:
        return {
            node_of(r["name"], json.loads(r["tags"]))
            for r in inv.list()
            if r["deleting_at"] is None
        }
    finally:
        inv.close()


async def machine_behind_the_operators_back(
    inventory: Path, clock: LoopClock, name: str, cluster: str
) -> None:
    """A machine made at the provider directly, tagged with `cluster` (namespace/name)."""
    config = ProviderConfig(
        name="sim", config={"path": str(inventory), "zones": ZONES}, clock=clock
    )
    driver = SimulatorDriver(config)
    try:
        await driver.create(MachineSpec(name=name, cluster=cluster, machine_type="small"))
    finally:
        await driver.close()


async def test_a_provider_whose_driver_builds_is_ready_with_one_event(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))

    await harness.wait_for(lambda: phase(fake) == "Ready")

    status = provider(fake)["status"]
    assert status["observedGeneration"] == 1
    assert (status["nodes"], status["cores"]) == (0, 0)
    ready = provider_condition(fake, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "DriverReady")
    assert ready["message"] == "driver 'faulty' is ready"
    stalled = provider_condition(fake, "Stalled")
    assert (stalled["status"], stalled["reason"], stalled["message"]) == (
        "False",
        "DriverReady",
        "",
    )
    events = fake.events_about("sim")
    assert [(e["type"], e["reason"]) for e in events] == [("Normal", "DriverReady")]


async def test_the_provider_counts_the_nodes_and_cores_held_through_it(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    buckets = [{"zone": z, "machineType": "small", "cores": 4} for z in ZONES]
    fake.add(NODEPROVIDERS, provider_body(inventory, buckets=buckets))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=3))

    await harness.wait_for(lambda: provider(fake).get("status", {}).get("nodes") == 3, within=30)

    assert provider(fake)["status"]["cores"] == 12


async def test_an_invalid_config_makes_the_provider_not_ready_and_stalled_with_one_warning(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, config={"colour": "blue"}))

    await harness.wait_for(lambda: phase(fake) == "NotReady")

    ready = provider_condition(fake, "Ready")
    stalled = provider_condition(fake, "Stalled")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidProviderConfig")
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidProviderConfig")
    assert ready["message"].startswith("NodeProvider 'sim': unknown simulator config keys")
    assert "'colour'" in ready["message"]
    assert stalled["message"] == ready["message"]
    warnings = fake.events_about("sim", reason="InvalidProviderConfig")
    assert [e["type"] for e in warnings] == ["Warning"]

    # Still wrong after another edit: the message follows, the Event is not repeated.
    await fake.patch(NODEPROVIDERS, None, "sim", {"spec": {"config": {"shape": "round"}}})
    await harness.wait_for(lambda: "'shape'" in provider_condition(fake, "Ready")["message"])
    await harness.idle()
    assert len(fake.events_about("sim", reason="InvalidProviderConfig")) == 1
    assert provider(fake)["status"]["observedGeneration"] == 2


async def test_a_fixed_config_makes_the_provider_ready_and_its_cluster_deploy(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, config={"colour": "blue"}))
    await fake.create(NODECLUSTERS, NS, cluster_body())
    await harness.wait_for(
        lambda: cluster_condition(fake, "Stalled").get("reason") == "InvalidProviderConfig"
    )

    await fake.patch(NODEPROVIDERS, None, "sim", {"spec": {"config": {"colour": None}}})

    await harness.wait_for(lambda: phase(fake) == "Ready")
    await harness.wait_for(lambda: cluster_state(fake) == "Deployed", within=60)
    events = fake.events_about("sim")
    assert [(e["type"], e["reason"]) for e in events] == [
        ("Warning", "InvalidProviderConfig"),
        ("Normal", "DriverReady"),
    ]


async def test_a_driver_that_cannot_be_built_for_a_passing_fault_is_reported_unavailable(
    fake: FakeKube, faults: DriverFaults, clock: LoopClock, inventory: Path
) -> None:
    def unreachable(config: ProviderConfig) -> ProviderDriver:
        raise Retryable("token endpoint timed out")

    registry = ProviderRegistry()
    registry.register("faulty", unreachable)
    fake.add(NODEPROVIDERS, provider_body(inventory))

    async with Harness(fake, registry=registry, clock=clock) as harness:
        await harness.wait_for(lambda: phase(fake) == "NotReady")

    ready = provider_condition(fake, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ProviderUnavailable")
    assert ready["message"] == "NodeProvider 'sim': token endpoint timed out"


async def test_a_missing_credentials_secret_is_an_invalid_provider_config(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    ref = {"name": "sim-creds", "namespace": "nodecluster-system"}
    fake.add(NODEPROVIDERS, provider_body(inventory, credentialsSecretRef=ref))

    await harness.wait_for(lambda: phase(fake) == "NotReady")

    ready = provider_condition(fake, "Ready")
    assert ready["reason"] == "InvalidProviderConfig"
    assert ready["message"] == (
        "NodeProvider 'sim': credentials Secret nodecluster-system/sim-creds does not exist"
    )


async def test_credentials_from_the_secret_reach_the_driver(
    fake: FakeKube, harness: Harness, inventory: Path, configs: list[ProviderConfig]
) -> None:
    fake.put_secret("nodecluster-system", "sim-creds", {"token": "s3cret"})
    ref = {"name": "sim-creds", "namespace": "nodecluster-system"}
    fake.add(
        NODEPROVIDERS,
        provider_body(
            inventory, credentialsSecretRef=ref, config={"requireCredentials": ["token"]}
        ),
    )

    await harness.wait_for(lambda: phase(fake) == "Ready")

    assert [dict(c.credentials) for c in configs] == [{"token": "s3cret"}]


async def test_credentials_lacking_a_required_key_are_named_by_key_never_by_value(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.put_secret("nodecluster-system", "sim-creds", {"user": "admin", "passwd": "s3cret"})
    ref = {"name": "sim-creds", "namespace": "nodecluster-system"}
    fake.add(
        NODEPROVIDERS,
        provider_body(
            inventory, credentialsSecretRef=ref, config={"requireCredentials": ["token"]}
        ),
    )

    await harness.wait_for(lambda: phase(fake) == "NotReady")

    message = provider_condition(fake, "Ready")["message"]
    assert message == "NodeProvider 'sim': the credentials Secret lacks the keys ['token']"
    assert not any("s3cret" in e["message"] for e in fake.events)


async def test_credentials_are_read_once_per_refresh_interval_not_per_call(
    fake: FakeKube, harness: Harness, inventory: Path, settings: Settings
) -> None:
    fake.put_secret("nodecluster-system", "sim-creds", {"token": "s3cret"})
    ref = {"name": "sim-creds", "namespace": "nodecluster-system"}
    fake.add(NODEPROVIDERS, provider_body(inventory, credentialsSecretRef=ref))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=2))
    await harness.wait_for(lambda: cluster_state(fake) == "Deployed")
    fake.reset_journal()

    await asyncio.sleep(3600)  # polls, resyncs, node reconciles: each asks for the driver

    # Read again as they expire (a rotation must reach the driver), not once per call.
    expected = 3600 / settings.credentials_refresh_seconds
    assert expected - 1 <= len(fake.calls_of("read_secret")) <= expected + 1
    # An edit of the NodeProvider reads them at once.
    fake.reset_journal()
    await fake.patch(NODEPROVIDERS, None, "sim", {"spec": {"callTimeoutSeconds": 60}})
    await harness.wait_for(lambda: len(fake.calls_of("read_secret")) == 1, within=1)


async def test_a_deleted_provider_wakes_its_clusters_which_report_provider_not_found(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, config={"createLatencySeconds": 600}))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=2))
    await harness.wait_for(
        lambda: (
            [n.get("status", {}).get("state") for n in fake.objects(CLUSTERNODES, NS)]
            == ["Provisioning"] * 2
        )
    )
    await harness.idle()
    assert cluster_state(fake) == "Deploying"

    # Deleted anyway: its finalizer removed by hand, so nothing holds it.
    await fake.delete(NODEPROVIDERS, None, "sim")
    await fake.patch(NODEPROVIDERS, None, "sim", {"metadata": {"finalizers": None}})

    # At once, not at the next look of the cluster (its safety net is 30 s) or its nodes.
    await harness.wait_for(
        lambda: cluster_condition(fake, "Stalled").get("reason") == "ProviderNotFound", within=1
    )
    stalled = cluster_condition(fake, "Stalled")
    assert stalled["status"] == "True"
    assert stalled["message"] == "NodeProvider 'sim' does not exist"


async def test_the_health_poll_wakes_a_node_whose_machine_failed(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(CLUSTERNODES, NS, node_body("web-x1"))
    await harness.wait_for(lambda: node_status(fake, "web-x1").get("state") == "Running")
    await harness.idle()
    gets = faults.count("get", "web-x1")

    broken = Inventory(inventory)
    broken.set_failed("web-x1")
    broken.close()

    # The default poll interval is 60 s; nothing else would look at a settled node.
    await harness.wait_for(lambda: node_status(fake, "web-x1").get("state") == "Failed", within=65)
    assert faults.count("get", "web-x1") == gets + 1
    conditions = node_status(fake, "web-x1")["conditions"]
    assert [(c["status"], c["reason"]) for c in conditions] == [("False", "MachineFailed")]


async def test_the_health_poll_finds_a_clusters_orphan_machine_and_it_is_deleted_after_grace(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock, faults: DriverFaults
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    health = {"pollIntervalSeconds": 10}
    await fake.create(NODECLUSTERS, NS, cluster_body(policies={"health": health}))
    await harness.wait_for(lambda: cluster_state(fake) == "Deployed")
    [own] = live_machines(inventory, clock)

    await machine_behind_the_operators_back(inventory, clock, "web-stray", f"{NS}/web")

    # Polled every 10 s, but younger than the orphan grace (90 s here): kept.
    await asyncio.sleep(60)
    assert live_machines(inventory, clock) == {own, "web-stray"}
    assert faults.count("delete", "web-stray") == 0

    await harness.wait_for(lambda: faults.count("delete", "web-stray") > 0, within=60)
    assert live_machines(inventory, clock) == {own}
    assert [n["metadata"]["name"] for n in fake.objects(CLUSTERNODES, NS)] == [own]
    assert cluster_state(fake) == "Deployed"


async def test_machines_of_a_cluster_that_no_longer_exists_are_deleted(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock, faults: DriverFaults
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await machine_behind_the_operators_back(inventory, clock, "gone-a1", f"{NS}/gone")
    await machine_behind_the_operators_back(inventory, clock, "gone-b2", f"{NS}/gone")

    await asyncio.sleep(60)  # one poll (every 60 s): too young to be called orphans
    assert live_machines(inventory, clock) == {"gone-a1", "gone-b2"}

    await harness.wait_for(lambda: faults.count("delete") == 2, within=120)
    assert live_machines(inventory, clock) == set()
    assert [c.status for c in fake.calls_of("get", "nodeclusters", "gone")] == [404]


async def test_a_machine_tagged_with_an_existing_cluster_is_not_deleted_by_the_poll(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    # A cluster of another provider, so that this provider's poll does not know it.
    await fake.create(NODECLUSTERS, NS, cluster_body("other", provider_name="elsewhere"))
    await machine_behind_the_operators_back(inventory, clock, "other-a1", f"{NS}/other")

    await asyncio.sleep(600)

    assert live_machines(inventory, clock) == {"other-a1"}
    assert fake.calls_of("get", "nodeclusters", "other")  # it looked before it spared it


async def test_an_idle_converged_fleet_polled_for_hours_makes_no_api_writes(
    fake: FakeKube, harness: Harness, inventory: Path, faults: DriverFaults, settings: Settings
) -> None:
    # Polling is what is tested: the hourly fold of usage (its one write an hour per
    # running cluster) is tested with the usage (test_usage_status.py).
    settings.usage_refresh_seconds = 24 * 3600
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=3))
    await fake.create(NODECLUSTERS, NS, cluster_body("api", targetNodes=2))
    await harness.wait_for(lambda: cluster_state(fake) == cluster_state(fake, "api") == "Deployed")
    await asyncio.sleep(600)
    fake.reset_journal()
    lists = faults.count("list")

    await asyncio.sleep(5 * 3600)

    assert fake.writes == 0
    assert faults.count("list") - lists >= 5 * 60  # it did poll, every 60 s
