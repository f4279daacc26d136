"""Every failure visible within one reconcile (issue 11, item 5): a refused write or an
error reaches the object's conditions and one Warning Event, never only the log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from clusters import NS, cluster_body, condition, nodes, state
from conftest import provider_body

from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.testing import FakeKube, Harness


def node_ready(fake: FakeKube, name: str) -> dict[str, Any]:
    status = (fake.stored(CLUSTERNODES, NS, name) or {}).get("status", {})
    return next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})


async def test_a_refused_node_create_stalls_the_cluster_with_the_servers_message(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    refused = fake.fail(
        "create",
        "clusternodes",
        403,
        times=None,
        message='clusternodes is forbidden: User "system:serviceaccount:x:y" cannot create',
    )
    await fake.create(NODECLUSTERS, NS, cluster_body())

    await harness.wait_for(lambda: condition(fake, "Stalled").get("reason") == "APIRefused")
    stalled = condition(fake, "Stalled")
    assert "403" in stalled["message"] and "cannot create" in stalled["message"]
    assert condition(fake, "Ready")["status"] == "False"
    await asyncio.sleep(600)  # ten minutes of retries (operator time)
    assert refused.fired > 3
    assert condition(fake, "Stalled")["reason"] == "APIRefused"
    assert len(fake.events_about("web", reason="APIRefused")) == 1

    fake.remove(refused)
    await harness.wait_for(lambda: state(fake) == "Deployed", what="Deployed once allowed")
    assert condition(fake, "Stalled")["status"] == "False"


async def test_a_failing_api_degrades_the_cluster_and_it_recovers(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    failing = fake.fail("create", "clusternodes", 503, times=None, message="etcdserver: timeout")
    await fake.create(NODECLUSTERS, NS, cluster_body())

    await harness.wait_for(lambda: condition(fake, "Degraded").get("reason") == "APIUnavailable")
    assert "etcdserver: timeout" in condition(fake, "Degraded")["message"]
    assert condition(fake, "Stalled").get("status") != "True"

    fake.remove(failing)
    await harness.wait_for(lambda: state(fake) == "Deployed")
    assert condition(fake, "Degraded")["status"] == "False"


async def test_a_missing_user_data_secret_is_named_on_the_node_and_stalls_the_cluster(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(
        NODECLUSTERS,
        NS,
        cluster_body(profile={"machineType": "small", "userDataSecretRef": "boot"}, targetNodes=1),
    )

    await harness.wait_for(lambda: len(nodes(fake)) == 1)
    name = nodes(fake)[0]["metadata"]["name"]
    await harness.wait_for(lambda: node_ready(fake, name).get("reason") == "InvalidProviderConfig")
    assert "team-a/boot" in node_ready(fake, name)["message"]
    await harness.wait_for(
        lambda: condition(fake, "Stalled").get("reason") == "InvalidProviderConfig"
    )
    # Past the startup timeout: a node waiting for its Secret is not "remediated" over and over.
    await asyncio.sleep(1200)
    assert [n["metadata"]["name"] for n in nodes(fake)] == [name]

    fake.put_secret(NS, "boot", {"userData": "#cloud-config"})
    await harness.wait_for(lambda: state(fake) == "Deployed", within=900, what="Deployed")


async def test_a_forbidden_user_data_secret_names_the_chart_value_to_change(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    fake.put_secret(NS, "boot", {"userData": "#cloud-config"})
    fake.fail("read_secret", "secrets", 403, times=None, name="boot")
    await fake.create(
        NODECLUSTERS,
        NS,
        cluster_body(profile={"machineType": "small", "userDataSecretRef": "boot"}, targetNodes=1),
    )

    await harness.wait_for(lambda: len(nodes(fake)) == 1)
    name = nodes(fake)[0]["metadata"]["name"]
    await harness.wait_for(lambda: node_ready(fake, name).get("reason") == "InvalidProviderConfig")
    assert "rbac.secretNamespaces" in node_ready(fake, name)["message"]
