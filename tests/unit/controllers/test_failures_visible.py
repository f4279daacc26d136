"""Every failure visible within one reconcile (issue 11, item 5): a refused write or an
error reaches the object's conditions and one Warning Event, never only the log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
from clusters import NS, cluster_body, condition, nodes, state
from conftest import provider_body

from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.controllers.world import Settings
from nodecluster.providers.base import ProviderConfig, ProviderDriver
from nodecluster.providers.registry import ProviderRegistry
from nodecluster.testing import FakeKube, Harness
from nodecluster.testing.drivers import DriverFaults, faulty_simulator


def node_ready(fake: FakeKube, name: str) -> dict[str, Any]:
    status = (fake.stored(CLUSTERNODES, NS, name) or {}).get("status", {})
    return next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})


async def test_a_refused_node_create_stalls_the_cluster_with_the_servers_message(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    refused = fake.fail(
        "create",
        "clusternodes",
        403,
        times=None,
        message='clusternodes is forbidden: User "system:serviceaccount:x:y" cannot create',
    )
    await fake.create(NODECLUSTERS, NS, cluster_body())

    await harness.wait_for(lambda: condition(fake, "Stalled").get("reason") == "APIRefused")
    stalled = condition(fake, "Stalled")
    assert "403" in stalled["message"] and "cannot create" in stalled["message"]
    assert condition(fake, "Ready")["status"] == "False"
    await asyncio.sleep(600)  # ten minutes of retries (operator time)
    assert refused.fired > 3
    assert condition(fake, "Stalled")["reason"] == "APIRefused"
    assert len(fake.events_about("web", reason="APIRefused")) == 1

    fake.remove(refused)
    await harness.wait_for(lambda: state(fake) == "Deployed", what="Deployed once allowed")
    assert condition(fake, "Stalled")["status"] == "False"


async def test_a_failing_api_degrades_the_cluster_and_it_recovers(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    failing = fake.fail("create", "clusternodes", 503, times=None, message="etcdserver: timeout")
    await fake.create(NODECLUSTERS, NS, cluster_body())

    await harness.wait_for(lambda: condition(fake, "Degraded").get("reason") == "APIUnavailable")
    assert "etcdserver: timeout" in condition(fake, "Degraded")["message"]
    assert condition(fake, "Stalled").get("status") != "True"

    fake.remove(failing)
    await harness.wait_for(lambda: state(fake) == "Deployed")
    assert condition(fake, "Degraded")["status"] == "False"


async def test_a_missing_user_data_secret_is_named_on_the_node_and_stalls_the_cluster(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(
        NODECLUSTERS,
        NS,
        cluster_body(profile={"machineType": "small", "userDataSecretRef": "boot"}, targetNodes=1),
    )

    await harness.wait_for(lambda: len(nodes(fake)) == 1)
    name = nodes(fake)[0]["metadata"]["name"]
    await harness.wait_for(lambda: node_ready(fake, name).get("reason") == "InvalidProviderConfig")
    assert "team-a/boot" in node_ready(fake, name)["message"]
    await harness.wait_for(
        lambda: condition(fake, "Stalled").get("reason") == "InvalidProviderConfig"
    )
    # Past the startup timeout: a node waiting for its Secret is not "remediated" over and over.
    await asyncio.sleep(1200)
    assert [n["metadata"]["name"] for n in nodes(fake)] == [name]

    fake.put_secret(NS, "boot", {"userData": "#cloud-config"})
    await harness.wait_for(lambda: state(fake) == "Deployed", within=900, what="Deployed")


async def test_a_forbidden_user_data_secret_names_the_chart_value_to_change(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    fake.put_secret(NS, "boot", {"userData": "#cloud-config"})
    fake.fail("read_secret", "secrets", 403, times=None, name="boot")
    await fake.create(
        NODECLUSTERS,
        NS,
        cluster_body(profile={"machineType": "small", "userDataSecretRef": "boot"}, targetNodes=1),
    )

    await harness.wait_for(lambda: len(nodes(fake)) == 1)
    name = nodes(fake)[0]["metadata"]["name"]
    await harness.wait_for(lambda: node_ready(fake, name).get("reason") == "InvalidProviderConfig")
    assert "rbac.secretNamespaces" in node_ready(fake, name)["message"]


# -- NodeProviders: each installation writes only its own entry --------------------------------


class BuggyDriverFactory:
    """The simulator, behind a driver constructor with a bug while `broken` (not a
    ProviderError: an exception nobody handles, as a bug raises)."""

    def __init__(self) -> None:
        self.broken = True
        self.calls = 0
        self.inner = faulty_simulator(DriverFaults())

    def __call__(self, config: ProviderConfig) -> ProviderDriver:
        self.calls += 1
        if self.broken:
            raise KeyError("region")
        return self.inner(config)


def provider_status(fake: FakeKube) -> dict[str, Any]:
    return (fake.stored(NODEPROVIDERS, None, "sim") or {}).get("status", {})


def provider_condition(fake: FakeKube, ctype: str) -> dict[str, Any]:
    conditions = provider_status(fake).get("conditions", [])
    return next((c for c in conditions if c["type"] == ctype), {})


async def test_a_failing_provider_reconcile_is_written_on_the_provider_once_and_clears(
    fake: FakeKube, clock: LoopClock, inventory: Path
) -> None:
    factory = BuggyDriverFactory()
    registry = ProviderRegistry()
    registry.register("faulty", factory)
    fake.add(NODEPROVIDERS, provider_body(inventory))

    async with Harness(fake, registry=registry, clock=clock) as harness:
        await harness.wait_for(
            lambda: (
                provider_status(fake).get("installations", {}).get("default", {}).get("reason")
                == "ReconcileError"
            )
        )
        mine = provider_status(fake)["installations"]["default"]
        assert mine["phase"] == "NotReady"
        assert mine["message"] == "KeyError: 'region'"
        ready = provider_condition(fake, "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "ReconcileError")
        assert provider_status(fake)["phase"] == "NotReady"
        assert provider_condition(fake, "Stalled")["status"] == "False", "retried: not stalled"
        await asyncio.sleep(900)  # fifteen minutes of retries
        assert factory.calls > 3
        assert len(fake.events_about("sim", reason="ReconcileError")) == 1

        factory.broken = False
        await harness.wait_for(lambda: provider_status(fake).get("phase") == "Ready", within=900)

        assert provider_status(fake)["installations"]["default"]["reason"] == "DriverReady"
        assert provider_condition(fake, "Ready")["status"] == "True"
        assert len(fake.events_about("sim", reason="ReconcileError")) == 1


@pytest.mark.parametrize("broken", ["blue", "green"])
async def test_a_provider_failure_reaches_the_top_level_only_from_the_smallest_installation(
    fake: FakeKube, clock: LoopClock, inventory: Path, broken: str
) -> None:
    registries = {}
    for installation in ("blue", "green"):
        registries[installation] = ProviderRegistry()
        factory = BuggyDriverFactory()
        factory.broken = installation == broken
        registries[installation].register("faulty", factory)
    fake.add(NODEPROVIDERS, provider_body(inventory))
    blue, green = (
        Harness(
            fake,
            registry=registries[i],
            clock=clock,
            settings=Settings(installation_id=i, namespaces=(f"team-{i}",)),
        )
        for i in ("blue", "green")
    )

    def seen(installation: str) -> dict[str, Any]:
        return dict(provider_status(fake).get("installations", {}).get(installation, {}))

    async with blue, green:
        await blue.wait_for(
            lambda: (
                seen(broken).get("reason") == "ReconcileError"
                and seen({"blue": "green", "green": "blue"}[broken]).get("phase") == "Ready"
            )
        )
        await asyncio.sleep(600)

    assert seen(broken)["phase"] == "NotReady"
    assert seen(broken)["message"] == "KeyError: 'region'"
    top = (provider_status(fake)["phase"], provider_condition(fake, "Ready")["reason"])
    if broken == "blue":
        assert top == ("NotReady", "ReconcileError")
    else:
        assert top == ("Ready", "DriverReady"), "green's failure is green's entry only"
    assert len(fake.events_about("sim", reason="ReconcileError")) == 1


class ListBug:
    """A driver whose list call has a bug (the health poll, after the status write)."""

    def __init__(self, inner: ProviderDriver) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def list(self, cluster: str | None = None) -> list[Any]:
        raise ZeroDivisionError("division by zero")


async def test_a_provider_failing_after_its_status_write_does_not_rewrite_it_in_a_loop(
    fake: FakeKube, clock: LoopClock, inventory: Path
) -> None:
    inner = faulty_simulator(DriverFaults())
    registry = ProviderRegistry()
    registry.register("faulty", lambda config: cast(ProviderDriver, ListBug(inner(config))))
    fake.add(NODEPROVIDERS, provider_body(inventory))

    async with Harness(fake, registry=registry, clock=clock):
        await asyncio.sleep(3600)  # an hour of retries, backing off to five minutes

    # The reconcile writes Ready, then its health poll fails: reported once (written,
    # one Warning); the retry's reconcile writes Ready again, and the failure, said
    # already, is not written over it on every retry, nor is Ready announced each time.
    assert len(fake.calls_of("patch_status", "nodeproviders")) <= 3
    assert len(fake.events_about("sim", reason="ReconcileError")) == 1
    assert "ZeroDivisionError" in fake.events_about("sim", reason="ReconcileError")[0]["message"]
    assert len(fake.events_about("sim", reason="DriverReady")) <= 2
