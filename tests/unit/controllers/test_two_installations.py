"""Two operator installations share a cloud account, or an API server, safely.

Each installation tags its machines with its id and collects as orphans only machines
of its own id, in namespaces it serves: two installations on one provider (staging and
production on two Kubernetes clusters, two releases on one) never delete each other's
machines, whatever their clusters are called. On one API server both reconcile the
cluster-scoped NodeProviders; each writes only its own entry of the status, so they do
not rewrite each other's (no fight, no write storm).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conftest import provider_body

from nodecluster import API_VERSION
from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import NODECLUSTERS, NODEPROVIDERS
from nodecluster.controllers.world import Settings
from nodecluster.providers.registry import ProviderRegistry
from nodecluster.providers.simulator import inventory_rows
from nodecluster.testing import FakeKube, Harness
from nodecluster.testing.drivers import DriverFaults, faulty_simulator

HOURS = 3 * 3600


def installation(installation_id: str, namespaces: Sequence[str] = ()) -> Settings:
    """One installation's settings: its id and the namespaces it serves (all: none)."""
    return Settings(installation_id=installation_id, namespaces=tuple(namespaces))


def registry() -> ProviderRegistry:
    """A registry of its own per installation (its own drivers, on the shared file)."""
    reg = ProviderRegistry()
    reg.register("faulty", faulty_simulator(DriverFaults()))
    return reg


def cluster_body(namespace: str, name: str = "web", target: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "NodeCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "providerRef": {"name": "sim"},
            "profile": {"machineType": "small"},
            "targetNodes": target,
            "policies": {"health": {"pollIntervalSeconds": 30}},
        },
    }


def deployed(fake: FakeKube, namespace: str, name: str = "web") -> bool:
    body = fake.stored(NODECLUSTERS, namespace, name) or {}
    return body.get("status", {}).get("state") == "Deployed"


def live(inventory: Path) -> dict[str, dict[str, Any]]:
    """Machines not being deleted, by provider id."""
    rows = inventory_rows(inventory, now=LoopClock().now().timestamp())
    return {r["providerId"]: r for r in rows if r["state"] != "Deleting"}


async def test_two_installations_on_one_provider_never_delete_each_others_machines(
    clock: LoopClock, inventory: Path
) -> None:
    # Two Kubernetes clusters (two API servers), one cloud account (one inventory file),
    # and the same namespace and cluster names on both: nothing tells their machines
    # apart but the installation.
    blue_api, green_api = FakeKube(clock=clock, seed=1), FakeKube(clock=clock, seed=2)
    for api in (blue_api, green_api):
        api.add(NODEPROVIDERS, provider_body(inventory))
    blue = Harness(blue_api, registry=registry(), clock=clock, settings=installation("blue"))
    green = Harness(green_api, registry=registry(), clock=clock, settings=installation("green"))
    async with blue, green:
        await blue_api.create(NODECLUSTERS, "team-a", cluster_body("team-a"))
        await blue.wait_for(lambda: deployed(blue_api, "team-a"))
        blues = set(live(inventory))
        await green_api.create(NODECLUSTERS, "team-a", cluster_body("team-a", target=1))
        await green_api.create(NODECLUSTERS, "team-b", cluster_body("team-b", name="db"))
        await green.wait_for(lambda: deployed(green_api, "team-a"))
        await green.wait_for(lambda: deployed(green_api, "team-b", "db"))
        greens = set(live(inventory)) - blues
        assert len(greens) == 3

        await asyncio.sleep(HOURS)  # hours of health polls and orphan sweeps, both sides

        assert set(live(inventory)) == blues | greens, "an installation deleted another's"
        assert deployed(blue_api, "team-a") and deployed(green_api, "team-a")
        tags = {p: m["tags"].get("nodecluster.io/installation") for p, m in live(inventory).items()}
        assert {tags[p] for p in blues} == {"blue"} and {tags[p] for p in greens} == {"green"}

        # Each still collects its own orphans: a green machine whose node was
        # force-removed goes, blue's stay.
        await green_api.delete(NODECLUSTERS, "team-b", "db")
        await green.wait_for(lambda: green_api.stored(NODECLUSTERS, "team-b", "db") is None)
        await green.idle()
        assert blues <= set(live(inventory))


async def test_two_installations_on_one_api_server_share_a_provider_without_a_fight(
    fake: FakeKube, clock: LoopClock, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    blue = Harness(
        fake, registry=registry(), clock=clock, settings=installation("blue", ["team-a"])
    )
    green = Harness(
        fake, registry=registry(), clock=clock, settings=installation("green", ["team-b"])
    )
    async with blue, green:
        await fake.create(NODECLUSTERS, "team-a", cluster_body("team-a", target=2))
        await fake.create(NODECLUSTERS, "team-b", cluster_body("team-b", target=1))
        await blue.wait_for(lambda: deployed(fake, "team-a") and deployed(fake, "team-b"))
        machines = set(live(inventory))
        await asyncio.sleep(120)
        fake.reset_journal()

        await asyncio.sleep(3600)

        writes = fake.calls_of("patch_status", "nodeproviders")
        assert len(writes) <= 4, f"{len(writes)} NodeProvider status writes in an idle hour"
        status = (fake.stored(NODEPROVIDERS, None, "sim") or {}).get("status", {})
        seen = status.get("installations", {})
        assert set(seen) == {"blue", "green"}
        assert seen["blue"]["nodes"] == 2 and seen["green"]["nodes"] == 1
        assert set(live(inventory)) == machines
