"""The controllers' body cache: newest body wins, own writes' echoes wake nothing."""

from __future__ import annotations

from typing import Any

import pytest

from nodecluster.controllers.bodies import BodyCache, resource_version_order

KEY = ("NodeCluster", "ns", "workers")


def body(version: str, state: str = "") -> dict[str, Any]:
    return {"metadata": {"name": "workers", "resourceVersion": version}, "status": {"state": state}}


@pytest.mark.parametrize(
    ("a", "b", "order"),
    [
        ("5", "5", 0),
        ("5", "6", -1),
        ("10", "9", 1),
        ("123", "1234", -1),
        ("abc", "5", None),  # not an integer: no order
        ("05", "6", None),  # leading zero: not a valid version
        ("", "5", None),
    ],
)
def test_resource_version_order(a: str, b: str, order: int | None) -> None:
    assert resource_version_order(a, b) == order


def test_the_echo_of_an_own_write_wakes_nothing_and_an_older_body_never_wins() -> None:
    cache = BodyCache()
    assert cache.observe(KEY, body("10"))  # someone else's write: wake
    cache.wrote(KEY, body("11", "Deploying"))  # our finalizer patch
    cache.wrote(KEY, body("12", "Deployed"))  # our status patch
    # The watch now delivers our first write: an echo, and older than what we know.
    assert not cache.observe(KEY, body("11", "Deploying"))
    assert cache.get(KEY) == body("12", "Deployed")
    assert not cache.observe(KEY, body("12", "Deployed"))
    # A user's change after that is news.
    assert cache.observe(KEY, body("13", "Deployed"))
    assert cache.get(KEY) == body("13", "Deployed")


def test_a_change_by_someone_else_between_own_writes_still_wakes() -> None:
    cache = BodyCache()
    cache.observe(KEY, body("10"))
    cache.wrote(KEY, body("12"))  # ours; "11" was someone else's, not yet delivered
    assert cache.observe(KEY, body("11"))  # wakes: its change is in "12" too
    assert cache.get(KEY) == body("12")


def test_converged_objects_keep_no_body_and_late_echoes_do_not_bring_one_back() -> None:
    cache = BodyCache()
    cache.observe(KEY, body("10"))
    cache.wrote(KEY, body("11"))
    cache.drop(KEY)
    assert not cache.observe(KEY, body("11"))
    assert cache.get(KEY) is None and len(cache) == 0
    # An event the controller does not need (keep=False) is not kept either.
    assert cache.observe(KEY, body("12"), keep=False)
    assert cache.get(KEY) is None


def test_forget_drops_everything() -> None:
    cache = BodyCache()
    cache.wrote(KEY, body("11"))
    cache.forget(KEY)
    assert cache.get(KEY) is None
    assert cache.observe(KEY, body("11"))  # no longer known as ours


def test_versions_without_order_fall_back_to_latest_wins() -> None:
    cache = BodyCache()
    cache.observe(KEY, body("b"))
    assert cache.observe(KEY, body("a"))
    assert cache.get(KEY) == body("a")
