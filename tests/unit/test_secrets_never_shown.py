"""Secret values handed to a driver never show: not in a repr, not in a log, not on disk.

A machine's user data usually carries a boot token (kubeadm join, a cloud-init secret).
Drivers log the specs they are asked to create, and tracebacks print the arguments of
the frame that failed; either would put the token in the operator's logs if the spec
showed it. The same goes for a NodeProvider's credentials.

Every built-in driver is held to it: the simulator, and the aws driver against moto's EC2,
whose SDK would log request bodies (the user data, base64-encoded) and signing material (a
session token) at DEBUG if the driver let it.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest

from nodecluster.providers.aws.driver import AwsDriver
from nodecluster.providers.base import InvalidConfig, MachineSpec, ProviderConfig
from nodecluster.providers.simulator import SimulatorDriver
from nodecluster.testing.ec2 import Ec2Network

TOKEN = "abcdef.0123456789abcdef"
USER_DATA = f"#cloud-config\nruncmd: [kubeadm join --token {TOKEN}]\n"


def spec_with_user_data() -> MachineSpec:
    return MachineSpec(
        name="web-x1", cluster="team-a/web", machine_type="small", user_data=USER_DATA
    )


def files_under(folder: Path) -> bytes:
    """Every byte of the files in folder (the inventory, its journal)."""
    return b"".join(path.read_bytes() for path in folder.iterdir() if path.is_file())


def test_a_machine_specs_repr_and_str_leave_its_user_data_out() -> None:
    spec = spec_with_user_data()

    assert TOKEN not in repr(spec)
    assert TOKEN not in str(spec)
    assert TOKEN not in f"{spec!r} {spec}"
    assert "web-x1" in repr(spec)  # the rest still shows, for the logs that need it


def test_a_machine_spec_still_carries_its_user_data_and_compares_by_it() -> None:
    spec = spec_with_user_data()

    assert spec.user_data == USER_DATA
    assert spec != MachineSpec(name="web-x1", cluster="team-a/web", machine_type="small")


def test_a_provider_configs_repr_leaves_its_credentials_out() -> None:
    config = ProviderConfig(name="sim", config={}, credentials={"token": TOKEN})

    assert TOKEN not in repr(config)


async def test_the_simulator_neither_logs_nor_stores_the_user_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    driver = SimulatorDriver(ProviderConfig(name="sim", config={"path": str(tmp_path / "m.db")}))
    try:
        await driver.create(spec_with_user_data())
        await driver.get("web-x1")
        await driver.list()
    finally:
        await driver.close()

    assert TOKEN not in caplog.text
    stored = files_under(tmp_path)
    assert stored  # the inventory was written: the check below looked at something
    assert TOKEN.encode() not in stored


SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKENxyz"


async def test_the_aws_driver_shows_neither_the_user_data_nor_the_credentials(
    ec2: Ec2Network, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    credentials = {
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_SESSION_TOKEN": SESSION_TOKEN,
    }
    config = ProviderConfig(name="aws", config=ec2.driver_config(), credentials=credentials)
    refused = ProviderConfig(
        name="aws",
        config=ec2.driver_config(subnets={"zone-a": "subnet-0000000000000dead"}),
        credentials=credentials,
    )
    driver, failing = AwsDriver(config), AwsDriver(refused)
    shown = [repr(config), repr(driver), repr(driver.settings), repr(failing)]
    try:
        await driver.create(spec_with_user_data())
        await driver.get("web-x1")
        await driver.list()
        await driver.stop("web-x1")
        await driver.delete("web-x1")
        with pytest.raises(InvalidConfig) as err:  # EC2 refuses the subnet: a message to show
            await failing.create(spec_with_user_data())
        shown += [str(err.value), repr(err.value), str(err.value.__cause__)]
    finally:
        await driver.close()
        await failing.close()

    assert "launched web-x1" in caplog.text  # the driver does log: the checks below mean something
    secrets = [
        TOKEN,
        base64.b64encode(USER_DATA.encode()).decode(),
        SECRET_ACCESS_KEY,
        SESSION_TOKEN,
    ]
    for secret in secrets:
        assert secret not in caplog.text
        assert all(secret not in text for text in shown)
