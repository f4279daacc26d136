"""The provider driver contract as a reusable test suite.

Public so that a third-party driver author runs the very suite the built-in simulator
passes, instead of a copy that drifts: subclass `ProviderContract` in a test module and
provide a `make_driver` fixture, a callable from a `Scenario` (what the test needs the
provider to be like) to a driver configured for it. Every driver one test makes shares
one backing inventory (one account, one file), so closing a driver and making another
is an operator restart. A driver that cannot play a scenario calls `pytest.skip`. A
driver with the optional Adoption capability takes `AdoptionContract` too.

It imports pytest, which the operator itself does not need: install the `testing` extra
(`pip install "nodecluster-operator[testing]"`) to use it. The test methods are async;
pytest-asyncio (in that extra) runs them with `asyncio_mode = "auto"`.

Time: waits poll the driver against a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar, get_args

import pytest

from nodecluster.providers.base import (
    Adoption,
    CapacityExceeded,
    InvalidConfig,
    MachineSelection,
    MachineSpec,
    MachineState,
    NotFound,
    PowerControl,
    ProviderDriver,
    QuotaExceeded,
    Retryable,
)
from nodecluster.providers.identity import MachineIdentity, claimed_by, machine_name

T = TypeVar("T")

CLUSTER = "team-a/web"
OTHER_CLUSTER = "team-b/db"
MACHINE_TYPE = "small"
DEADLINE = 5.0
"""Seconds any wait may take before the test fails (latencies in scenarios are ~0.05 s)."""


@dataclass(frozen=True)
class Scenario:
    """What a contract test needs the provider to be like."""

    zones: tuple[str, ...] = ("zone-a", "zone-b")
    cores_per_machine: int = 2
    max_nodes: int | None = None
    max_cores: int | None = None
    capacity: int | None = None
    """How many machines the provider has room for, across all accounts."""
    failing: bool = False
    """Every call fails with a passing (retryable) fault, some after taking effect."""
    latency: float = 0.0
    """Seconds a create, delete or power change takes."""


class MakeDriver(Protocol):
    """The fixture a driver's test module provides."""

    def __call__(self, scenario: Scenario = ..., /) -> ProviderDriver:
        """A driver set up for the scenario, on the test's shared inventory."""
        ...


class MakeUnowned(Protocol):
    """The fixture a driver with Adoption provides: make a machine as its owner would,
    without the operator (the console, a script, another tool), on the test's inventory;
    its provider id."""

    async def __call__(self, name: str, zone: str, tags: Mapping[str, str], /) -> str:
        """A machine named `name` (as its owner names it) in `zone`, carrying `tags` (user
        tags: never the operator's identity tags), of type MACHINE_TYPE."""
        ...


def identity(node: str, cluster: str = CLUSTER, installation: str = "blue") -> MachineIdentity:
    """A node's identity as the ClusterNode controller derives one."""
    namespace, _, name = cluster.partition("/")
    return MachineIdentity(installation, namespace, name, node, f"uid-{node}")


def machine_spec(
    name: str,
    cluster: str = CLUSTER,
    zone: str | None = "zone-a",
    tags: Mapping[str, str] | None = None,
) -> MachineSpec:
    """A machine request as the ClusterNode controller makes it (tagged with its identity)."""
    return MachineSpec(
        name=name,
        cluster=cluster,
        machine_type=MACHINE_TYPE,
        zone=zone,
        labels={"app": "web"},
        tags=identity(name, cluster).tags() if tags is None else tags,
    )


async def eventually(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str) -> T:
    """Poll `probe` until `done` holds, failing after DEADLINE seconds."""
    deadline = time.monotonic() + DEADLINE
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {DEADLINE}s; last: {value!r}")
        await asyncio.sleep(0)


async def state_or_gone(driver: ProviderDriver, name: str) -> str:
    """The machine's state, or "gone"."""
    try:
        return (await driver.get(name)).state
    except NotFound:
        return "gone"


