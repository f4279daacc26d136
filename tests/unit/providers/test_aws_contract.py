"""The provider contract (`nodecluster.testing.contract`), run against the aws driver on
moto's EC2 server.

moto has no capacity, no account limits and never fails; the scenarios that need those
reach it through `FaultyEc2`, a proxy that answers as EC2 does (its status codes and error
bodies), so the driver's handling of them runs through the SDK exactly as against EC2.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest

from nodecluster.providers.aws.driver import AwsDriver
from nodecluster.providers.base import ProviderConfig, ProviderDriver
from nodecluster.testing.contract import (
    MACHINE_TYPE,
    AdoptionContract,
    MakeDriver,
    MakeUnowned,
    ProviderContract,
    Scenario,
)
from nodecluster.testing.ec2 import TEST_CREDENTIALS, Ec2Network, Faults, FaultyEc2, ec2_client

DEFAULT = Scenario()


def faults_of(scenario: Scenario) -> Faults | None:
    """What EC2 must do that moto does not, for a scenario; None: nothing."""
    faults = Faults(
        capacity=scenario.capacity,
        max_instances=scenario.max_nodes,
        max_vcpus=scenario.max_cores,
        vcpus_per_instance=scenario.cores_per_machine,
        failing=scenario.failing,
    )
    return None if faults == Faults(vcpus_per_instance=scenario.cores_per_machine) else faults


class TestAwsContract(ProviderContract, AdoptionContract):
    @pytest.fixture
    async def make_driver(self, ec2: Ec2Network) -> AsyncIterator[MakeDriver]:
        proxy = await FaultyEc2(ec2.endpoint).start()
        built: list[ProviderDriver] = []

        def make(scenario: Scenario = DEFAULT) -> ProviderDriver:
            missing = set(scenario.zones) - set(ec2.subnets)
            assert not missing, f"the test network has no subnet for {missing}"
            faults = faults_of(scenario)
            config = ec2.driver_config(
                endpoint=None if faults is None else proxy.endpoint(faults),
                subnets={zone: ec2.subnets[zone] for zone in scenario.zones},
            )
            if faults is not None:
                config["maxAttempts"] = 1  # the faults are the point: no retries inside
            driver = AwsDriver(
                ProviderConfig(
                    name="contract",
                    config=config,
                    credentials=TEST_CREDENTIALS,
                    cores_by_type={"small": scenario.cores_per_machine},
                )
            )
            built.append(driver)
            return driver

        yield make
        for driver in built:
            await driver.close()
        await proxy.close()

    @pytest.fixture
    def make_unowned(self, ec2: Ec2Network) -> MakeUnowned:
        """An instance launched as its owner would (RunInstances, the owner's tags, none of
        the driver's or the operator's)."""

        async def make(name: str, zone: str, tags: Mapping[str, str]) -> str:
            async with ec2_client(ec2.endpoint) as client:
                answer = await client.run_instances(
                    ImageId=ec2.image_id,
                    InstanceType=MACHINE_TYPE,  # (moto takes any type)
                    MinCount=1,
                    MaxCount=1,
                    SubnetId=ec2.subnets[zone],
                    TagSpecifications=[
                        {
                            "ResourceType": "instance",
                            "Tags": [
                                {"Key": k, "Value": v} for k, v in {**tags, "Name": name}.items()
                            ],
                        }
                    ],
                )
            instance = answer["Instances"][0]
            az = instance.get("Placement", {}).get("AvailabilityZone", "")
            return f"aws:///{az}/{instance['InstanceId']}"

        return make
