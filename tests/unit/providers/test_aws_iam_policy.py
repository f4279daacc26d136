"""The README's IAM policy for the aws driver grants exactly what the driver calls, and its
example NodeProvider is one the driver accepts: both kept true as the driver changes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from nodecluster.api.nodeprovider import NodeProvider
from nodecluster.providers.aws.driver import EC2_ACTIONS, AwsDriver
from nodecluster.providers.aws.instances import PROVIDER_TAG
from nodecluster.providers.aws.settings import AwsSettings
from nodecluster.providers.base import ProviderConfig
from nodecluster.testing.contract import delete_until_not_found, machine_spec
from nodecluster.testing.ec2 import TEST_CREDENTIALS, Ec2Network, Faults, FaultyEc2

README = Path(__file__).resolve().parents[3] / "README.md"


def readme_block(after: str, language: str) -> str:
    """The first ```language block of the README after the line containing `after`."""
    text = README.read_text()
    start = text.index(after)
    match = re.compile(rf"```{language}\n(.*?)```", re.DOTALL).search(text, start)
    assert match is not None, f"no {language} block after {after!r}"
    return match.group(1)


def policy() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(readme_block("**IAM policy.**", "json"))
    return document


def actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def test_the_policy_grants_the_driver_s_ec2_actions_and_no_other() -> None:
    granted = set().union(*(actions(s) for s in policy()["Statement"]))

    assert {a for a in granted if a.startswith("ec2:")} == {f"ec2:{a}" for a in EC2_ACTIONS}
    assert granted - {f"ec2:{a}" for a in EC2_ACTIONS} == {"iam:PassRole"}


def test_every_change_is_limited_to_instances_tagged_with_the_nodeprovider() -> None:
    for statement in policy()["Statement"]:
        granted = actions(statement)
        conditions = statement.get("Condition", {}).get("StringEquals", {})
        if granted & {"ec2:TerminateInstances", "ec2:StopInstances", "ec2:StartInstances"}:
            assert conditions == {f"aws:ResourceTag/{PROVIDER_TAG}": "NODEPROVIDER"}
        if granted == {"ec2:RunInstances"} and any("instance/" in r for r in statement["Resource"]):
            assert conditions == {f"aws:RequestTag/{PROVIDER_TAG}": "NODEPROVIDER"}
        if granted == {"ec2:CreateTags"}:
            assert conditions == {"ec2:CreateAction": "RunInstances"}


async def test_the_driver_calls_nothing_the_policy_does_not_grant(ec2: Ec2Network) -> None:
    proxy = await FaultyEc2(ec2.endpoint).start()
    config = ec2.driver_config(endpoint=proxy.endpoint(Faults()))
    driver = AwsDriver(ProviderConfig(name="aws", config=config, credentials=TEST_CREDENTIALS))
    try:
        await driver.create(machine_spec("web-1"))
        await driver.get("web-1")
        await driver.list()
        await driver.list("team-a/web")
        await driver.stop("web-1")
        await driver.start("web-1")
        await driver.reboot("web-1")
        await delete_until_not_found(driver, "web-1")
    finally:
        await driver.close()
        await proxy.close()

    called = {call.partition(":")[0] for call in proxy.calls}
    assert called <= EC2_ACTIONS
    assert EC2_ACTIONS - called == {"CreateTags"}  # granted for the tags given at launch


def test_the_readme_example_nodeprovider_is_accepted() -> None:
    body = yaml.safe_load(readme_block("### The aws provider (EC2)", "yaml"))

    provider = NodeProvider.model_validate(body)
    settings = AwsSettings.from_config(ProviderConfig(name="aws-eu", config=provider.spec.config))

    assert provider.spec.driver == "aws"
    assert set(settings.subnets) == {"eu-west-1a", "eu-west-1b"}