async def delete_until_not_found(driver: ProviderDriver, name: str) -> int:
    """The controller's delete loop; returns how many calls it took."""
    calls = 0
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        calls += 1
        try:
            await driver.delete(name)
        except NotFound:
            return calls
        await asyncio.sleep(0.01)  # the poll interval of this loop, as the controller's
    raise AssertionError(f"delete of {name} never reached NotFound ({calls} calls)")


class ProviderContract:
    """The tests. Subclass as `Test<Driver>Contract` and provide `make_driver`."""

    # Marked here rather than left to `asyncio_mode = "auto"`, so the suite also runs in a
    # driver's repository that keeps pytest-asyncio's default strict mode.
    pytestmark = [pytest.mark.asyncio]

    async def test_create_returns_the_requested_machine(self, make_driver: MakeDriver) -> None:
        driver = make_driver(Scenario())
        m = await driver.create(machine_spec("web-aaaaa"))

        assert m.name == "web-aaaaa"
        assert m.cluster == CLUSTER
        assert m.machine_type == MACHINE_TYPE
        assert m.zone == "zone-a"
        assert m.provider_id
        assert m.state in get_args(MachineState)
        assert m.cores > 0
        assert isinstance(m.created_at, datetime) and m.created_at.tzinfo is not None

    async def test_create_is_idempotent_on_the_name(self, make_driver: MakeDriver) -> None:
        driver = make_driver(Scenario())
        first = await driver.create(machine_spec("web-aaaaa"))
        second = await driver.create(machine_spec("web-aaaaa"))

        assert second.provider_id == first.provider_id
        assert [m.name for m in await driver.list(CLUSTER)] == ["web-aaaaa"]

    async def test_create_stores_the_tags_and_every_call_returns_them(
        self, make_driver: MakeDriver
    ) -> None:
        driver = make_driver(Scenario())
        tags = identity("web-aaaaa").tags()
        created = await driver.create(machine_spec("web-aaaaa", tags=tags))

        assert dict(created.tags) == tags
        assert dict((await driver.get("web-aaaaa")).tags) == tags
        assert [dict(m.tags) for m in await driver.list(CLUSTER)] == [tags]
        assert [dict(m.tags) for m in await driver.list()] == [tags]

    async def test_create_is_idempotent_on_the_derived_name_and_keeps_the_first_tags(
        self, make_driver: MakeDriver
    ) -> None:
        """The operator's names: two installations' nodes of one name get two machines; a
        second create under a name returns the first machine with its own tags (which the
        operator then refuses), never retagged."""
        driver = make_driver(Scenario())
        blue, green = identity("web-1"), identity("web-1", installation="green")
        first = await driver.create(machine_spec(machine_name(blue), tags=blue.tags()))
        other = await driver.create(machine_spec(machine_name(green), tags=green.tags()))
        again = await driver.create(machine_spec(machine_name(blue), tags=green.tags()))

        assert first.provider_id != other.provider_id
        assert again.provider_id == first.provider_id
        assert dict(again.tags) == blue.tags()
        assert len(await driver.list(CLUSTER)) == 2

    async def test_create_without_a_zone_uses_an_offered_zone(
        self, make_driver: MakeDriver
    ) -> None:
        scenario = Scenario()
        driver = make_driver(scenario)
        m = await driver.create(machine_spec("web-aaaaa", zone=None))
        assert m.zone in scenario.zones

    async def test_get_and_list_by_cluster(self, make_driver: MakeDriver) -> None:
        driver = make_driver(Scenario())
        for name in ("web-1", "web-2"):
            await driver.create(machine_spec(name))
        await driver.create(machine_spec("db-1", cluster=OTHER_CLUSTER))

        assert sorted(m.name for m in await driver.list(CLUSTER)) == ["web-1", "web-2"]
        assert [m.name for m in await driver.list(OTHER_CLUSTER)] == ["db-1"]
        assert await driver.list("team-c/none") == []
        got = await driver.get("db-1")
        assert (got.name, got.cluster) == ("db-1", OTHER_CLUSTER)

    async def test_list_without_a_cluster_returns_every_machine(
        self, make_driver: MakeDriver
    ) -> None:
        driver = make_driver(Scenario())
        await driver.create(machine_spec("web-1"))
        await driver.create(machine_spec("db-1", cluster=OTHER_CLUSTER))
        await driver.create(machine_spec("db-2", cluster=OTHER_CLUSTER))
        await delete_until_not_found(driver, "db-2")

        every = {m.name: m.cluster for m in await driver.list()}
        assert every == {"web-1": CLUSTER, "db-1": OTHER_CLUSTER}

    async def test_get_of_a_missing_machine_raises_not_found(self, make_driver: MakeDriver) -> None:
        driver = make_driver(Scenario())
        with pytest.raises(NotFound):
            await driver.get("web-never")

    @pytest.mark.parametrize("latency", [0.0, 0.05], ids=["instant", "slow"])
    async def test_delete_until_not_found(self, make_driver: MakeDriver, latency: float) -> None:
        driver = make_driver(Scenario(latency=latency))
        await driver.create(machine_spec("web-1"))
        await driver.create(machine_spec("web-2"))

        await delete_until_not_found(driver, "web-1")

        with pytest.raises(NotFound):
            await driver.get("web-1")
        assert [m.name for m in await driver.list(CLUSTER)] == ["web-2"]
        with pytest.raises(NotFound):
            await driver.delete("web-1")

    async def test_delete_of_a_missing_machine_raises_not_found(
        self, make_driver: MakeDriver
    ) -> None:
        driver = make_driver(Scenario())
        with pytest.raises(NotFound):
            await driver.delete("web-never")

    async def test_provisioning_then_running(self, make_driver: MakeDriver) -> None:
        # Create may return before the machine runs (as cloud APIs do); get shows the rest.
        driver = make_driver(Scenario(latency=0.2))

        created = await driver.create(machine_spec("web-1"))
        running = await eventually(
            lambda: state_or_gone(driver, "web-1"), lambda s: s == "Running", "running"
        )

        assert created.state in ("Provisioning", "Running")
        assert running == "Running"

    async def test_deleting_then_gone(self, make_driver: MakeDriver) -> None:
        driver = make_driver(Scenario(latency=0.05))
        await driver.create(machine_spec("web-1"))
        await eventually(lambda: state_or_gone(driver, "web-1"), lambda s: s == "Running", "up")
        deleting = asyncio.create_task(delete_until_not_found(driver, "web-1"))

        seen = await eventually(
            lambda: state_or_gone(driver, "web-1"), lambda s: s != "Running", "deleting"
        )
        await deleting

        assert seen in ("Deleting", "gone")
        assert await state_or_gone(driver, "web-1") == "gone"

    async def test_power_control_is_idempotent(self, make_driver: MakeDriver) -> None:
        driver = make_driver(Scenario(latency=0.05))
        if not isinstance(driver, PowerControl):
            pytest.skip("driver has no power control")
        await driver.create(machine_spec("web-1"))

        async def state() -> str:
            return await state_or_gone(driver, "web-1")

        for _ in range(2):
            await driver.stop("web-1")
        assert await eventually(state, lambda s: s == "Stopped", "stopped") == "Stopped"
        await driver.stop("web-1")
        assert await state() == "Stopped"

        for _ in range(2):
            await driver.start("web-1")
        assert await eventually(state, lambda s: s == "Running", "running") == "Running"
        await driver.start("web-1")
        assert await state() == "Running"

        await driver.reboot("web-1")
        assert await eventually(state, lambda s: s == "Running", "rebooted") == "Running"
        assert [m.name for m in await driver.list(CLUSTER)] == ["web-1"]

    @pytest.mark.parametrize("operation", ["start", "stop", "reboot"])
    async def test_power_control_of_a_missing_machine_raises_not_found(
        self, make_driver: MakeDriver, operation: str
    ) -> None:
        driver = make_driver(Scenario())
        if not isinstance(driver, PowerControl):
            pytest.skip("driver has no power control")
        with pytest.raises(NotFound):
            await getattr(driver, operation)("web-never")

    async def test_machine_quota(self, make_driver: MakeDriver) -> None:
        driver = make_driver(Scenario(max_nodes=2))
        await driver.create(machine_spec("web-1"))
        await driver.create(machine_spec("db-1", cluster=OTHER_CLUSTER))

        with pytest.raises(QuotaExceeded) as err:
            await driver.create(machine_spec("web-2"))
        assert err.value.retryable
        # At the quota, asking again for a machine that exists still answers.
        assert (await driver.create(machine_spec("web-1"))).name == "web-1"

        await delete_until_not_found(driver, "db-1")
        assert (await driver.create(machine_spec("web-2"))).name == "web-2"

    async def test_core_quota(self, make_driver: MakeDriver) -> None:
        driver = make_driver(Scenario(max_cores=5, cores_per_machine=2))
        await driver.create(machine_spec("web-1"))
        await driver.create(machine_spec("web-2"))

        with pytest.raises(QuotaExceeded):
            await driver.create(machine_spec("web-3"))
        assert len(await driver.list(CLUSTER)) == 2

    async def test_capacity(self, make_driver: MakeDriver) -> None:
        driver = make_driver(Scenario(capacity=1))
        await driver.create(machine_spec("web-1"))

        with pytest.raises(CapacityExceeded) as err:
            await driver.create(machine_spec("web-2"))
        assert err.value.retryable
        assert [m.name for m in await driver.list(CLUSTER)] == ["web-1"]

    async def test_a_zone_the_provider_does_not_have_is_invalid_config(
        self, make_driver: MakeDriver
    ) -> None:
        driver = make_driver(Scenario(zones=("zone-a",)))
        with pytest.raises(InvalidConfig) as err:
            await driver.create(machine_spec("web-1", zone="zone-z"))
        assert not err.value.retryable
        assert await driver.list(CLUSTER) == []

    async def test_passing_faults_are_retryable_and_retries_do_not_double_machines(
        self, make_driver: MakeDriver
    ) -> None:
        flaky = make_driver(Scenario(failing=True))
        names = [f"web-{i}" for i in range(6)]
        for name in names:
            with pytest.raises(Retryable) as err:
                await flaky.create(machine_spec(name))
            assert err.value.retryable

        healthy = make_driver(Scenario())
        created = [await healthy.create(machine_spec(name)) for name in names]
        listed = await healthy.list(CLUSTER)

        assert sorted(m.name for m in listed) == names
        assert {m.provider_id for m in listed} == {m.provider_id for m in created}

    async def test_inventory_survives_a_restart(self, make_driver: MakeDriver) -> None:
        before = make_driver(Scenario())
        created = {
            m.name: m for m in [await before.create(machine_spec(f"web-{i}")) for i in (1, 2)]
        }
        await before.close()

        after = make_driver(Scenario())
        listed = {m.name: m for m in await after.list(CLUSTER)}
        again = await after.create(machine_spec("web-1"))

        assert {n: m.provider_id for n, m in listed.items()} == {
            n: m.provider_id for n, m in created.items()
        }
        assert again.provider_id == created["web-1"].provider_id


