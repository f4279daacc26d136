"""What an Adopt operation decides, machine by machine (planning/adopt.py), and whose a
machine is (providers/identity.claimed_by): pure, table-driven."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from builders import spec

from nodecluster.api.adopt import MAX_LISTED, AdoptSelection
from nodecluster.api.reasons import Reason
from nodecluster.planning.adopt import (
    MachineFacts,
    adoption_problem,
    hold_for_adoption,
    plan_adoption,
)
from nodecluster.planning.planner import CreateNode, Plan
from nodecluster.planning.warmpool import PoolMove
from nodecluster.providers.base import Machine
from nodecluster.providers.identity import MachineIdentity, claimed_by

SELECT_ALL = AdoptSelection(tags={"migrate": "yes"})


def free(provider_id: str, **fields: str) -> MachineFacts:
    """A machine nobody owns, of the profile's type, running in zone-a."""
    base = {"machine_type": "small", "zone": "zone-a", "state": "Running"}
    base.update(fields)
    return MachineFacts(provider_id, base["machine_type"], base["zone"], base["state"], None)


def decide(
    machines: list[MachineFacts],
    selection: AdoptSelection = SELECT_ALL,
    taken: frozenset[str] = frozenset(),
    **cluster: object,
) -> dict[str, tuple[str, str | None]]:
    """provider id -> (verdict, node name or reason)."""
    report = plan_adoption("web", spec(**cluster), selection, machines, set(taken), "uid-1")
    return {
        m.provider_id: (m.verdict, m.node if m.verdict == "Adopt" else m.reason)
        for m in report.machines
    }


@pytest.mark.parametrize(
    ("machine", "cluster", "refused_for"),
    [
        (MachineFacts("p1", "small", "zone-a", "Running", "it belongs to x"), {}, "owned: it"),
        (free("p1", state="Deleting"), {}, "machine is Deleting"),
        (free("p1", state="Failed"), {}, "machine is Failed"),
        (free("p1", machine_type="large"), {}, "machine type 'large' is not the profile's"),
        (
            free("p1", zone="zone-c"),
            {"policies": {"placement": {"zones": [{"name": "zone-a"}, {"name": "zone-b"}]}}},
            "zone 'zone-c' is not one of the placement policy's zones",
        ),
    ],
    ids=["owned", "deleting", "failed", "other-type", "other-zone"],
)
def test_a_machine_that_does_not_fit_is_refused_with_its_reason(
    machine: MachineFacts, cluster: dict[str, object], refused_for: str
) -> None:
    verdict, reason = decide([machine], **cluster)["p1"]

    assert verdict == "Refused"
    assert reason is not None and reason.startswith(refused_for), reason


@pytest.mark.parametrize("state", ["Running", "Stopped", "Provisioning", "Starting"])
def test_a_free_machine_of_the_profile_is_adopted_whatever_its_power(state: str) -> None:
    verdict, node = decide([free("p1", state=state)])["p1"]

    assert verdict == "Adopt"
    assert node is not None and node.startswith("web-")


def test_a_machine_in_any_zone_fits_a_cluster_without_placement_zones() -> None:
    assert decide([free("p1", zone="us-east-1f")])["p1"][0] == "Adopt"


def test_node_names_are_fresh_and_the_same_on_every_retry() -> None:
    machines = [free(f"p{i}") for i in range(5)]
    taken = frozenset({"web-aaaaa"})

    first = decide(machines, taken=taken)
    again = decide(list(reversed(machines)), taken=taken)

    names = [node for _, node in first.values()]
    assert first == again
    assert len(set(names)) == 5
    assert not set(names) & taken


def test_the_limit_adopts_the_first_by_provider_id_and_refuses_the_rest() -> None:
    machines = [free(f"p{i}") for i in (3, 1, 2)]

    verdicts = decide(machines, selection=AdoptSelection(tags={"a": "b"}, limit=2))

    assert [v for v, _ in verdicts.values()] == ["Adopt", "Adopt", "Refused"]
    assert list(verdicts) == ["p1", "p2", "p3"]
    assert "over the limit" in str(verdicts["p3"][1])


