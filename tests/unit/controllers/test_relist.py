"""A watch started over from a list (kopf, after `410 Gone`: every watch resumed across an
API server restart) brings no DELETED event for what was deleted while it was away; the
audit after each new listing finds those objects and forgets them (relist.py).

CI found it: a scale-in with the API server restarted in the middle kept a node that was
gone in the index, and the cluster said Scaling for ever."""

from __future__ import annotations

import asyncio
from pathlib import Path

from clusters import NS, cluster_body, live_nodes, nodes, state
from conftest import provider_body

from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.controllers.world import (
    RELIST_GAP_SECONDS,
    ClusterBookIndex,
    NodeBookIndex,
    Relists,
)
from nodecluster.testing import FakeKube, Harness


async def deployed(
    fake: FakeKube, harness: Harness, inventory: Path, target: int = 3, **config: float
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, config=config))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=target))
    settled = "Deployed" if target else "Empty"
    await harness.wait_for(lambda: state(fake) == settled, what=settled)


async def remove_by_hand(fake: FakeKube, kind_plural: str, name: str) -> None:
    """Delete an object and strip its finalizers, as a person forcing it would."""
    kind = {"clusternodes": CLUSTERNODES, "nodeclusters": NODECLUSTERS}[kind_plural]
    await fake.delete(kind, NS, name)
    await fake.patch(kind, NS, name, {"metadata": {"finalizers": None}})


async def relisted(harness: Harness) -> None:
    """Let the watch stay away long enough for its next listing to be a new one."""
    await asyncio.sleep(RELIST_GAP_SECONDS + 1)  # loop time: looptime moves the clock
    await harness.relist()


async def test_a_node_deleted_while_the_watch_was_away_is_made_again(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deployed(fake, harness, inventory)
    gone = live_nodes(fake)[0]["metadata"]["name"]
    harness.break_watch()
    await remove_by_hand(fake, "clusternodes", gone)
    await relisted(harness)

    # Without the audit, the index kept the gone node and the cluster believed it had 3.
    await harness.wait_for(
        lambda: len(live_nodes(fake)) == 3 and state(fake) == "Deployed", what="made again"
    )
    index = harness.world.node_index
    assert isinstance(index, NodeBookIndex)
    assert (NS, gone) not in index.nodes()
    assert sorted(n.name for n in index[(NS, "web")]) == sorted(
        n["metadata"]["name"] for n in nodes(fake)
    )


async def test_a_scale_in_finished_while_the_watch_was_away_settles(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deployed(fake, harness, inventory, target=4, deleteLatencySeconds=5)
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 1}})
    await harness.wait_for(
        lambda: any(n["metadata"].get("deletionTimestamp") for n in nodes(fake)),
        what="the scale-in under way",
    )
    harness.break_watch()
    # The operator finishes the deletions (its own finalizers), unseen by the watch.
    await harness.wait_for(lambda: len(nodes(fake)) == 1, what="the nodes deleted")
    await relisted(harness)

    await harness.wait_for(
        lambda: state(fake) == "Deployed" and len(nodes(fake)) == 1, what="settled at 1"
    )
    index = harness.world.node_index
    assert [n.name for n in index[(NS, "web")]] == [nodes(fake)[0]["metadata"]["name"]]


async def test_a_cluster_and_a_provider_removed_while_the_watch_was_away_are_forgotten(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    await deployed(fake, harness, inventory, target=0)
    fake.add(NODEPROVIDERS, provider_body(inventory.with_name("other.db"), name="other"))
    await harness.wait_for(lambda: "other" in harness.world.providers.specs, what="other seen")
    harness.break_watch()
    await remove_by_hand(fake, "nodeclusters", "web")
    await fake.delete(NODEPROVIDERS, None, "sim")
    await fake.patch(NODEPROVIDERS, None, "sim", {"metadata": {"finalizers": None}})
    assert fake.stored(NODEPROVIDERS, None, "sim") is None
    # Every kind is audited when any lists again: here only the other provider is left
    # to list, and no NodeCluster at all.
    await relisted(harness)

    world = harness.world
    await harness.wait_for(
        lambda: "sim" not in world.providers.specs and not world.clusters_of("sim"),
        what="both forgotten",
    )
    assert isinstance(world.cluster_index, ClusterBookIndex)
    assert world.cluster_index.clusters() == []


async def test_only_a_new_listing_is_audited(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    """The startup listing and the watch's ordinary events list nothing again; each new
    listing lists each audited kind once."""
    await deployed(fake, harness, inventory)
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 5}})
    await harness.wait_for(lambda: len(live_nodes(fake)) == 5, what="scaled out")
    await harness.idle()
    assert fake.calls_of("list", "clusternodes") == []

    await relisted(harness)
    await harness.idle()
    listed = sorted(call.resource for call in fake.calls_of("list"))
    assert listed.count("clusternodes") == 1
    assert listed.count("nodeclusters") == 1
    assert listed.count("nodeproviders") == 2  # the harness's startup list, and the audit
    # Nothing was gone, so nothing was forgotten or woken to be made again.
    assert len(live_nodes(fake)) == 5
    assert len(fake.calls_of("create", "clusternodes")) == 5


