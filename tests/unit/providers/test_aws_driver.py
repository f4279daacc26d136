"""What the aws driver does beyond the shared contract, against moto's EC2: what an instance
is launched with, how far `list` reaches, paging, closing, and EC2 out of reach."""

from __future__ import annotations

import base64
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

from nodecluster.providers.aws import driver as aws_driver
from nodecluster.providers.aws.driver import AwsDriver
from nodecluster.providers.aws.instances import CLUSTER_REF_TAG, MACHINE_TAG, PROVIDER_TAG
from nodecluster.providers.base import (
    InvalidConfig,
    MachineSpec,
    PowerControl,
    ProviderConfig,
    Retryable,
)
from nodecluster.providers.deadline import DeadlineDriver
from nodecluster.providers.registry import ProviderRegistry
from nodecluster.testing.contract import CLUSTER, OTHER_CLUSTER, identity, machine_spec
from nodecluster.testing.ec2 import (
    TEST_CREDENTIALS,
    Ec2Network,
    ec2_client,
    free_port,
    live_instances,
)

Make = Callable[..., AwsDriver]


@pytest.fixture
async def make(ec2: Ec2Network) -> AsyncIterator[Make]:
    built: list[AwsDriver] = []

    def build(name: str = "aws", **config: Any) -> AwsDriver:
        driver = AwsDriver(
            ProviderConfig(
                name=name, config=ec2.driver_config(**config), credentials=TEST_CREDENTIALS
            )
        )
        built.append(driver)
        return driver

    yield build
    for driver in built:
        await driver.close()


async def instances(ec2: Ec2Network) -> list[Any]:
    async with ec2_client(ec2.endpoint) as client:
        return list(await live_instances(client))


async def test_an_instance_is_launched_as_the_config_and_profile_say(
    make: Make, ec2: Ec2Network
) -> None:
    driver = make(keyName="ops")
    spec = MachineSpec(
        name="web-7kq2x-3f9a0c21de",
        cluster=CLUSTER,
        machine_type="m7i.large",
        zone="zone-b",
        labels={"team": "batch", "nodecluster.io/cluster": "web"},
        user_data="#cloud-config\nhostname: web\n",
        tags=identity("web-7kq2x").tags(),
    )

    machine = await driver.create(spec)

    [launched] = await instances(ec2)
    tags = {t["Key"]: t["Value"] for t in launched["Tags"]}
    assert launched["SubnetId"] == ec2.subnets["zone-b"]
    assert launched["Placement"]["AvailabilityZone"] == ec2.availability_zones["zone-b"]
    assert launched["InstanceType"] == "m7i.large"
    assert launched["ImageId"] == ec2.image_id
    assert launched["KeyName"] == "ops"
    assert launched["ClientToken"] == spec.name
    assert [g["GroupId"] for g in launched["SecurityGroups"]] == [ec2.security_group_id]
    assert tags == {
        **spec.labels,
        **spec.tags,
        "Name": spec.name,
        MACHINE_TAG: spec.name,
        PROVIDER_TAG: "aws",
        CLUSTER_REF_TAG: CLUSTER,
    }
    assert dict(machine.tags) == dict(spec.tags)  # the driver's own tags are not handed back
    assert machine.zone == "zone-b"
    assert machine.provider_id == (
        f"aws:///{ec2.availability_zones['zone-b']}/{launched['InstanceId']}"
    )
    assert ("InternalIP", launched["PrivateIpAddress"]) in machine.addresses
    async with ec2_client(ec2.endpoint) as client:
        user_data = await client.describe_instance_attribute(
            InstanceId=launched["InstanceId"], Attribute="userData"
        )
        volumes = await client.describe_volumes(
            Filters=[{"Name": f"tag:{MACHINE_TAG}", "Values": [spec.name]}]
        )
    assert base64.b64decode(user_data["UserData"]["Value"]).decode() == spec.user_data
    assert len(volumes["Volumes"]) == 1  # the disk carries the tags too (cost, clean-up)


async def test_spot_from_the_provider_or_the_profile(make: Make, ec2: Ec2Network) -> None:
    await make(capacityType="spot").create(machine_spec("web-1"))
    on_demand = make(name="aws")
    spot_profile = MachineSpec(
        name="web-2",
        cluster=CLUSTER,
        machine_type="small",
        zone="zone-a",
        properties={"capacityType": "spot"},
    )
    await on_demand.create(spot_profile)
    await on_demand.create(machine_spec("web-3"))

    lifecycle = {
        next(t["Value"] for t in i["Tags"] if t["Key"] == MACHINE_TAG): i.get("InstanceLifecycle")
        for i in await instances(ec2)
    }
    assert lifecycle == {"web-1": "spot", "web-2": "spot", "web-3": None}


