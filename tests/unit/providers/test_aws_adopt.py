"""The aws driver's Adoption beyond the shared contract, against moto's EC2: what an adopted
instance carries, which instances discover shows, and the provider ids people write."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from nodecluster.providers.aws.driver import AwsDriver
from nodecluster.providers.aws.instances import (
    CLUSTER_REF_TAG,
    MACHINE_TAG,
    PROVIDER_TAG,
    instance_id_of,
    tags_of,
)
from nodecluster.providers.base import MachineSelection, ProviderConfig
from nodecluster.testing.contract import CLUSTER, identity, machine_spec
from nodecluster.testing.ec2 import TEST_CREDENTIALS, Ec2Network, ec2_client


@pytest.fixture
async def driver(ec2: Ec2Network) -> AsyncIterator[AwsDriver]:
    built = AwsDriver(
        ProviderConfig(name="aws", config=ec2.driver_config(), credentials=TEST_CREDENTIALS)
    )
    yield built
    await built.close()


async def launch(ec2: Ec2Network, tags: dict[str, str], zone: str = "zone-a") -> str:
    """An instance launched by its owner, not by the operator; its instance id."""
    async with ec2_client(ec2.endpoint) as client:
        answer = await client.run_instances(
            ImageId=ec2.image_id,
            InstanceType="m7i.large",
            MinCount=1,
            MaxCount=1,
            SubnetId=ec2.subnets[zone],
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                }
            ],
        )
    return answer["Instances"][0]["InstanceId"]


async def described(ec2: Ec2Network, instance_id: str) -> dict[str, Any]:
    async with ec2_client(ec2.endpoint) as client:
        answer = await client.describe_instances(InstanceIds=[instance_id])
    instance: dict[str, Any] = dict(answer["Reservations"][0]["Instances"][0])
    return instance


async def test_an_adopted_instance_keeps_its_owner_s_name_and_tags_and_gains_the_node_s(
    driver: AwsDriver, ec2: Ec2Network
) -> None:
    instance_id = await launch(ec2, {"Name": "render-7", "team": "render"})
    (found,) = await driver.discover(MachineSelection(provider_ids=(instance_id,)))
    tags = identity("web-1").tags()

    adopted = await driver.adopt(found, machine_spec("web-1-0123456789", tags=tags))

    now = tags_of(await described(ec2, instance_id))
    assert now["Name"] == "render-7"
    assert now["team"] == "render"
    assert now[MACHINE_TAG] == "web-1-0123456789"
    assert (now[PROVIDER_TAG], now[CLUSTER_REF_TAG]) == ("aws", CLUSTER)
    assert {k: now[k] for k in tags} == tags
    assert adopted.name == "web-1-0123456789"
    assert dict(adopted.tags) == tags
    assert adopted.machine_type == "m7i.large"


async def test_an_instance_without_a_name_is_named_after_its_machine(
    driver: AwsDriver, ec2: Ec2Network
) -> None:
    instance_id = await launch(ec2, {"team": "render"})
    (found,) = await driver.discover(MachineSelection(provider_ids=(instance_id,)))

    await driver.adopt(found, machine_spec("web-1-0123456789"))

    assert tags_of(await described(ec2, instance_id))["Name"] == "web-1-0123456789"


async def test_discover_takes_bare_instance_ids_and_never_shows_terminated_instances(
    driver: AwsDriver, ec2: Ec2Network
) -> None:
    live = await launch(ec2, {"migrate": "yes"})
    gone = await launch(ec2, {"migrate": "yes"})
    async with ec2_client(ec2.endpoint) as client:
        await client.terminate_instances(InstanceIds=[gone])

    by_id = await driver.discover(MachineSelection(provider_ids=(live, gone)))
    by_tag = await driver.discover(MachineSelection(tags={"migrate": "yes"}))

    assert [instance_id_of(m.provider_id) for m in by_id] == [live]
    assert [instance_id_of(m.provider_id) for m in by_tag] == [live]
    assert by_id[0].provider_id.startswith("aws:///") and by_id[0].zone == "zone-a"


def test_an_instance_id_is_read_from_a_provider_id_or_taken_as_it_is() -> None:
    assert instance_id_of("aws:///us-east-1a/i-0abc") == "i-0abc"
    assert instance_id_of("i-0abc") == "i-0abc"
