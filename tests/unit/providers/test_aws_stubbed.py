"""What EC2 does and moto does not: instances that stay `pending`, a restart that looks like
a first boot, an instance DescribeInstances does not show yet, throttling. Played with the
SDK's own Stubber on a real client, so requests and answers still pass the EC2 model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.stub import AioStubber

from nodecluster.providers.aws.driver import AwsDriver, sdk_session
from nodecluster.providers.aws.instances import CLUSTER_REF_TAG, MACHINE_TAG, PROVIDER_TAG
from nodecluster.providers.base import MachineState, NotFound, ProviderConfig, Retryable
from nodecluster.testing.contract import CLUSTER, machine_spec

if TYPE_CHECKING:
    from types_aiobotocore_ec2 import EC2Client

FIRST_LAUNCH = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SUBNETS = {"zone-a": "subnet-0a0a0a0a", "zone-b": "subnet-0b0b0b0b"}


@dataclass
class FakeClock:
    """The operator's clock, moved by the test."""

    seconds: float = 1000.0

    def now(self) -> datetime:
        return FIRST_LAUNCH + timedelta(seconds=self.seconds)

    def monotonic(self) -> float:
        return self.seconds


@dataclass
class Stubbed:
    driver: AwsDriver
    stub: AioStubber
    clock: FakeClock


@pytest.fixture
async def stubbed_client() -> AsyncIterator[EC2Client]:
    config = AioConfig(retries={"mode": "standard", "total_max_attempts": 1})
    async with sdk_session().create_client(
        "ec2",
        region_name="eu-west-1",
        endpoint_url="http://127.0.0.1:9",  # never reached: the stubber answers
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="stubbed",
        config=config,
    ) as client:
        yield client


@pytest.fixture
def stubbed(stubbed_client: EC2Client) -> Iterator[Stubbed]:
    clock = FakeClock()
    config = {"region": "eu-west-1", "subnets": SUBNETS, "imageId": "ami-0123456789abcdef0"}
    driver = AwsDriver(
        ProviderConfig(name="aws", config=config, clock=clock), client=stubbed_client
    )
    with AioStubber(stubbed_client) as stub:
        yield Stubbed(driver, stub, clock)
        stub.assert_no_pending_responses()


def instance(
    name: str,
    state: str = "running",
    instance_id: str = "i-0123456789abcdef0",
    launched: datetime = FIRST_LAUNCH,
) -> dict[str, Any]:
    codes = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48}
    codes.update({"stopping": 64, "stopped": 80})
    return {
        "InstanceId": instance_id,
        "InstanceType": "m7i.large",
        "State": {"Name": state, "Code": codes[state]},
        "LaunchTime": launched,
        "SubnetId": SUBNETS["zone-a"],
        "Placement": {"AvailabilityZone": "eu-west-1a"},
        "PrivateIpAddress": "10.0.0.7",
        "CpuOptions": {"CoreCount": 1, "ThreadsPerCore": 2},
        "NetworkInterfaces": [{"Attachment": {"AttachTime": FIRST_LAUNCH, "DeviceIndex": 0}}],
        "Tags": [
            {"Key": MACHINE_TAG, "Value": name},
            {"Key": PROVIDER_TAG, "Value": "aws"},
            {"Key": CLUSTER_REF_TAG, "Value": CLUSTER},
        ],
    }


def listing(*instances: dict[str, Any]) -> dict[str, Any]:
    return {"Reservations": [{"Instances": list(instances)}] if instances else []}


@pytest.mark.parametrize(
    ("ec2_state", "launched_after_first", "expected"),
    [
        ("pending", timedelta(0), "Provisioning"),
        ("pending", timedelta(hours=3), "Starting"),  # started again after a stop
        ("running", timedelta(0), "Running"),
        ("stopping", timedelta(0), "Stopping"),
        ("stopped", timedelta(0), "Stopped"),
        ("shutting-down", timedelta(0), "Deleting"),
    ],
)
async def test_ec2_states_as_machine_states(
    stubbed: Stubbed, ec2_state: str, launched_after_first: timedelta, expected: MachineState
) -> None:
    launched = FIRST_LAUNCH + launched_after_first
    stubbed.stub.add_response(
        "describe_instances", listing(instance("web-1", ec2_state, launched=launched))
    )

    machine = await stubbed.driver.get("web-1")

    assert machine.state == expected
    assert machine.created_at == FIRST_LAUNCH  # the first launch, not the last start
    assert machine.cores == 2  # vCPUs: cores x threads
    assert machine.zone == "zone-a"  # the config's zone of the instance's subnet
    assert machine.provider_id == "aws:///eu-west-1a/i-0123456789abcdef0"
    assert machine.addresses == (("InternalIP", "10.0.0.7"),)