class AdoptionContract:
    """The optional Adoption capability (providers/base.py), for the drivers that have it:
    their test class takes this beside ProviderContract and provides `make_unowned` (and
    `make_driver`). A driver without it leaves this class out rather than skip its tests:
    nothing in the suite is skipped for a capability a driver never claimed."""

    @pytest.fixture
    def make_unowned(self) -> MakeUnowned:
        """Overridden by the test module: makes a machine as its owner would."""
        raise NotImplementedError("a driver's AdoptionContract needs a make_unowned fixture")

    @staticmethod
    def adoption(driver: ProviderDriver) -> Adoption:
        """The driver's Adoption, which a driver tested by this contract must have."""
        assert isinstance(driver, Adoption), f"{type(driver).__name__} has no Adoption"
        return driver

    async def test_discover_finds_machines_by_provider_id_and_by_tags_whoever_made_them(
        self, make_driver: MakeDriver, make_unowned: MakeUnowned
    ) -> None:
        """Owned or not: the operator decides from the tags, so discover must show them."""
        driver = make_driver(Scenario())
        adoption = self.adoption(driver)
        first = await make_unowned("legacy-1", "zone-a", {"migrate": "yes"})
        second = await make_unowned("legacy-2", "zone-b", {"migrate": "yes"})
        await make_unowned("other-1", "zone-a", {"migrate": "no"})
        ours = await driver.create(machine_spec("web-1"))

        by_id = await adoption.discover(
            MachineSelection(provider_ids=(first, ours.provider_id, "no-such-machine"))
        )
        by_tags = await adoption.discover(MachineSelection(tags={"migrate": "yes"}))

        assert sorted(m.provider_id for m in by_id) == sorted([first, ours.provider_id])
        assert sorted(m.provider_id for m in by_tags) == sorted([first, second])
        found = {m.provider_id: m for m in by_id}
        assert claimed_by(found[first]) is None
        assert claimed_by(found[ours.provider_id]) is not None  # the operator refuses it
        assert found[first].machine_type == MACHINE_TYPE
        assert found[first].zone == "zone-a"
        assert found[first].state in get_args(MachineState)

    async def test_adopt_makes_the_machine_the_nodes_as_create_would(
        self, make_driver: MakeDriver, make_unowned: MakeUnowned
    ) -> None:
        driver = make_driver(Scenario())
        adoption = self.adoption(driver)
        provider_id = await make_unowned("legacy-1", "zone-a", {"migrate": "yes"})
        (found,) = await adoption.discover(MachineSelection(provider_ids=(provider_id,)))
        tags = identity("web-1").tags()
        name = machine_name(identity("web-1"))

        adopted = await adoption.adopt(found, machine_spec(name, tags=tags))
        again = await adoption.adopt(found, machine_spec(name, tags=tags))

        assert adopted.provider_id == again.provider_id == provider_id
        assert dict(adopted.tags) == tags
        got = await driver.get(name)
        assert (got.provider_id, dict(got.tags), got.cluster) == (provider_id, tags, CLUSTER)
        assert [m.provider_id for m in await driver.list(CLUSTER)] == [provider_id]
        (now,) = await adoption.discover(MachineSelection(provider_ids=(provider_id,)))
        assert claimed_by(now) is not None  # adopted: no second operation may take it

    async def test_a_machine_adopted_is_deleted_like_one_created(
        self, make_driver: MakeDriver, make_unowned: MakeUnowned
    ) -> None:
        driver = make_driver(Scenario())
        adoption = self.adoption(driver)
        provider_id = await make_unowned("legacy-1", "zone-a", {})
        (found,) = await adoption.discover(MachineSelection(provider_ids=(provider_id,)))
        await adoption.adopt(found, machine_spec("web-1"))

        await delete_until_not_found(driver, "web-1")

        assert await state_or_gone(driver, "web-1") == "gone"
        assert await adoption.discover(MachineSelection(provider_ids=(provider_id,))) == []

    async def test_adopt_of_a_machine_gone_raises_not_found(
        self, make_driver: MakeDriver, make_unowned: MakeUnowned
    ) -> None:
        driver = make_driver(Scenario())
        adoption = self.adoption(driver)
        provider_id = await make_unowned("legacy-1", "zone-a", {})
        (found,) = await adoption.discover(MachineSelection(provider_ids=(provider_id,)))
        await adoption.adopt(found, machine_spec("web-1"))
        await delete_until_not_found(driver, "web-1")

        with pytest.raises(NotFound):
            await adoption.adopt(found, machine_spec("web-2"))