async def test_the_profiles_capacity_type_wins_over_properties_and_provider(
    make: Make, ec2: Ec2Network
) -> None:
    # A capacity fallback alternative (or profile.capacityType) says Spot or OnDemand for
    # this machine: the request follows it whatever the provider's default or properties say.
    spot_by_default = make(capacityType="spot")
    await spot_by_default.create(replace(machine_spec("web-1"), capacity_type="OnDemand"))
    on_demand = make(name="aws")
    await on_demand.create(replace(machine_spec("web-2"), capacity_type="Spot"))
    await on_demand.create(
        replace(
            machine_spec("web-3"), capacity_type="OnDemand", properties={"capacityType": "spot"}
        )
    )

    lifecycle = {
        next(t["Value"] for t in i["Tags"] if t["Key"] == MACHINE_TAG): i.get("InstanceLifecycle")
        for i in await instances(ec2)
    }
    assert lifecycle == {"web-1": None, "web-2": "spot", "web-3": None}


async def test_list_reaches_only_the_machines_of_its_own_nodeprovider(
    make: Make, ec2: Ec2Network
) -> None:
    ours, theirs = make(name="aws-a"), make(name="aws-b")
    await ours.create(machine_spec("web-1"))
    await ours.create(machine_spec("db-1", cluster=OTHER_CLUSTER))
    await theirs.create(machine_spec("web-2"))
    async with ec2_client(ec2.endpoint) as client:  # an instance nobody here made
        await client.run_instances(ImageId=ec2.image_id, MinCount=1, MaxCount=1)

    assert [m.name for m in await ours.list()] == ["db-1", "web-1"]
    assert [m.name for m in await ours.list(CLUSTER)] == ["web-1"]
    assert [m.name for m in await theirs.list()] == ["web-2"]
    assert len(await instances(ec2)) == 4


async def test_list_follows_every_page(make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AwsDriver, "PAGE_SIZE", 5)  # EC2's smallest page
    driver = make()
    names = sorted(f"web-{i:02}" for i in range(12))
    for name in names:
        await driver.create(machine_spec(name))

    assert [m.name for m in await driver.list()] == names
    assert [m.name for m in await driver.list(CLUSTER)] == names


async def test_a_subnet_ec2_does_not_know_is_invalid_config(make: Make) -> None:
    driver = make(subnets={"zone-a": "subnet-0000000000000dead"})

    with pytest.raises(InvalidConfig, match=r"RunInstances: InvalidSubnetID\.NotFound"):
        await driver.create(machine_spec("web-1"))


async def test_no_image_anywhere_is_invalid_config(make: Make, ec2: Ec2Network) -> None:
    driver = AwsDriver(
        ProviderConfig(
            name="aws",
            config={k: v for k, v in ec2.driver_config().items() if k != "imageId"},
            credentials=TEST_CREDENTIALS,
        )
    )

    with pytest.raises(InvalidConfig, match="no AMI"):
        await driver.create(machine_spec("web-1"))
    assert await instances(ec2) == []
    await driver.close()


async def test_ec2_out_of_reach_is_retryable(make: Make) -> None:
    driver = make(endpointUrl=f"http://127.0.0.1:{free_port()}", maxAttempts=1)

    with pytest.raises(Retryable, match="EC2 did not answer"):
        await driver.list()


async def test_close_closes_the_sdk_client_and_later_calls_are_retryable(make: Make) -> None:
    driver = make()
    await driver.list()
    assert driver._client is not None
    sessions = list(driver._client._endpoint.http_session._sessions.values())
    assert sessions and not any(s.closed for s in sessions)  # a connection pool is open

    await driver.close()

    assert all(s.closed for s in sessions)  # aiohttp's sessions, connections and all
    with pytest.raises(Retryable, match="closed"):
        await driver.list()


async def test_the_sdk_models_are_read_off_the_event_loop(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_the_loop: list[bool] = []
    load = aws_driver._load_models

    def spy(session: Any) -> None:
        on_the_loop.append(threading.current_thread() is threading.main_thread())
        load(session)

    monkeypatch.setattr(aws_driver, "_load_models", spy)

    await make().list()

    assert on_the_loop == [False]  # megabytes of JSON, read in a worker thread


async def test_the_registry_builds_it_by_name_with_a_deadline_and_power_control(
    ec2: Ec2Network,
) -> None:
    registry = ProviderRegistry()
    config = ProviderConfig(name="aws", config=ec2.driver_config(), credentials=TEST_CREDENTIALS)
    try:
        driver = await registry.driver_for("aws", config)
        assert isinstance(driver, DeadlineDriver)
        assert isinstance(driver.inner, AwsDriver)
        assert isinstance(driver, PowerControl)
        assert (await driver.create(machine_spec("web-1"))).name == "web-1"
    finally:
        await registry.close()