async def test_an_instance_ec2_does_not_list_yet_is_provisioning_and_is_not_deleted_as_gone(
    stubbed: Stubbed,
) -> None:
    stub, driver = stubbed.stub, stubbed.driver
    stub.add_response("describe_instances", listing())  # no instance of that name yet
    stub.add_response(
        "run_instances",
        {"Instances": [instance("web-1", "pending")], "ReservationId": "r-1", "OwnerId": "1"},
    )
    created = await driver.create(machine_spec("web-1"))
    assert created.state == "Provisioning"

    # EC2's eventual consistency: neither the tags nor the id show it for a while.
    not_yet = {"service_error_code": "InvalidInstanceID.NotFound", "http_status_code": 400}
    stub.add_response("describe_instances", listing())
    stub.add_client_error("describe_instances", **not_yet)
    got = await driver.get("web-1")
    assert (got.state, got.provider_id) == ("Provisioning", created.provider_id)

    stub.add_response("describe_instances", listing())
    stub.add_client_error("describe_instances", **not_yet)
    assert [m.name for m in await driver.list(CLUSTER)] == ["web-1"]

    stub.add_response("describe_instances", listing())
    stub.add_client_error("terminate_instances", **not_yet)
    with pytest.raises(Retryable, match="does not show it yet"):
        await driver.delete("web-1")  # never NotFound: the instance would be lost

    # The id shows it before the tags do.
    stub.add_response("describe_instances", listing())
    stub.add_response("describe_instances", listing(instance("web-1", "running")))
    assert (await driver.get("web-1")).state == "Running"


async def test_a_launch_is_only_remembered_for_the_grace_period(stubbed: Stubbed) -> None:
    stub, driver = stubbed.stub, stubbed.driver
    stub.add_response("describe_instances", listing())
    stub.add_response(
        "run_instances",
        {"Instances": [instance("web-1", "pending")], "ReservationId": "r-1", "OwnerId": "1"},
    )
    await driver.create(machine_spec("web-1"))

    stubbed.clock.seconds += AwsDriver.CONSISTENCY_GRACE_SECONDS + 1
    stub.add_response("describe_instances", listing())

    with pytest.raises(NotFound):
        await driver.get("web-1")


async def test_a_create_answered_with_a_terminated_instance_is_failed(stubbed: Stubbed) -> None:
    # The ClientToken was used before and its instance is terminated: EC2 answers with it.
    stubbed.stub.add_response("describe_instances", listing())
    stubbed.stub.add_response(
        "run_instances",
        {"Instances": [instance("web-1", "terminated")], "ReservationId": "r-1", "OwnerId": "1"},
    )

    assert (await stubbed.driver.create(machine_spec("web-1"))).state == "Failed"


async def test_throttling_is_retryable(stubbed: Stubbed) -> None:
    stubbed.stub.add_client_error(
        "describe_instances", service_error_code="RequestLimitExceeded", http_status_code=503
    )

    with pytest.raises(Retryable, match="RequestLimitExceeded"):
        await stubbed.driver.list()


async def test_stop_and_start_report_the_state_ec2_answers_and_call_only_when_needed(
    stubbed: Stubbed,
) -> None:
    stub, driver = stubbed.stub, stubbed.driver

    def change(before: str, after: str) -> dict[str, Any]:
        codes = {"pending": 0, "running": 16, "stopping": 64, "stopped": 80}
        return {
            "InstanceId": "i-0123456789abcdef0",
            "PreviousState": {"Name": before, "Code": codes[before]},
            "CurrentState": {"Name": after, "Code": codes[after]},
        }

    stub.add_response("describe_instances", listing(instance("web-1", "running")))
    stub.add_response("stop_instances", {"StoppingInstances": [change("running", "stopping")]})
    assert (await driver.stop("web-1")).state == "Stopping"

    stub.add_response("describe_instances", listing(instance("web-1", "stopping")))
    assert (await driver.stop("web-1")).state == "Stopping"  # no second StopInstances

    stub.add_response("describe_instances", listing(instance("web-1", "stopped")))
    stub.add_response("start_instances", {"StartingInstances": [change("stopped", "pending")]})
    assert (await driver.start("web-1")).state == "Starting"

    stub.add_response("describe_instances", listing(instance("web-1", "pending")))
    assert (await driver.start("web-1")).state == "Provisioning"  # already on its way

    stub.add_response("describe_instances", listing(instance("web-1", "running")))
    stub.add_response("reboot_instances", {})
    assert (await driver.reboot("web-1")).state == "Rebooting"


async def test_answers_without_the_tags_still_name_the_machine_and_its_owner(
    stubbed: Stubbed,
) -> None:
    stub, driver = stubbed.stub, stubbed.driver
    untagged = {k: v for k, v in instance("web-1", "pending").items() if k != "Tags"}
    spec = machine_spec("web-1")
    stub.add_response("describe_instances", listing())
    stub.add_response(
        "run_instances", {"Instances": [untagged], "ReservationId": "r-1", "OwnerId": "1"}
    )
    created = await driver.create(spec)

    stub.add_response("describe_instances", listing())  # the tags do not find it yet,
    stub.add_response("describe_instances", listing(untagged))  # its id does, still untagged
    got = await driver.get("web-1")

    for machine in (created, got):
        assert (machine.name, machine.cluster) == ("web-1", CLUSTER)
        assert dict(machine.tags) == dict(spec.tags)  # the identity the operator checks


async def test_of_two_instances_of_one_name_the_first_launched_is_the_machine(
    stubbed: Stubbed,
) -> None:
    # Possible only where ClientTokens are ignored (moto) and two creates raced.
    first = instance("web-1", instance_id="i-0000000000000000a")
    second = instance("web-1", instance_id="i-0000000000000000b")
    second["NetworkInterfaces"][0]["Attachment"]["AttachTime"] = FIRST_LAUNCH + timedelta(seconds=5)
    stubbed.stub.add_response("describe_instances", listing(second, first))

    assert (await stubbed.driver.get("web-1")).provider_id.endswith("i-0000000000000000a")
