"""The provider-side name of a node's machine: a pure function of the node's identity."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from nodecluster.cli import installation_id
from nodecluster.controllers.world import serves
from nodecluster.providers.base import Machine
from nodecluster.providers.identity import (
    INSTALLATION_TAG,
    MachineIdentity,
    collected_by,
    default_installation_id,
    machine_name,
    ownership_problem,
)

DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
NODE = MachineIdentity("blue", "team-a", "web", "web-7kq2x", "0f3c-uid")


def machine(name: str, cluster: str = "team-a/web", **tags: str) -> Machine:
    return Machine(
        name=name,
        provider_id="sim://zone-a/i-1",
        cluster=cluster,
        state="Running",
        machine_type="small",
        zone="zone-a",
        cores=2,
        created_at=datetime(2030, 1, 1, tzinfo=UTC),
        tags=tags,
    )


def test_the_name_keeps_the_node_name_readable_and_is_stable() -> None:
    name = machine_name(NODE)
    assert name.startswith("web-7kq2x-") and len(name) == len("web-7kq2x-") + 10
    assert machine_name(NODE) == name


@pytest.mark.parametrize(
    "node",
    [
        "a" * 253,
        "web.example.com-node",
        "0-starts-with-a-digit",
        "-",
        "UPPER-case",
        "x" * 52 + "-" + "y" * 20,
    ],
)
def test_every_name_is_a_dns_label_of_at_most_63(node: str) -> None:
    name = machine_name(MachineIdentity("blue", "team-a", "web", node, "uid"))
    assert len(name) <= 63
    assert DNS_LABEL.fullmatch(name), name


@pytest.mark.parametrize(
    "other",
    [
        MachineIdentity("green", "team-a", "web", "web-7kq2x", "0f3c-uid"),
        MachineIdentity("blue", "team-b", "web", "web-7kq2x", "0f3c-uid"),
        MachineIdentity("blue", "team-a", "web", "web-7kq2x", "another-uid"),
    ],
    ids=["installation", "namespace", "uid"],
)
def test_names_differ_by_installation_namespace_and_uid(other: MachineIdentity) -> None:
    assert machine_name(other) != machine_name(NODE)


def test_a_machine_is_the_nodes_only_when_every_tag_names_it() -> None:
    assert ownership_problem(NODE, machine(machine_name(NODE), **_tags(NODE))) is None
    for key in NODE.tags():
        tags = {**_tags(NODE), key: "someone-else"}
        assert ownership_problem(NODE, machine(machine_name(NODE), **tags)) is not None


def test_an_earlier_versions_machine_is_the_nodes_only_under_its_name_and_cluster() -> None:
    assert ownership_problem(NODE, machine("web-7kq2x")) is None
    assert "team-b/web" in str(ownership_problem(NODE, machine("web-7kq2x", "team-b/web")))
    assert ownership_problem(NODE, machine("web-other")) is not None


def test_only_this_installations_machines_in_served_namespaces_are_collected() -> None:
    def serves(ns: str) -> bool:
        return ns == "team-a"

    ours = machine("m", **_tags(NODE))
    theirs = machine("m", **{**_tags(NODE), INSTALLATION_TAG: "green"})
    unserved = machine(
        "m", **_tags(MachineIdentity("blue", "team-b", "web", "web-7kq2x", "0f3c-uid"))
    )
    assert collected_by("blue", serves, ours)
    assert not collected_by("blue", serves, theirs)
    assert not collected_by("blue", serves, unserved)
    assert collected_by("blue", serves, machine("legacy", "team-a/web"))
    assert not collected_by("blue", serves, machine("legacy", "team-b/web"))


def test_a_machine_nothing_claims_is_never_collected_as_an_orphan() -> None:
    """The simulator lists every machine of its file: one made by hand (no cluster tag, no
    identity) was taken for an orphan of namespace "" by an installation serving every
    namespace, and deleted at its next health poll. It is an Adopt operation's to take."""
    assert not collected_by("blue", lambda namespace: True, machine("by-hand", cluster=""))


def _tags(identity: MachineIdentity) -> dict[str, str]:
    return identity.tags()


@pytest.mark.parametrize(
    ("patterns", "namespace", "served"),
    [
        ((), "anything", True),
        (("team-a",), "team-a", True),
        (("team-a",), "team-b", False),
        (("team-*",), "team-b", True),
        (("team-*", "!team-x"), "team-x", False),
        (("!kube-*",), "team-a", True),
        (("!kube-*",), "kube-system", False),
    ],
)
def test_the_namespaces_served_are_matched_as_kopf_matches_them(
    patterns: tuple[str, ...], namespace: str, served: bool
) -> None:
    assert serves(patterns, namespace) is served


def test_the_default_installation_id_tells_releases_and_kubernetes_clusters_apart() -> None:
    east = "5f0c1c4e-3b1a-4c61-9a7e-0b6c2d9e8f11"
    west = "a1d2e3f4-0000-4abc-8def-123456789abc"
    ids = {
        default_installation_id(name, uid)
        for name in ("ops.nc", "ops.nc2", "team-a.nc")
        for uid in (east, west)
    }
    assert len(ids) == 6
    # Stable: the same release on the same cluster always gets the same id.
    assert default_installation_id("ops.nc", east) == default_installation_id("ops.nc", east)
    assert re.fullmatch(r"ops\.nc\.[0-9a-f]{8}", default_installation_id("ops.nc", east))


@pytest.mark.parametrize("length", [1, 54, 55, 63])
def test_a_default_installation_id_is_always_a_valid_one(length: int) -> None:
    name = "n" * length
    found = default_installation_id(name, "5f0c1c4e")
    assert len(found) <= 63 and installation_id(found) == found
    # Names cut to fit still differ by what was cut.
    assert found != default_installation_id(name + "x", "5f0c1c4e") or length < 54