def test_a_new_listing_is_told_from_the_startup_one_and_from_watch_events() -> None:
    relists = Relists(now=100.0)
    a, b = (NS, "a"), (NS, "b")
    # The startup listing, back to back after the start: not new.
    assert not relists.saw("clusternodes", None, a, 100.5)
    assert not relists.saw("nodeclusters", None, a, 101.0)  # another kind, same name
    assert not relists.saw("clusternodes", None, b, 102.0)
    # Watch events never begin a listing, however late.
    assert not relists.saw("clusternodes", "MODIFIED", a, 500.0)
    # A listing event after a quiet gap begins a new listing, once.
    assert relists.saw("clusternodes", None, b, 600.0)
    assert not relists.saw("clusternodes", None, a, 600.1)
    # Listed again within the gap: an object shown twice means the listing started over.
    assert relists.saw("clusternodes", None, b, 601.0)
    assert not relists.saw("clusternodes", None, a, 601.1)


def test_a_listing_soon_after_the_start_is_new_when_it_shows_an_object_again() -> None:
    """The API server restarted seconds after the operator did: no gap to tell by."""
    relists = Relists(now=0.0)
    node = (NS, "web-0")
    assert not relists.saw("clusternodes", None, node, 1.0)
    assert not relists.saw("clusternodes", "ADDED", (NS, "web-1"), 2.0)
    assert relists.saw("clusternodes", None, node, 3.0)


def test_an_empty_startup_listing_leaves_the_first_later_listing_new() -> None:
    relists = Relists(now=0.0)
    assert not relists.saw("nodeproviders", "ADDED", ("", "sim"), 60.0)
    assert relists.saw("nodeproviders", None, ("", "sim"), 120.0)


def test_the_audit_sees_what_events_showed_while_it_listed() -> None:
    relists = Relists(now=0.0)
    relists.touched["clusternodes"] = set()
    relists.saw("clusternodes", "ADDED", (NS, "new"), 1.0)
    relists.saw("nodeclusters", "ADDED", (NS, "web"), 1.0)
    assert relists.touched == {"clusternodes": {(NS, "new")}}


def test_a_startup_listing_that_comes_late_is_still_the_startup_one() -> None:
    """A slow start (the providers' list, a slow API server) must not cost every restart an
    audit: a full list of each kind (a reviewer's find)."""
    relists = Relists(now=0.0)
    assert not relists.saw("clusternodes", None, (NS, "a"), 30.0)
    assert not relists.saw("clusternodes", None, (NS, "b"), 31.0)
    assert relists.saw("clusternodes", None, (NS, "a"), 90.0)


def test_a_listing_seconds_after_another_is_new_when_it_shows_what_came_since() -> None:
    """CI found it: the API server restarted twice within seconds (two tests back to back),
    and the second listing showed only objects made after the first one: no gap, and no
    object listed twice. An object shown by a watch event is shown again only by a new
    listing."""
    relists = Relists(now=0.0)
    assert not relists.saw("clusternodes", None, (NS, "old"), 1.0)  # startup
    assert relists.saw("clusternodes", None, (NS, "old"), 100.0)  # a first restart
    assert not relists.saw("clusternodes", "ADDED", (NS, "made"), 101.0)
    assert relists.saw("clusternodes", None, (NS, "made"), 103.0)  # a second one


def test_a_kinds_first_listing_after_the_startup_window_is_new() -> None:
    relists = Relists(now=0.0)
    assert not relists.saw("nodeproviders", None, ("", "sim"), 30.0)  # a slow startup
    assert relists.saw("nodeclusters", None, (NS, "web"), 61.0)  # its startup list was empty
