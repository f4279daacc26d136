"""The README's example of an in-process controller test, kept running as written there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nodecluster import API_VERSION
from nodecluster.controllers.kubeapi import NODECLUSTERS, NODEPROVIDERS
from nodecluster.testing import FakeKube, Harness, LoopClock

my_cluster: dict[str, Any] = {
    "apiVersion": API_VERSION,
    "kind": "NodeCluster",
    "metadata": {"name": "workers", "namespace": "default"},
    "spec": {"providerRef": {"name": "sim"}, "profile": {"machineType": "small"}, "targetNodes": 2},
}


def state(fake: FakeKube) -> str | None:
    body = fake.stored(NODECLUSTERS, "default", "workers") or {}
    return body.get("status", {}).get("state")


@pytest.mark.looptime
async def test_a_cluster_converges(tmp_path: Path) -> None:
    fake = FakeKube(clock=LoopClock())
    async with Harness(fake) as harness:
        fake.add(
            NODEPROVIDERS,
            {
                "apiVersion": API_VERSION,
                "kind": "NodeProvider",
                "metadata": {"name": "sim"},
                "spec": {"driver": "simulator", "config": {"path": str(tmp_path / "m.db")}},
            },
        )
        await fake.create(NODECLUSTERS, "default", my_cluster)
        await harness.wait_for(lambda: state(fake) == "Deployed")
