"""The ClusterNodes are listed, a page at a time, into the node index before the watches
start (world.NodeBookIndex, handlers.seed_nodes), instead of a kopf index that made a
restart quadratic in them; a listed node that is gone by the time kopf lists is dropped
(handlers.confirm_listed)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
from clusters import NS, cluster_body
from conftest import provider_body
from test_kopf_wiring import NODE_BODY

from nodecluster.controllers import handlers
from nodecluster.controllers.kube import KubeClient
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.controllers.world import NodeBookIndex, World
from nodecluster.testing import FakeKube, LocalNodeIndex


def node(name: str, cluster: str = "web") -> dict[str, Any]:
    body = {**NODE_BODY, "metadata": {**NODE_BODY["metadata"], "name": name, "namespace": NS}}
    body["spec"] = {**NODE_BODY["spec"], "clusterName": cluster}
    return body


@pytest.fixture
def connected(monkeypatch: pytest.MonkeyPatch, fake: FakeKube) -> None:
    async def connect(cls: type[KubeClient], **kwargs: Any) -> FakeKube:
        return fake

    monkeypatch.setattr(KubeClient, "connect", classmethod(connect))


@pytest.fixture
def started(fake: FakeKube, connected: None, tmp_path: Path) -> Iterator[kopf.Memo]:
    memo = kopf.Memo()
    yield memo
    confirmer = memo.get("confirmer")
    if confirmer is not None:
        confirmer.cancel()


async def start(memo: kopf.Memo) -> World:
    await handlers.startup(
        settings=kopf.OperatorSettings(), memo=memo, clusternodes_by_cluster=LocalNodeIndex()
    )
    world: World = memo["world"]
    return world


async def test_every_node_is_in_the_index_before_any_event(
    fake: FakeKube, started: kopf.Memo, tmp_path: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(tmp_path / "a.db"))
    for i in range(3):
        fake.add(CLUSTERNODES, node(f"web-{i}"))
    fake.add(CLUSTERNODES, node("db-0", cluster="db"))

    world = await start(started)

    index = world.node_index
    assert isinstance(index, NodeBookIndex)
    assert sorted(n.name for n in index[(NS, "web")]) == ["web-0", "web-1", "web-2"]
    assert [n.name for n in index[(NS, "db")]] == ["db-0"]
    assert index.unconfirmed == {(NS, "web-0"), (NS, "web-1"), (NS, "web-2"), (NS, "db-0")}
    # The ledger counts them as the kopf index's nodes were counted.
    assert world.usage.shows(NS, "web-0", "sim")


async def test_events_keep_the_index_and_confirm_the_listed(
    fake: FakeKube, started: kopf.Memo, tmp_path: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(tmp_path / "a.db"))
    fake.add(CLUSTERNODES, node("web-0"))
    world = await start(started)
    index = world.node_index
    assert isinstance(index, NodeBookIndex)

    await handlers.clusternode_event(type=None, body=kopf.Body(node("web-0")), memo=started)
    await handlers.clusternode_event(type="ADDED", body=kopf.Body(node("web-1")), memo=started)
    assert index.unconfirmed == set()
    assert sorted(n.name for n in index[(NS, "web")]) == ["web-0", "web-1"]

    await handlers.clusternode_event(type="DELETED", body=kopf.Body(node("web-0")), memo=started)
    await handlers.clusternode_event(type="DELETED", body=kopf.Body(node("web-1")), memo=started)
    assert (NS, "web") not in index


async def test_a_listed_node_gone_before_kopf_listed_it_is_dropped_and_its_cluster_wakes(
    fake: FakeKube, started: kopf.Memo, tmp_path: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(tmp_path / "a.db"))
    fake.add(NODECLUSTERS, cluster_body())
    fake.add(CLUSTERNODES, node("web-0"))
    fake.add(CLUSTERNODES, node("web-1"))
    world = await start(started)
    index = world.node_index
    assert isinstance(index, NodeBookIndex)
    # web-1 goes after the startup list (another replica, by hand); kopf's listing then
    # brings only web-0.
    await fake.delete(CLUSTERNODES, NS, "web-1")
    fake.reset_journal()
    await handlers.clusternode_event(type=None, body=kopf.Body(node("web-0")), memo=started)

    await asyncio.wait_for(started["confirmer"], timeout=3 * handlers.CONFIRM_QUIET_SECONDS)

    assert [n.name for n in index[(NS, "web")]] == ["web-0"]
    assert index.unconfirmed == set()
    assert not world.usage.shows(NS, "web-1", "sim")
    assert world.queues.cluster.knows((NS, "web"))
    # Only the one never confirmed was read (web-0's event woke its own reconcile).
    assert [c.name for c in fake.calls if (c.verb, c.resource) == ("get", "clusternodes")] == [
        "web-1"
    ]


async def test_no_node_is_read_while_kopf_has_not_listed_one_yet(
    fake: FakeKube, started: kopf.Memo, tmp_path: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(tmp_path / "a.db"))
    fake.add(CLUSTERNODES, node("web-0"))
    await start(started)
    fake.reset_journal()

    # A slow listing: minutes without any event. Nothing is read meanwhile...
    await asyncio.sleep(handlers.CONFIRM_GIVE_UP_SECONDS / 2)
    assert [c for c in fake.calls if (c.verb, c.resource) == ("get", "clusternodes")] == []
    # ...and once the listing comes, nothing at all.
    await handlers.clusternode_event(type=None, body=kopf.Body(node("web-0")), memo=started)
    await asyncio.wait_for(started["confirmer"], timeout=handlers.CONFIRM_GIVE_UP_SECONDS)
    assert [c for c in fake.calls if (c.verb, c.resource) == ("get", "clusternodes")] == []


async def test_a_restart_where_nothing_went_reads_nothing(
    fake: FakeKube, started: kopf.Memo, tmp_path: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(tmp_path / "a.db"))
    fake.add(CLUSTERNODES, node("web-0"))
    await start(started)
    fake.reset_journal()
    await handlers.clusternode_event(type=None, body=kopf.Body(node("web-0")), memo=started)

    await asyncio.wait_for(started["confirmer"], timeout=3 * handlers.CONFIRM_QUIET_SECONDS)

    assert [c for c in fake.calls if c.verb == "get"] == []
