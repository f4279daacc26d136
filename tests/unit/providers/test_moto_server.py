"""The EC2 the aws driver's tests run on: moto's server, one per session, emptied between
tests, and a loud failure (not a skip) when it cannot start."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nodecluster.testing.ec2 import Ec2Network, MotoServer, MotoUnavailable, ec2_client


def test_a_server_that_cannot_start_fails_the_tests_with_its_log(tmp_path: Path) -> None:
    broken = (sys.executable, "-c", "print('ModuleNotFoundError: moto'); raise SystemExit(1)")

    with pytest.raises(MotoUnavailable, match="ModuleNotFoundError: moto"):
        MotoServer.start(tmp_path, timeout=10, program=broken)


@pytest.mark.parametrize("turn", [1, 2])
async def test_every_test_starts_from_an_empty_ec2(ec2: Ec2Network, turn: int) -> None:
    async with ec2_client(ec2.endpoint) as client:
        before = await client.describe_instances()
        await client.run_instances(ImageId=ec2.image_id, MinCount=1, MaxCount=1)

    assert before["Reservations"] == []  # the other turn's instance is gone
