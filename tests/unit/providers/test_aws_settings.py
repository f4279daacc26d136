"""The aws driver's config, credentials and profile properties: checked before any call to
EC2, every problem named, no secret value in any message."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from nodecluster.providers.aws import make_driver
from nodecluster.providers.aws.driver import AwsDriver
from nodecluster.providers.aws.settings import (
    AwsSettings,
    StaticCredentials,
    capacity_type_of,
    static_credentials,
)
from nodecluster.providers.base import InvalidConfig, PowerControl, ProviderConfig

SUBNETS = {"eu-west-1a": "subnet-0a1b2c3d4e5f60718", "eu-west-1b": "subnet-0f1e2d3c"}
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN"


def config(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"region": "eu-west-1", "subnets": dict(SUBNETS)}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def settings(**changes: Any) -> AwsSettings:
    return AwsSettings.from_config(ProviderConfig(name="aws", config=config(**changes)))


def refusal(**changes: Any) -> str:
    with pytest.raises(InvalidConfig) as err:
        settings(**changes)
    return str(err.value)


def test_every_key_in_use() -> None:
    parsed = settings(
        securityGroupIds=["sg-0123456789abcdef0"],
        iamInstanceProfile="arn:aws:iam::123456789012:instance-profile/nodes",
        keyName="ops",
        imageId="resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
        endpointUrl="https://vpce-0abc.ec2.eu-west-1.vpce.amazonaws.com",
        capacityType="spot",
        maxAttempts=5,
    )

    assert parsed.region == "eu-west-1"
    assert parsed.subnets == SUBNETS
    assert parsed.security_group_ids == ("sg-0123456789abcdef0",)
    assert parsed.capacity_type == "spot"
    assert parsed.max_attempts == 5
    assert settings().capacity_type == "on-demand"


def test_an_unknown_key_is_named_with_the_known_ones() -> None:
    message = refusal(securityGroupIDs=["sg-0123456789abcdef0"])

    assert "config.securityGroupIDs: unknown key" in message
    assert "securityGroupIds" in message  # the key meant is among the known ones


def test_snake_case_keys_are_unknown_too() -> None:
    assert "config.key_name: unknown key" in refusal(key_name="ops")


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidConfig) as err:
        AwsSettings.from_config(ProviderConfig(name="aws", config={"capacityType": "cheap"}))
    message = str(err.value)

    assert "config.region: required" in message
    assert "config.subnets: required" in message
    assert "config.capacityType" in message


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"region": "Europe"}, "config.region"),
        ({"subnets": {}}, "config.subnets"),
        ({"subnets": {"a": "sn-123"}}, "config.subnets.a"),
        ({"subnets": {"a": "subnet-0a1b2c3d", "b": "subnet-0a1b2c3d"}}, "given for two zones"),
        ({"securityGroupIds": ["default"]}, "config.securityGroupIds.0"),
        ({"imageId": "ubuntu-22.04"}, "config.imageId"),
        ({"endpointUrl": "ec2.local"}, "config.endpointUrl"),
        ({"maxAttempts": 0}, "config.maxAttempts"),
    ],
)
def test_a_bad_value_is_named(changes: dict[str, Any], named: str) -> None:
    assert named in refusal(**changes)


def test_credentials_from_the_secret() -> None:
    creds = static_credentials(
        {
            "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_SESSION_TOKEN": TOKEN,
        }
    )

    assert creds == StaticCredentials("AKIAEXAMPLE", SECRET, TOKEN)
    assert SECRET not in repr(creds) and TOKEN not in repr(creds)


def test_no_secret_means_the_default_chain() -> None:
    assert static_credentials({}) is None


@pytest.mark.parametrize(
    ("secret", "named"),
    [
        ({"AWS_SECRET_ACCESS_KEY": SECRET}, "AWS_ACCESS_KEY_ID"),
        ({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE"}, "AWS_SECRET_ACCESS_KEY"),
        (
            {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": SECRET, "token": TOKEN},
            "'token'",
        ),
    ],
)
def test_a_bad_secret_is_named_by_its_keys_never_its_values(
    secret: dict[str, str], named: str
) -> None:
    with pytest.raises(InvalidConfig) as err:
        static_credentials(secret)

    assert named in str(err.value)
    assert SECRET not in str(err.value) and TOKEN not in str(err.value)


def test_profile_properties() -> None:
    assert capacity_type_of({}, "on-demand") == "on-demand"
    assert capacity_type_of({"capacityType": "spot"}, "on-demand") == "spot"
    with pytest.raises(InvalidConfig, match="rootVolumeSize"):
        capacity_type_of({"rootVolumeSize": "100"}, "on-demand")
    with pytest.raises(InvalidConfig, match="on-demand or spot"):
        capacity_type_of({"capacityType": "reserved"}, "on-demand")


def test_the_entry_point_builds_the_driver_without_calling_ec2() -> None:
    driver = make_driver(ProviderConfig(name="aws", config=config()))

    assert isinstance(driver, AwsDriver)
    assert isinstance(driver, PowerControl)
    assert "eu-west-1" in repr(driver)


def test_bad_config_fails_the_build() -> None:
    with pytest.raises(InvalidConfig, match=r"config\.region: required"):
        make_driver(ProviderConfig(name="aws", config={"subnets": SUBNETS}))


def test_without_the_extra_the_provider_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What `import aiobotocore` does where the extra is not installed.
    monkeypatch.setitem(sys.modules, "nodecluster.providers.aws.driver", None)

    with pytest.raises(InvalidConfig, match=r"pip install 'nodecluster-operator\[aws\]'"):
        make_driver(ProviderConfig(name="aws", config=config()))
