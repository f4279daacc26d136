"""A watch far behind the store never makes the cluster controller create twice (issue 11,
item 10): creates and deletes it made stay expected until the API shows them, however long
the watch lags; an expectation overdue is checked against the API, not dropped."""

from __future__ import annotations

from pathlib import Path

import pytest
from clusters import NS, cluster_body, nodes, state
from conftest import provider_body

from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import NODECLUSTERS, NODEPROVIDERS
from nodecluster.providers.registry import ProviderRegistry
from nodecluster.testing import FakeKube, Harness


@pytest.mark.parametrize("lag", [10.0, 120.0, 290.0])
async def test_a_lagging_watch_never_doubles_creates(
    fake: FakeKube, registry: ProviderRegistry, clock: LoopClock, inventory: Path, lag: float
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    async with Harness(fake, registry=registry, clock=clock, watch_lag=lag) as harness:
        await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=5))
        await harness.wait_for(lambda: state(fake) == "Deployed", within=3 * lag + 600, poll=1.0)

    assert len(fake.calls_of("create", "clusternodes")) == 5
    assert len(nodes(fake)) == 5


@pytest.mark.parametrize("lag", [120.0, 290.0])
async def test_a_lagging_watch_never_doubles_deletes(
    fake: FakeKube, registry: ProviderRegistry, clock: LoopClock, inventory: Path, lag: float
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    async with Harness(fake, registry=registry, clock=clock) as harness:
        await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=6))
        await harness.wait_for(lambda: state(fake) == "Deployed")
    async with Harness(fake, registry=registry, clock=clock, watch_lag=lag) as harness:
        await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 3}})
        await harness.wait_for(
            lambda: len(nodes(fake)) == 3 and state(fake) == "Deployed",
            within=3 * lag + 600,
            poll=1.0,
        )

    assert len(fake.calls_of("delete", "clusternodes")) == 3
