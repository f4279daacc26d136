"""Secret values handed to a driver never show: not in a repr, not in a log, not on disk.

A machine's user data usually carries a boot token (kubeadm join, a cloud-init secret).
Drivers log the specs they are asked to create, and tracebacks print the arguments of
the frame that failed; either would put the token in the operator's logs if the spec
showed it. The same goes for a NodeProvider's credentials.

Every built-in driver is held to it: the simulator, the aws driver against moto's EC2,
whose SDK would log request bodies (the user data, base64-encoded) and signing material (a
session token) at DEBUG if the driver let it, and the kwok driver, whose credentials Secret
holds a kubeconfig with a token and whose Nodes are readable by anyone who may list Nodes.
So is a NodeClusterReceiver's bearer token, and any token a caller of its endpoint sends.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import aiohttp
import pytest
import yaml

from nodecluster.controllers.kubeapi import NODECLUSTERS
from nodecluster.controllers.receiver import RECEIVERS, Receivers
from nodecluster.providers.aws.driver import AwsDriver
from nodecluster.providers.base import InvalidConfig, MachineSpec, ProviderConfig
from nodecluster.providers.kwok import KwokDriver
from nodecluster.providers.simulator import SimulatorDriver
from nodecluster.testing import FakeKube, Harness
from nodecluster.testing.ec2 import Ec2Network
from nodecluster.testing.nodesapi import NodesApi

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


KUBE_TOKEN = "eyJhbGciOiJSUzI1NiJ9.kwok-sentinel-token.c2lnbmF0dXJlEXAMPLE"


async def test_the_kwok_driver_shows_neither_the_user_data_nor_its_kubeconfigs_token(
    nodes_api: NodesApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    nodes_api.token = KUBE_TOKEN
    settings = {"machineTypes": {"small": {"cores": 2, "memoryMib": 2048}}, "zones": ["zone-a"]}
    config = ProviderConfig(
        name="kwok",
        config=settings,
        credentials={"kubeconfig": yaml.safe_dump(nodes_api.kubeconfig())},
    )
    plugin = nodes_api.kubeconfig()
    plugin["users"][0]["user"] = {"exec": {"command": "sh", "args": ["-c", KUBE_TOKEN]}}
    driver = KwokDriver(config)
    shown = [repr(config), repr(driver), repr(driver.settings)]
    try:
        await driver.create(spec_with_user_data())
        stored = json.dumps(nodes_api.nodes)
        await driver.get("web-x1")
        await driver.list()
        await driver.stop("web-x1")
        await driver.reboot("web-x1")
        nodes_api.answers = [("*", 403)]  # RBAC refuses: a message to show
        with pytest.raises(InvalidConfig) as refused:
            await driver.delete("web-x1")
        await driver.delete("web-x1")
        with pytest.raises(InvalidConfig) as unusable:  # a kubeconfig that would run a plugin
            KwokDriver(
                ProviderConfig(
                    name="kwok", config=settings, credentials={"kubeconfig": yaml.safe_dump(plugin)}
                )
            )
        shown += [str(refused.value), repr(refused.value), str(refused.value.__cause__)]
        shown += [str(unusable.value), repr(unusable.value)]
    finally:
        await driver.close()

    assert "created Node web-x1" in caplog.text  # the driver does log: the checks mean something
    assert KUBE_TOKEN in nodes_api.tokens_seen  # and the token was used
    for secret in (TOKEN, base64.b64encode(USER_DATA.encode()).decode(), KUBE_TOKEN):
        assert secret not in caplog.text
        assert all(secret not in text for text in shown)
    assert "web-x1" in stored  # the Node was written: the check below looked at something
    assert TOKEN not in stored  # the user data is not on a Node, which many may read


RECEIVER_TOKEN = "rcv-7f3e9a1c0b-receiver-bearer-sentinel"
WRONG_TOKEN = "rcv-wrong-guess-sentinel-0000"


async def test_a_receivers_token_shows_nowhere_whatever_the_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A receiver's bearer token (and a caller's wrong guess, often a near miss) never
    reaches a log line, a stored object (status, annotations), an Event, an answer or a
    repr: the endpoint is on the network, and whoever reads logs or Events may not call it."""
    caplog.set_level(logging.DEBUG)
    fake = FakeKube(seed=1)
    fake.put_secret("team-a", "token", {"token": RECEIVER_TOKEN})
    fake.add(
        NODECLUSTERS,
        {
            "apiVersion": "nodecluster.io/v1alpha1",
            "kind": "NodeCluster",
            "metadata": {"name": "web", "namespace": "team-a"},
            "spec": {"providerRef": {"name": "sim"}, "profile": {"machineType": "small"}},
        },
    )
    receiver = fake.add(
        RECEIVERS,
        {
            "apiVersion": "nodecluster.io/v1alpha1",
            "kind": "NodeClusterReceiver",
            "metadata": {"name": "check", "namespace": "team-a"},
            "spec": {"clusterName": "web", "action": "Check", "tokenSecretRef": {"name": "token"}},
        },
    )
    answers: list[str] = []
    async with Harness(fake) as harness:
        receivers = Receivers(harness.world)
        receivers.observe(None, receiver)
        await receivers.serve("127.0.0.1:0")
        url = f"http://{receivers.address}/receivers/team-a/check"
        try:
            async with aiohttp.ClientSession() as session:
                for token, body in [
                    (WRONG_TOKEN, b""),
                    (RECEIVER_TOKEN[:-1], b""),
                    (RECEIVER_TOKEN, b"not json"),
                    (RECEIVER_TOKEN, b""),
                    (RECEIVER_TOKEN, b""),  # within no cooldown: a second trigger
                ]:
                    headers = {"Authorization": f"Bearer {token}"}
                    async with session.post(url, data=body, headers=headers) as response:
                        answers.append(
                            f"{response.status} {response.headers} {await response.text()}"
                        )
            await harness.idle()
            shown = [repr(receivers), repr(receivers._secrets), *answers]
        finally:
            await receivers.close()

    assert answers[0].startswith("401") and answers[3].startswith("202")
    stored = json.dumps([list(fake.snapshot().values()), fake.events], default=str)
    assert "Triggered" in stored  # an operation and its Event were written: checked below
    for secret in (RECEIVER_TOKEN, WRONG_TOKEN, RECEIVER_TOKEN[:-1]):
        assert secret not in caplog.text
        assert secret not in stored
        assert all(secret not in text for text in shown)
