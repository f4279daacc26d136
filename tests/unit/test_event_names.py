"""Names of the Events posted exactly once (controllers/announcements.py): the same for the
same occurrence, different for any other, and valid whatever the object is called."""

from __future__ import annotations

import re

import pytest

from nodecluster.controllers.announcements import event_name

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def test_the_same_occurrence_has_the_same_name_and_another_another() -> None:
    name = event_name("web", "uid-1", "MachineAbandoned")

    assert name == event_name("web", "uid-1", "MachineAbandoned")
    assert name.startswith("web.")
    assert name != event_name("web", "uid-2", "MachineAbandoned")
    assert name != event_name("web", "uid-1", "ProviderInUse")


@pytest.mark.parametrize(
    "about",
    [
        "web",
        "a" * 253,
        "a" * 199 + "-" + "b" * 53,  # cut after the dash
        "a" * 199 + "." + "b" * 53,  # cut after the dot
        "a" * 198 + "-." + "b" * 53,
    ],
    ids=["short", "longest", "cut-at-a-dash", "cut-at-a-dot", "cut-at-both"],
)
def test_a_name_is_a_dns_subdomain_whatever_the_object_is_called(about: str) -> None:
    name = event_name(about, "uid-1", "OperationSucceeded")

    assert len(name) <= 253
    assert DNS_SUBDOMAIN.match(name), name
