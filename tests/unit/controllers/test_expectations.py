"""Expectations: ClusterNode creates and deletes the watch cache does not show yet.

A NodeCluster reconcile right after creating or deleting nodes must plan from what it
did, not from a cache a moment behind; and an expectation the cache never confirms must
not stand forever. The clock is moved by hand: only its monotonic time counts.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from nodecluster.controllers.expectations import Expectations
from nodecluster.planning.model import NodeView

WEB = ("team-a", "web")
API = ("team-a", "api")
TIMEOUT = 60.0
CREATED = datetime(2030, 1, 1, tzinfo=UTC)


class ManualClock:
    def __init__(self) -> None:
        self.seconds = 1000.0

    def now(self) -> datetime:
        return CREATED

    def monotonic(self) -> float:
        return self.seconds


def view(name: str, **fields: Any) -> NodeView:
    return replace(NodeView(name=name, created_at=CREATED), **fields)


def test_an_expected_create_stands_in_for_a_node_the_cache_does_not_show_yet() -> None:
    expectations = Expectations(ManualClock(), TIMEOUT)
    expectations.expect_create(WEB, view("web-b", zone="zone-b"))

    nodes = expectations.merge(WEB, [view("web-c"), view("web-a")])

    assert [n.name for n in nodes] == ["web-a", "web-b", "web-c"]
    assert nodes[1].zone == "zone-b"
    assert expectations.in_flight(WEB) == 1


def test_a_create_the_cache_shows_is_no_longer_expected() -> None:
    expectations = Expectations(ManualClock(), TIMEOUT)
    expectations.expect_create(WEB, view("web-b", zone="zone-b"))

    nodes = expectations.merge(WEB, [view("web-b", zone="zone-a", state="Running")])

    assert nodes == [view("web-b", zone="zone-a", state="Running")]  # the cache's view wins
    assert expectations.in_flight(WEB) == 0


def test_a_create_the_cache_never_shows_stays_expected_and_becomes_overdue() -> None:
    """A watch may lag for minutes: an expectation is never dropped on a timer (that
    doubled creates behind a lagging watch); after the timeout it is overdue, for the
    controller to check against the API."""
    clock = ManualClock()
    expectations = Expectations(clock, TIMEOUT)
    expectations.expect_create(WEB, view("web-b"))

    clock.seconds += TIMEOUT
    assert not expectations.overdue(WEB)
    clock.seconds += 1
    assert [n.name for n in expectations.merge(WEB, [])] == ["web-b"]
    assert expectations.overdue(WEB)
    assert not expectations.overdue(API)


def test_an_overdue_create_the_api_shows_is_expected_afresh_one_it_does_not_is_dropped() -> None:
    clock = ManualClock()
    expectations = Expectations(clock, TIMEOUT)
    expectations.expect_create(WEB, view("web-b"))
    expectations.expect_create(WEB, view("web-c"))
    clock.seconds += TIMEOUT + 1

    listed = expectations.confirm(WEB, [view("web-a"), view("web-b")])

    assert [n.name for n in listed] == ["web-a", "web-b"]
    assert not expectations.overdue(WEB)
    assert [n.name for n in expectations.merge(WEB, [view("web-a")])] == ["web-a", "web-b"]


def test_an_expected_delete_marks_the_cached_node_deleting_until_the_cache_does() -> None:
    expectations = Expectations(ManualClock(), TIMEOUT)
    expectations.expect_delete(WEB, "web-a")

    assert expectations.merge(WEB, [view("web-a"), view("web-b")]) == [
        view("web-a", deleting=True),
        view("web-b"),
    ]
    assert expectations.in_flight(WEB) == 1
    assert expectations.merge(WEB, [view("web-a", deleting=True)]) == [view("web-a", deleting=True)]
    assert expectations.in_flight(WEB) == 0


def test_a_delete_is_no_longer_expected_once_the_node_is_gone_from_the_cache() -> None:
    expectations = Expectations(ManualClock(), TIMEOUT)
    expectations.expect_delete(WEB, "web-a")

    assert expectations.merge(WEB, [view("web-b")]) == [view("web-b")]
    assert expectations.in_flight(WEB) == 0


def test_an_overdue_delete_is_confirmed_by_the_api_or_dropped() -> None:
    clock = ManualClock()
    expectations = Expectations(clock, TIMEOUT)
    expectations.expect_delete(WEB, "web-a")
    expectations.expect_delete(WEB, "web-b")
    clock.seconds += TIMEOUT + 1
    assert expectations.overdue(WEB)

    # web-a: the API shows it deleting; web-b: the API shows it alive (the delete failed).
    listed = expectations.confirm(WEB, [view("web-a", deleting=True), view("web-b")])

    assert listed == [view("web-a", deleting=True), view("web-b")]
    assert expectations.in_flight(WEB) == 1
    # The lagging cache still shows web-a alive: it stays going.
    assert expectations.merge(WEB, [view("web-a"), view("web-b")]) == [
        view("web-a", deleting=True),
        view("web-b"),
    ]


def test_forgetting_a_cluster_drops_only_its_expectations() -> None:
    expectations = Expectations(ManualClock(), TIMEOUT)
    expectations.expect_create(WEB, view("web-b"))
    expectations.expect_delete(WEB, "web-a")
    expectations.expect_create(API, view("api-a"))

    expectations.forget(WEB)

    assert expectations.in_flight(WEB) == 0
    assert expectations.merge(WEB, [view("web-a")]) == [view("web-a")]
    assert [n.name for n in expectations.merge(API, [])] == ["api-a"]