def test_the_list_is_capped_with_the_adopted_first_and_the_rest_counted() -> None:
    owned = [
        MachineFacts(f"a{i:03}", "small", "zone-a", "Running", "owner") for i in range(MAX_LISTED)
    ]
    machines = [*owned, free("z1"), free("z2")]

    report = plan_adoption("web", spec(), SELECT_ALL, machines, set(), "uid-1")

    assert (report.matched, report.adopted, report.more) == (MAX_LISTED + 2, 2, 2)
    assert len(report.machines) == MAX_LISTED
    assert [m.provider_id for m in report.machines[:2]] == ["z1", "z2"]


def test_provider_ids_that_match_nothing_are_named() -> None:
    selection = AdoptSelection(provider_ids=["i-0abc", "aws:///us-east-1a/i-0def", "i-gone"])
    machines = [free("aws:///us-east-1a/i-0abc"), free("aws:///us-east-1a/i-0def")]

    report = plan_adoption("web", spec(), selection, machines, set(), "uid-1")

    assert report.unmatched == ["i-gone"]
    assert report.adopted == 2


@pytest.mark.parametrize(
    ("machines", "cluster", "problem"),
    [
        ([], {}, "matches no live machine"),
        ([free("p1", state="Deleting")], {}, "none of the 1 machines"),
        ([free("p1"), free("p2")], {"targetNodes": 3, "maxNodes": 4}, "above maxNodes (4)"),
    ],
    ids=["nothing-matched", "all-refused", "above-max-nodes"],
)
def test_an_adoption_that_cannot_be_carried_out_says_why(
    machines: list[MachineFacts], cluster: dict[str, object], problem: str
) -> None:
    nc = spec(**cluster)
    report = plan_adoption("web", nc, SELECT_ALL, machines, set(), "uid-1")

    found = adoption_problem(nc, report)

    assert found is not None and problem in found, found


def test_an_adoption_within_max_nodes_has_no_problem() -> None:
    nc = spec(targetNodes=3, maxNodes=5)
    report = plan_adoption("web", nc, SELECT_ALL, [free("p1"), free("p2")], set(), "uid-1")

    assert adoption_problem(nc, report) is None


def test_while_an_adoption_makes_its_nodes_the_cluster_makes_none() -> None:
    planned = Plan(desired=5, creates=(CreateNode("web-x", None, "Running"),))

    held = hold_for_adoption(planned, "adopt-legacy")

    assert held.creates == ()
    assert [b.reason for b in held.blockers] == [Reason.ADOPTING]
    assert "adopt-legacy" in held.blockers[0].message
    assert hold_for_adoption(planned, None) == planned


def test_while_an_adoption_makes_its_nodes_no_warm_node_is_promoted() -> None:
    """A promotion fills the raised target as a create would: the adopted nodes would then
    be a surplus a scale-in may choose (a reviewer's find: promotions were kept)."""
    planned = Plan(
        desired=5,
        moves=(PoolMove("w0", False, "Running"), PoolMove("s3", True, "Stopped")),
    )

    held = hold_for_adoption(planned, "adopt-legacy")

    assert held.moves == (PoolMove("s3", True, "Stopped"),)  # back into the pool: harmless
    assert [b.reason for b in held.blockers] == [Reason.ADOPTING]


# -- whose a machine is ----------------------------------------------------------------------


def machine(cluster: str = "", **tags: str) -> Machine:
    return Machine(
        name="m",
        provider_id="p",
        cluster=cluster,
        state="Running",
        machine_type="small",
        zone=None,
        cores=2,
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        tags=tags,
    )


def test_a_machine_with_an_installation_s_identity_is_claimed_by_it() -> None:
    tags = MachineIdentity("prod", "team-b", "db", "db-abcde", "uid").tags()

    owner = claimed_by(machine(cluster="team-b/db", **tags))

    assert owner is not None
    assert "team-b/db/db-abcde of installation 'prod'" in owner


def test_half_an_identity_still_claims_a_machine() -> None:
    owner = claimed_by(machine(**{"nodecluster.io/node": "web-x"}))

    assert owner is not None and "nodecluster.io/node" in owner


def test_an_earlier_version_s_cluster_tag_claims_a_machine() -> None:
    owner = claimed_by(machine(cluster="team-a/web"))

    assert owner is not None and "team-a/web" in owner


def test_a_machine_with_only_its_owner_s_own_tags_is_free() -> None:
    assert claimed_by(machine(team="render", Name="box-1")) is None
