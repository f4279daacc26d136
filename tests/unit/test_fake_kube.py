"""FakeKube answers as kube-apiserver does where the controllers depend on it.

Each rule here is also played against a real kube-apiserver by
tests/e2e/test_fake_honesty.py; these tests pin the fake's side of each one, and its test
facilities (faults, watches, the journal), one behaviour per test.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nodecluster.clock import rfc3339
from nodecluster.controllers.kubeapi import (
    CLUSTERNODES,
    NODECLUSTERS,
    NODEPROVIDERS,
    NODES,
    PODDISRUPTIONBUDGETS,
    PODS,
    KubeConflict,
    KubeDisruptionBlocked,
    KubeError,
    KubeNotFound,
)
from nodecluster.testing.fakekube import FakeKube, Fault, WatchEvent, merge_patch

NS = "team-a"
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
FINALIZER = "nodecluster.io/machine"


class FixedClock:
    """Wall time that moves only when a test moves it."""

    def __init__(self, now: datetime = NOW) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return 0.0


def cluster(name: str = "web", **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "nodecluster.io/v1alpha1",
        "kind": "NodeCluster",
        "metadata": {"name": name, **metadata},
        "spec": {"providerRef": {"name": "sim"}, "profile": {"machineType": "small"}},
    }


def node(name: str, owner: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **metadata}
    if owner is not None:
        meta["ownerReferences"] = [reference(owner)]
    return {
        "apiVersion": "nodecluster.io/v1alpha1",
        "kind": "ClusterNode",
        "metadata": meta,
        "spec": {"clusterName": "web", "powerState": "Running"},
    }


def reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


@pytest.fixture
def fake() -> FakeKube:
    return FakeKube(clock=FixedClock(), seed=7)


def names(events: list[WatchEvent]) -> list[tuple[str, str]]:
    return [(e.type, e.body["metadata"]["name"]) for e in events]


# -- create ---------------------------------------------------------------------------------


async def test_create_sets_uid_timestamp_generation_one_and_a_resource_version(
    fake: FakeKube,
) -> None:
    created = await fake.create(NODECLUSTERS, NS, cluster())

    meta = created["metadata"]
    assert meta["generation"] == 1
    assert meta["creationTimestamp"] == rfc3339(NOW)
    assert len(meta["uid"]) == 36
    assert meta["namespace"] == NS
    assert meta["resourceVersion"] == str(fake.revision)
    assert (created["apiVersion"], created["kind"]) == ("nodecluster.io/v1alpha1", "NodeCluster")


async def test_resource_versions_are_one_increasing_counter_across_kinds(fake: FakeKube) -> None:
    a = await fake.create(NODECLUSTERS, NS, cluster("a"))
    b = await fake.create(CLUSTERNODES, NS, node("b"))
    a2 = await fake.patch(NODECLUSTERS, NS, "a", {"metadata": {"labels": {"x": "y"}}})

    versions = [int(o["metadata"]["resourceVersion"]) for o in (a, b, a2)]
    assert versions == sorted(versions) and len(set(versions)) == 3


async def test_create_drops_status(fake: FakeKube) -> None:
    body = cluster() | {"status": {"state": "Deployed"}}

    created = await fake.create(NODECLUSTERS, NS, body)

    assert "status" not in created
    assert "status" not in await fake.get(NODECLUSTERS, NS, "web")


async def test_create_of_an_existing_name_is_a_conflict(fake: FakeKube) -> None:
    await fake.create(NODECLUSTERS, NS, cluster())

    with pytest.raises(KubeConflict, match="already exists"):
        await fake.create(NODECLUSTERS, NS, cluster())


async def test_the_same_name_in_another_namespace_is_another_object(fake: FakeKube) -> None:
    await fake.create(NODECLUSTERS, NS, cluster())
    await fake.create(NODECLUSTERS, "team-b", cluster())

    assert len(fake.objects(NODECLUSTERS)) == 2


async def test_generate_name_gives_a_fresh_name_with_the_prefix(fake: FakeKube) -> None:
    body = cluster()
    body["metadata"] = {"generateName": "web-"}

    first = await fake.create(NODECLUSTERS, NS, body)
    second = await fake.create(NODECLUSTERS, NS, body)

    for created in (first, second):
        assert created["metadata"]["name"].startswith("web-")
        assert len(created["metadata"]["name"]) == len("web-") + 5
    assert first["metadata"]["name"] != second["metadata"]["name"]
    assert fake.calls[-1].name == second["metadata"]["name"]


async def test_a_cluster_scoped_kind_has_no_namespace(fake: FakeKube) -> None:
    provider = {"apiVersion": "nodecluster.io/v1alpha1", "kind": "NodeProvider"}
    provider["metadata"] = {"name": "sim"}  # type: ignore[assignment]

    created = await fake.create(NODEPROVIDERS, NS, provider)

    assert "namespace" not in created["metadata"]
    assert (await fake.get(NODEPROVIDERS, None, "sim"))["metadata"]["uid"] == created["metadata"][
        "uid"
    ]


async def test_what_callers_hold_is_a_copy_of_the_store(fake: FakeKube) -> None:
    body = cluster()
    created = await fake.create(NODECLUSTERS, NS, body)
    body["spec"]["targetNodes"] = 99
    created["spec"]["targetNodes"] = 98
    (await fake.get(NODECLUSTERS, NS, "web"))["spec"]["targetNodes"] = 97
    (await fake.list(NODECLUSTERS, NS))[0]["spec"]["targetNodes"] = 96

    assert "targetNodes" not in (await fake.get(NODECLUSTERS, NS, "web"))["spec"]


async def test_a_body_that_is_not_json_ready_is_refused(fake: FakeKube) -> None:
    body = cluster() | {"spec": {"rebootRequestedAt": NOW}}

    with pytest.raises(TypeError):
        await fake.create(NODECLUSTERS, NS, body)


# -- get ------------------------------------------------------------------------------------


async def test_get_of_a_missing_object_is_not_found(fake: FakeKube) -> None:
    with pytest.raises(KubeNotFound, match=r'clusternodes\.nodecluster\.io "n1" not found'):
        await fake.get(CLUSTERNODES, NS, "n1")


async def test_a_namespaced_kind_without_a_namespace_is_not_found(fake: FakeKube) -> None:
    await fake.create(NODECLUSTERS, NS, cluster())

    with pytest.raises(KubeNotFound):
        await fake.get(NODECLUSTERS, None, "web")


# -- patch: generation, status subresource, preconditions -----------------------------------


async def test_a_spec_patch_bumps_generation(fake: FakeKube) -> None:
    await fake.create(NODECLUSTERS, NS, cluster())

    patched = await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 5}})

    assert patched["metadata"]["generation"] == 2
    assert patched["spec"]["targetNodes"] == 5


async def test_a_metadata_patch_keeps_generation(fake: FakeKube) -> None:
    created = await fake.create(NODECLUSTERS, NS, cluster())

    patched = await fake.patch(
        NODECLUSTERS,
        NS,
        "web",
        {"metadata": {"labels": {"team": "batch"}, "finalizers": ["nodecluster.io/nodes"]}},
    )

    assert patched["metadata"]["generation"] == 1
    assert patched["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]


async def test_a_patch_that_changes_nothing_writes_nothing(fake: FakeKube) -> None:
    created = await fake.create(NODECLUSTERS, NS, cluster())
    watch = fake.watch(NODECLUSTERS)

    same = await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"providerRef": {"name": "sim"}}})

    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert watch.drain() == []


async def test_the_main_endpoint_ignores_status(fake: FakeKube) -> None:
    await fake.create(NODECLUSTERS, NS, cluster())
    await fake.patch(NODECLUSTERS, NS, "web", {"status": {"state": "Deployed"}}, status=True)

    patched = await fake.patch(
        NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 2}, "status": {"state": "Error"}}
    )

    assert patched["status"] == {"state": "Deployed"}
    assert patched["spec"]["targetNodes"] == 2


async def test_the_status_subresource_ignores_everything_but_status(fake: FakeKube) -> None:
    await fake.create(NODECLUSTERS, NS, cluster())

    patched = await fake.patch(
        NODECLUSTERS,
        NS,
        "web",
        {
            "spec": {"targetNodes": 9},
            "metadata": {"labels": {"a": "b"}},
            "status": {"state": "Deployed", "observedGeneration": 1},
        },
        status=True,
    )

    assert patched["status"] == {"state": "Deployed", "observedGeneration": 1}
    assert "targetNodes" not in patched["spec"]
    assert "labels" not in patched["metadata"]
    assert patched["metadata"]["generation"] == 1


async def test_a_status_patch_merges_into_the_status(fake: FakeKube) -> None:
    await fake.create(NODECLUSTERS, NS, cluster())
    await fake.patch(NODECLUSTERS, NS, "web", {"status": {"state": "Init", "message": "m"}}, True)

    patched = await fake.patch(
        NODECLUSTERS, NS, "web", {"status": {"state": "Deployed", "message": None}}, status=True
    )

    assert patched["status"] == {"state": "Deployed"}


def test_merge_patch_follows_rfc_7386() -> None:
    target = {"a": {"b": 1, "c": 2}, "list": [1, 2, 3], "gone": "x"}
    patch = {"a": {"c": None, "d": 4}, "list": [9], "gone": None, "new": {"k": "v"}}

    assert merge_patch(target, patch) == {"a": {"b": 1, "d": 4}, "list": [9], "new": {"k": "v"}}
    assert target["a"] == {"b": 1, "c": 2}  # the input is not changed


async def test_a_stale_resource_version_is_a_conflict_and_changes_nothing(fake: FakeKube) -> None:
    created = await fake.create(NODECLUSTERS, NS, cluster())
    await fake.patch(NODECLUSTERS, NS, "web", {"metadata": {"labels": {"a": "b"}}})
    before = fake.snapshot()
    stale = created["metadata"]["resourceVersion"]

    with pytest.raises(KubeConflict, match="the object has been modified"):
        await fake.patch(
            NODECLUSTERS,
            NS,
            "web",
            {"metadata": {"resourceVersion": stale}, "spec": {"targetNodes": 7}},
        )
    assert fake.snapshot() == before


async def test_a_stale_resource_version_is_a_conflict_on_the_status_subresource(
    fake: FakeKube,
) -> None:
    created = await fake.create(NODECLUSTERS, NS, cluster())
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 1}})

    with pytest.raises(KubeConflict):
        await fake.patch(
            NODECLUSTERS,
            NS,
            "web",
            {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}},
            status=True,
        )


async def test_a_current_resource_version_is_a_precondition_that_passes(fake: FakeKube) -> None:
    created = await fake.create(NODECLUSTERS, NS, cluster())
    current = created["metadata"]["resourceVersion"]

    patched = await fake.patch(
        NODECLUSTERS, NS, "web", {"metadata": {"resourceVersion": current, "labels": {"a": "b"}}}
    )

    assert patched["metadata"]["labels"] == {"a": "b"}
    assert int(patched["metadata"]["resourceVersion"]) > int(current)


async def test_patch_of_a_missing_object_is_not_found(fake: FakeKube) -> None:
    with pytest.raises(KubeNotFound):
        await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 1}})


async def test_generation_and_creation_timestamp_in_a_patch_are_ignored(fake: FakeKube) -> None:
    created = await fake.create(NODECLUSTERS, NS, cluster())
    owned = {"generation": 42, "creationTimestamp": "2000-01-01T00:00:00Z"}

    patched = await fake.patch(NODECLUSTERS, NS, "web", {"metadata": owned})

    assert patched["metadata"] == created["metadata"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("uid", "forged"),
        ("deletionTimestamp", "2000-01-01T00:00:00Z"),
        ("deletionGracePeriodSeconds", 5),
    ],
)
async def test_immutable_metadata_in_a_patch_is_invalid(
    fake: FakeKube, field: str, value: Any
) -> None:
    await fake.create(NODECLUSTERS, NS, cluster())

    with pytest.raises(KubeError) as refused:
        await fake.patch(NODECLUSTERS, NS, "web", {"metadata": {field: value}})

    assert refused.value.status == 422
    assert f"metadata.{field}: Invalid value: " in refused.value.message
    assert refused.value.message.endswith("field is immutable")


async def test_a_patch_that_renames_is_a_bad_request(fake: FakeKube) -> None:
    await fake.create(NODECLUSTERS, NS, cluster())

    with pytest.raises(KubeError) as refused:
        await fake.patch(NODECLUSTERS, NS, "web", {"metadata": {"name": "other"}})

    assert refused.value.status == 400


async def test_a_create_with_a_resource_version_is_refused(fake: FakeKube) -> None:
    with pytest.raises(KubeError) as refused:
        await fake.create(NODECLUSTERS, NS, cluster(resourceVersion="5"))

    assert refused.value.status == 500


# -- validation (422) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "field", "value"),
    [
        ({"labels": {"team": "Batch Jobs"}}, "metadata.labels", "Batch Jobs"),
        ({"labels": {"team": "x" * 64}}, "metadata.labels", "x" * 64),
        ({"labels": {"Team Name": "batch"}}, "metadata.labels", "Team Name"),
        ({"labels": {"Example.com/team": "batch"}}, "metadata.labels", "Example.com/team"),
        ({"annotations": {"a b": "free text is fine"}}, "metadata.annotations", "a b"),
        ({"finalizers": ["nodecluster.io/a b"]}, "metadata.finalizers", "nodecluster.io/a b"),
        ({"name": "Web"}, "metadata.name", "Web"),
        ({"name": "web_1"}, "metadata.name", "web_1"),
    ],
    ids=[
        "label-value-charset",
        "label-value-length",
        "label-key-charset",
        "label-key-prefix-case",
        "annotation-key",
        "finalizer",
        "name-case",
        "name-underscore",
    ],
)
async def test_what_kube_apiserver_refuses_in_metadata_is_invalid_naming_the_field(
    fake: FakeKube, metadata: dict[str, Any], field: str, value: str
) -> None:
    body = cluster()
    body["metadata"].update(metadata)

    with pytest.raises(KubeError) as refused:
        await fake.create(NODECLUSTERS, NS, body)

    assert refused.value.status == 422
    assert f'{field}: Invalid value: "{value}"' in refused.value.message
    assert fake.objects(NODECLUSTERS) == []


async def test_a_bad_label_in_a_patch_is_invalid_and_changes_nothing(fake: FakeKube) -> None:
    await fake.create(NODECLUSTERS, NS, cluster())
    before = fake.snapshot()

    with pytest.raises(KubeError) as refused:
        await fake.patch(NODECLUSTERS, NS, "web", {"metadata": {"labels": {"team": "Batch Jobs"}}})

    assert refused.value.status == 422
    assert refused.value.message.startswith(
        'NodeCluster.nodecluster.io "web" is invalid: metadata.labels: Invalid value: '
        '"Batch Jobs": a valid label must be an empty string or consist of alphanumeric'
    )
    assert fake.snapshot() == before


async def test_valid_metadata_of_every_shape_is_accepted(fake: FakeKube) -> None:
    body = cluster(
        "web.example-1",
        labels={"nodecluster.io/cluster": "web", "empty": "", "a_b.c-d": "A_b.C-9"},
        annotations={"Example.com/Note": "free text, spaces and all"},
        finalizers=["nodecluster.io/nodes", "plain"],
    )

    created = await fake.create(NODECLUSTERS, NS, body)

    assert created["metadata"]["labels"]["empty"] == ""


async def test_an_owner_reference_without_uid_is_invalid(fake: FakeKube) -> None:
    owner = await fake.create(NODECLUSTERS, NS, cluster())
    body = node("n1", owner)
    body["metadata"]["ownerReferences"][0]["uid"] = ""

    with pytest.raises(KubeError, match=r"metadata\.ownerReferences\[0\]\.uid: Required value"):
        await fake.create(CLUSTERNODES, NS, body)


# -- delete, finalizers, cascade ------------------------------------------------------------


async def test_delete_without_finalizers_removes_at_once_with_a_deleted_event(
    fake: FakeKube,
) -> None:
    await fake.create(NODECLUSTERS, NS, cluster())
    watch = fake.watch()

    await fake.delete(NODECLUSTERS, NS, "web")

    assert fake.objects(NODECLUSTERS) == []
    [deleted] = watch.drain()
    assert (deleted.type, deleted.body["spec"]["providerRef"]) == ("DELETED", {"name": "sim"})


async def test_delete_of_a_missing_object_is_fine(fake: FakeKube) -> None:
    await fake.delete(NODECLUSTERS, NS, "web")

    [call] = fake.calls
    assert (call.outcome, call.status) == ("ok", 404)


async def test_delete_of_an_object_with_finalizers_marks_it_and_bumps_generation(
    fake: FakeKube,
) -> None:
    await fake.create(CLUSTERNODES, NS, node("n1", finalizers=[FINALIZER]))
    watch = fake.watch()

    await fake.delete(CLUSTERNODES, NS, "n1")

    marked = await fake.get(CLUSTERNODES, NS, "n1")
    assert marked["metadata"]["deletionTimestamp"] == rfc3339(NOW)
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 0
    assert marked["metadata"]["generation"] == 2
    assert names(watch.drain()) == [("MODIFIED", "n1")]


async def test_a_second_delete_of_a_marked_object_changes_nothing(fake: FakeKube) -> None:
    await fake.create(CLUSTERNODES, NS, node("n1", finalizers=[FINALIZER]))
    await fake.delete(CLUSTERNODES, NS, "n1")
    before = fake.snapshot()
    fake.clock.at = datetime(2031, 1, 1, tzinfo=UTC)  # type: ignore[attr-defined]

    await fake.delete(CLUSTERNODES, NS, "n1")

    assert fake.snapshot() == before


async def test_removing_the_last_finalizer_of_a_marked_object_deletes_it(fake: FakeKube) -> None:
    await fake.create(CLUSTERNODES, NS, node("n1", finalizers=[FINALIZER, "other.io/x"]))
    await fake.delete(CLUSTERNODES, NS, "n1")
    watch = fake.watch()

    one_left = await fake.patch(
        CLUSTERNODES, NS, "n1", {"metadata": {"finalizers": ["other.io/x"]}}
    )
    assert fake.stored(CLUSTERNODES, NS, "n1") is not None
    last = await fake.patch(CLUSTERNODES, NS, "n1", {"metadata": {"finalizers": None}})

    assert fake.stored(CLUSTERNODES, NS, "n1") is None
    # As the real server answers: the patched body, with the resourceVersion it had.
    assert "finalizers" not in last["metadata"]
    assert last["metadata"]["resourceVersion"] == one_left["metadata"]["resourceVersion"]
    # No MODIFIED for the last removal: the update is never stored, the object just goes.
    modified, deleted = watch.drain()
    assert (modified.type, deleted.type) == ("MODIFIED", "DELETED")
    assert deleted.body["metadata"]["finalizers"] == ["other.io/x"]


async def test_no_new_finalizer_on_an_object_being_deleted(fake: FakeKube) -> None:
    await fake.create(CLUSTERNODES, NS, node("n1", finalizers=[FINALIZER]))
    await fake.delete(CLUSTERNODES, NS, "n1")

    with pytest.raises(KubeError) as refused:
        await fake.patch(
            CLUSTERNODES, NS, "n1", {"metadata": {"finalizers": [FINALIZER, "late.io/x"]}}
        )

    assert refused.value.status == 422
    assert "metadata.finalizers: Forbidden: no new finalizers" in refused.value.message
    assert '[]string{"late.io/x"}' in refused.value.message


async def test_the_spec_of_an_object_being_deleted_can_still_change(fake: FakeKube) -> None:
    await fake.create(CLUSTERNODES, NS, node("n1", finalizers=[FINALIZER]))
    await fake.delete(CLUSTERNODES, NS, "n1")

    patched = await fake.patch(CLUSTERNODES, NS, "n1", {"spec": {"powerState": "Stopped"}})

    assert patched["metadata"]["generation"] == 3
    assert patched["metadata"]["deletionTimestamp"] == rfc3339(NOW)


async def test_deleting_an_owner_deletes_its_dependents_recursively(fake: FakeKube) -> None:
    owner = await fake.create(NODECLUSTERS, NS, cluster())
    child = await fake.create(CLUSTERNODES, NS, node("n1", owner))
    await fake.create(CLUSTERNODES, NS, node("n1-part", child))
    await fake.create(CLUSTERNODES, NS, node("unowned"))
    watch = fake.watch()

    await fake.delete(NODECLUSTERS, NS, "web")

    assert [n["metadata"]["name"] for n in fake.objects(CLUSTERNODES)] == ["unowned"]
    assert names(watch.drain()) == [("DELETED", "web"), ("DELETED", "n1"), ("DELETED", "n1-part")]


async def test_a_dependent_with_finalizers_is_only_marked_by_the_cascade(fake: FakeKube) -> None:
    owner = await fake.create(NODECLUSTERS, NS, cluster())
    await fake.create(CLUSTERNODES, NS, node("n1", owner, finalizers=[FINALIZER]))

    await fake.delete(NODECLUSTERS, NS, "web")

    marked = fake.stored(CLUSTERNODES, NS, "n1")
    assert marked is not None and marked["metadata"]["deletionTimestamp"] == rfc3339(NOW)


async def test_a_dependent_with_another_living_owner_is_kept_without_the_gone_one(
    fake: FakeKube,
) -> None:
    gone = await fake.create(NODECLUSTERS, NS, cluster("gone"))
    kept = await fake.create(NODECLUSTERS, NS, cluster("kept"))
    body = node("n1")
    body["metadata"]["ownerReferences"] = [
        reference(gone) | {"controller": False},
        reference(kept) | {"controller": False},
    ]
    await fake.create(CLUSTERNODES, NS, body)

    await fake.delete(NODECLUSTERS, NS, "gone")

    survivor = fake.stored(CLUSTERNODES, NS, "n1")
    assert survivor is not None
    assert [r["name"] for r in survivor["metadata"]["ownerReferences"]] == ["kept"]


async def test_a_dependent_waits_for_its_owner_to_be_really_gone(fake: FakeKube) -> None:
    owner = await fake.create(NODECLUSTERS, NS, cluster(finalizers=["nodecluster.io/nodes"]))
    await fake.create(CLUSTERNODES, NS, node("n1", owner))

    await fake.delete(NODECLUSTERS, NS, "web")
    assert fake.stored(CLUSTERNODES, NS, "n1") is not None  # the owner is only marked
    await fake.patch(NODECLUSTERS, NS, "web", {"metadata": {"finalizers": []}})

    assert fake.stored(CLUSTERNODES, NS, "n1") is None


# -- list -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", ["n1", "n2", "n3"]),
        ("team=batch", ["n1", "n2"]),
        ("team==batch", ["n1", "n2"]),
        ("team!=batch", ["n3"]),
        ("zone", ["n1"]),
        ("!zone", ["n2", "n3"]),
        ("team=batch,!zone", ["n2"]),
        ("team=batch, zone=a", ["n1"]),
        ("team=web", []),
    ],
)
async def test_list_selects_by_equality_label_selector(
    fake: FakeKube, selector: str, expected: list[str]
) -> None:
    await fake.create(CLUSTERNODES, NS, node("n1", labels={"team": "batch", "zone": "a"}))
    await fake.create(CLUSTERNODES, NS, node("n2", labels={"team": "batch"}))
    await fake.create(CLUSTERNODES, NS, node("n3"))

    listed = await fake.list(CLUSTERNODES, NS, selector)

    assert [o["metadata"]["name"] for o in listed] == expected


async def test_list_without_a_namespace_lists_every_namespace_in_key_order(
    fake: FakeKube,
) -> None:
    await fake.create(CLUSTERNODES, "b", node("n1"))
    await fake.create(CLUSTERNODES, "a", node("n2"))
    await fake.create(CLUSTERNODES, "a", node("n1"))

    listed = await fake.list(CLUSTERNODES, None)

    keys = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in listed]
    assert keys == [("a", "n1"), ("a", "n2"), ("b", "n1")]


async def test_a_set_based_selector_is_not_answered_with_a_made_up_result(fake: FakeKube) -> None:
    with pytest.raises(NotImplementedError):
        await fake.list(CLUSTERNODES, NS, "team in (a,b)")


async def test_a_malformed_selector_is_a_bad_request(fake: FakeKube) -> None:
    with pytest.raises(KubeError) as refused:
        await fake.list(CLUSTERNODES, NS, "team=a b")

    assert refused.value.status == 400


# -- secrets and events ---------------------------------------------------------------------


async def test_read_secret_returns_the_data_put(fake: FakeKube) -> None:
    fake.put_secret(NS, "creds", {"token": "s3cret-value"})

    assert await fake.read_secret(NS, "creds") == {"token": "s3cret-value"}


async def test_read_secret_of_a_missing_secret_is_not_found(fake: FakeKube) -> None:
    with pytest.raises(KubeNotFound):
        await fake.read_secret(NS, "creds")


async def test_secret_values_never_show_in_reprs_or_the_journal(fake: FakeKube) -> None:
    fake.put_secret(NS, "creds", {"token": "s3cret-value"})
    await fake.read_secret(NS, "creds")

    shown = repr(fake) + repr(vars(fake)) + repr(fake.calls)

    assert "s3cret-value" not in shown


async def test_an_event_is_recorded_as_kube_client_posts_it(fake: FakeKube) -> None:
    involved = await fake.create(NODECLUSTERS, NS, cluster())

    await fake.event(involved, "Normal", "Scaling", "x" * 2000)

    [event] = fake.events_about("web", reason="Scaling")
    assert event["involvedObject"]["uid"] == involved["metadata"]["uid"]
    assert event["metadata"]["namespace"] == NS
    assert event["metadata"]["name"].startswith("web.")
    assert len(event["message"]) == 1024
    assert event["lastTimestamp"] == rfc3339(NOW)
    assert fake.events_about("web", reason="Recreated") == []


async def test_a_refused_event_is_logged_not_raised(
    fake: FakeKube, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail("event", "events", 403)
    involved = await fake.create(NODECLUSTERS, NS, cluster())

    with caplog.at_level(logging.WARNING):
        await fake.event(involved, "Warning", "Unhealthy", "node n1 is unhealthy")

    assert fake.events == []
    assert "could not post event Unhealthy on web" in caplog.text


async def test_a_named_event_is_stored_once_under_its_name(fake: FakeKube) -> None:
    involved = await fake.create(NODECLUSTERS, NS, cluster())

    assert await fake.post_event("web.abc", involved, "Normal", "OperationSucceeded", "first")
    revision = fake.revision
    again = await fake.post_event("web.abc", involved, "Normal", "OperationSucceeded", "again")

    assert again is False, "it says the Event existed"

    [event] = fake.events_about("web")
    assert event["metadata"]["name"] == "web.abc"
    assert event["message"] == "first"
    assert fake.revision == revision, "the second post changed nothing"
    assert [c.status for c in fake.calls_of("event")] == [201, 409]


async def test_a_named_event_is_read_back_by_its_name(fake: FakeKube) -> None:
    involved = await fake.create(NODECLUSTERS, NS, cluster())
    await fake.post_event("web.abc", involved, "Normal", "OperationSucceeded", "first")
    await fake.post_event("web.abc", involved, "Warning", "OperationFailed", "again")

    event = await fake.read_event(NS, "web.abc")

    assert (event["reason"], event["message"]) == ("OperationSucceeded", "first")
    assert [(c.verb, c.resource, c.name) for c in fake.calls_of("get")] == [
        ("get", "events", "web.abc")
    ]
    with pytest.raises(KubeNotFound):
        await fake.read_event(NS, "web.xyz")
    with pytest.raises(KubeNotFound):
        await fake.read_event("elsewhere", "web.abc")


async def test_a_named_event_that_fails_raises(fake: FakeKube) -> None:
    fake.fail("event", "events", 503, after_effect=True)
    involved = await fake.create(NODECLUSTERS, NS, cluster())

    with pytest.raises(KubeError):
        await fake.post_event("web.abc", involved, "Normal", "OperationSucceeded", "done")

    assert len(fake.events) == 1, "posted; only the answer was lost"


# -- faults ---------------------------------------------------------------------------------


async def test_an_injected_error_comes_before_the_effect_and_fires_once(fake: FakeKube) -> None:
    fault = fake.fail("create", "nodeclusters", 503)

    with pytest.raises(KubeError) as refused:
        await fake.create(NODECLUSTERS, NS, cluster())
    assert refused.value.status == 503
    assert fake.objects(NODECLUSTERS) == []

    await fake.create(NODECLUSTERS, NS, cluster())  # times=1: the next call goes through
    assert fault.fired == 1 and not fault.active


async def test_an_injected_error_after_the_effect_loses_only_the_answer(fake: FakeKube) -> None:
    await fake.create(NODECLUSTERS, NS, cluster())
    fake.fail("patch", "nodeclusters", 500, after_effect=True)

    with pytest.raises(KubeError):
        await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 4}})

    assert (await fake.get(NODECLUSTERS, NS, "web"))["spec"]["targetNodes"] == 4


@pytest.mark.parametrize(("status", "error"), [(404, KubeNotFound), (409, KubeConflict)])
async def test_injected_404_and_409_raise_the_classes_the_controllers_act_on(
    fake: FakeKube, status: int, error: type[KubeError]
) -> None:
    await fake.create(NODECLUSTERS, NS, cluster())
    fake.fail("patch_status", "nodeclusters", status)

    with pytest.raises(error):
        await fake.patch(NODECLUSTERS, NS, "web", {"status": {"state": "Init"}}, status=True)


async def test_a_fault_on_one_verb_leaves_the_others_alone(fake: FakeKube) -> None:
    await fake.create(NODECLUSTERS, NS, cluster())
    fake.fail("patch_status", "nodeclusters", 500)

    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 1}})
    await fake.get(NODECLUSTERS, NS, "web")
    with pytest.raises(KubeError):
        await fake.patch(NODECLUSTERS, NS, "web", {"status": {"state": "Init"}}, status=True)


async def test_a_fault_for_one_name_leaves_other_objects_alone(fake: FakeKube) -> None:
    fake.fail("create", "clusternodes", 409, name="n2")

    await fake.create(CLUSTERNODES, NS, node("n1"))
    with pytest.raises(KubeConflict):
        await fake.create(CLUSTERNODES, NS, node("n2"))


async def test_a_fault_for_secrets_refuses_the_read(fake: FakeKube) -> None:
    fake.put_secret(NS, "creds", {"token": "t"})
    fake.fail("read_secret", "secrets", 403)

    with pytest.raises(KubeError) as refused:
        await fake.read_secret(NS, "creds")

    assert refused.value.status == 403


async def test_a_fault_without_limit_fires_until_removed(fake: FakeKube) -> None:
    fault = fake.fail("get", None, 500, times=None)
    await fake.create(NODECLUSTERS, NS, cluster())

    for _ in range(3):
        with pytest.raises(KubeError):
            await fake.get(NODECLUSTERS, NS, "web")
    fake.remove(fault)

    assert (await fake.get(NODECLUSTERS, NS, "web"))["metadata"]["name"] == "web"
    assert fault.fired == 3


async def test_the_first_injected_answering_fault_answers_and_the_next_waits(
    fake: FakeKube,
) -> None:
    await fake.create(NODECLUSTERS, NS, cluster())
    fake.fail("get", "nodeclusters", 503)
    fake.fail("get", "nodeclusters", 404)

    statuses = []
    for _ in range(2):
        with pytest.raises(KubeError) as refused:
            await fake.get(NODECLUSTERS, NS, "web")
        statuses.append(refused.value.status)

    assert statuses == [503, 404]


def test_a_fault_that_does_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a status"):
        Fault("get", "nodeclusters")


@pytest.mark.looptime
async def test_latency_delays_the_answer_by_exactly_that(fake: FakeKube) -> None:
    await fake.create(NODECLUSTERS, NS, cluster())
    fake.slow("get", "nodeclusters", 2.5)
    loop = asyncio.get_running_loop()
    start = loop.time()

    await fake.get(NODECLUSTERS, NS, "web")

    assert loop.time() - start == pytest.approx(2.5)


@pytest.mark.looptime
async def test_a_hung_call_never_answers_until_cancelled(fake: FakeKube) -> None:
    fake.hang("create", "nodeclusters")

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(3600):
            await fake.create(NODECLUSTERS, NS, cluster())

    assert fake.objects(NODECLUSTERS) == []
    [call] = fake.calls
    assert (call.outcome, call.injected) == ("cancelled", True)


@pytest.mark.looptime
async def test_a_hang_after_the_effect_writes_and_never_answers(fake: FakeKube) -> None:
    fake.hang("create", "nodeclusters", after_effect=True)

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(60):
            await fake.create(NODECLUSTERS, NS, cluster())

    assert [o["metadata"]["name"] for o in fake.objects(NODECLUSTERS)] == ["web"]


# -- watches --------------------------------------------------------------------------------


async def test_a_watch_delivers_every_change_in_order(fake: FakeKube) -> None:
    watch = fake.watch()

    owner = await fake.create(NODECLUSTERS, NS, cluster())
    await fake.create(CLUSTERNODES, NS, node("n1", owner))
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 1}})
    await fake.delete(NODECLUSTERS, NS, "web")

    got = watch.drain()
    assert [(e.kind, *n) for e, n in zip(got, names(got), strict=True)] == [
        ("nodeclusters", "ADDED", "web"),
        ("clusternodes", "ADDED", "n1"),
        ("nodeclusters", "MODIFIED", "web"),
        ("nodeclusters", "DELETED", "web"),
        ("clusternodes", "DELETED", "n1"),
    ]
    assert fake.history == got


async def test_watch_bodies_are_as_of_each_change(fake: FakeKube) -> None:
    watch = fake.watch(NODECLUSTERS)

    await fake.create(NODECLUSTERS, NS, cluster())
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 1}})
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 2}})

    targets = [e.body["spec"].get("targetNodes") for e in watch.drain()]
    assert targets == [None, 1, 2]


@pytest.mark.looptime
async def test_a_watch_waits_for_the_next_change(fake: FakeKube) -> None:
    watch = fake.watch(NODECLUSTERS)
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):  # nothing changed: nothing comes
        async with asyncio.timeout(10):
            await anext(watch)

    loop.call_later(5, fake.add, NODECLUSTERS, cluster(namespace=NS))
    async with asyncio.timeout(60):
        event = await anext(watch)

    assert event.type == "ADDED"
    assert loop.time() == pytest.approx(15)


async def test_a_watch_of_one_kind_sees_only_that_kind(fake: FakeKube) -> None:
    watch = fake.watch(CLUSTERNODES)

    await fake.create(NODECLUSTERS, NS, cluster())
    await fake.create(CLUSTERNODES, NS, node("n1"))

    assert names(watch.drain()) == [("ADDED", "n1")]


async def test_an_initial_watch_starts_with_what_exists(fake: FakeKube) -> None:
    await fake.create(CLUSTERNODES, NS, node("n2"))
    await fake.create(CLUSTERNODES, NS, node("n1"))

    watch = fake.watch(CLUSTERNODES, initial=True)
    await fake.delete(CLUSTERNODES, NS, "n2")

    assert names(watch.drain()) == [("ADDED", "n1"), ("ADDED", "n2"), ("DELETED", "n2")]


async def test_what_a_watcher_does_to_a_body_stays_with_it(fake: FakeKube) -> None:
    first, second = fake.watch(), fake.watch()
    await fake.create(NODECLUSTERS, NS, cluster())

    [mine] = first.drain()
    mine.body["spec"]["targetNodes"] = 99

    [theirs] = second.drain()
    assert "targetNodes" not in theirs.body["spec"]
    assert "targetNodes" not in (await fake.get(NODECLUSTERS, NS, "web"))["spec"]


async def test_a_held_watch_delivers_after_release_in_order(fake: FakeKube) -> None:
    watch = fake.watch(NODECLUSTERS)
    watch.hold()

    await fake.create(NODECLUSTERS, NS, cluster())
    await fake.delete(NODECLUSTERS, NS, "web")
    assert watch.drain() == []
    assert watch.pending() == 2
    watch.release()

    assert names(watch.drain()) == [("ADDED", "web"), ("DELETED", "web")]


@pytest.mark.looptime
async def test_a_lagging_watch_delivers_each_event_that_much_later(fake: FakeKube) -> None:
    watch = fake.watch(NODECLUSTERS, lag=5.0)
    loop = asyncio.get_running_loop()
    start = loop.time()

    await fake.create(NODECLUSTERS, NS, cluster())
    assert watch.drain() == []
    async with asyncio.timeout(60):
        event = await anext(watch)

    assert event.type == "ADDED"
    assert loop.time() - start == pytest.approx(5.0)


async def test_a_closed_watch_ends_the_iteration(fake: FakeKube) -> None:
    watch = fake.watch()
    await fake.create(NODECLUSTERS, NS, cluster())

    watch.close()

    assert [e async for e in watch] == []


# -- the journal ----------------------------------------------------------------------------


async def test_the_journal_records_each_call_and_its_outcome(fake: FakeKube) -> None:
    await fake.create(NODECLUSTERS, NS, cluster())
    with pytest.raises(KubeNotFound):
        await fake.get(NODECLUSTERS, NS, "nope")
    fake.fail("patch", "nodeclusters", 409)
    with pytest.raises(KubeConflict):
        await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 1}})

    journal = [(c.verb, c.resource, c.name, c.outcome, c.status, c.injected) for c in fake.calls]
    assert journal == [
        ("create", "nodeclusters", "web", "ok", 201, False),
        ("get", "nodeclusters", "nope", "error", 404, False),
        ("patch", "nodeclusters", "web", "error", 409, True),
    ]


async def test_writes_count_write_calls_whatever_their_outcome(fake: FakeKube) -> None:
    await fake.create(NODECLUSTERS, NS, cluster())
    fake.reset_journal()

    await fake.get(NODECLUSTERS, NS, "web")
    await fake.list(NODECLUSTERS, NS)
    assert fake.writes == 0

    fake.fail("patch", "nodeclusters", 500)
    with pytest.raises(KubeError):
        await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 1}})
    await fake.delete(CLUSTERNODES, NS, "missing")
    assert fake.writes == 2
    assert [c.verb for c in fake.calls_of(resource="clusternodes")] == ["delete"]


async def test_add_seeds_an_object_with_its_status_and_writes_nothing(fake: FakeKube) -> None:
    watch = fake.watch()

    seeded = fake.add(CLUSTERNODES, node("n1", namespace=NS) | {"status": {"state": "Running"}})

    assert seeded["status"] == {"state": "Running"}
    assert seeded["metadata"]["generation"] == 1
    assert fake.calls == []
    assert names(watch.drain()) == [("ADDED", "n1")]


# -- core kinds, field selectors and evictions (Node integration) ----------------------------


def pod(name: str, node: str = "n1", app: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "apps", "labels": {"app": app}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, **spec},
        "status": {"phase": "Running"},
    }


def budget(allowed: int, generation_seen: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1},
        "status": {
            "observedGeneration": generation_seen,
            "disruptionsAllowed": allowed,
            "currentHealthy": 2,
            "desiredHealthy": 1,
        },
    }


async def test_a_missing_core_object_is_named_as_the_server_names_it(fake: FakeKube) -> None:
    with pytest.raises(KubeNotFound, match='nodes "n1" not found'):
        await fake.get(NODES, None, "n1")


async def test_pods_are_listed_by_the_node_they_run_on(fake: FakeKube) -> None:
    fake.add(PODS, pod("a", node="n1"))
    fake.add(PODS, pod("b", node="n2"))

    listed = await fake.list(PODS, None, fields="spec.nodeName=n1")

    assert [p["metadata"]["name"] for p in listed] == ["a"]


async def test_an_eviction_the_budget_allows_takes_one_disruption_and_deletes_the_pod(
    fake: FakeKube,
) -> None:
    fake.add(PODS, pod("a"))
    fake.add(PODDISRUPTIONBUDGETS, budget(allowed=1))

    await fake.evict("apps", "a")

    assert fake.stored(PODS, "apps", "a") is None
    status = fake.stored(PODDISRUPTIONBUDGETS, "apps", "web")["status"]  # type: ignore[index]
    assert status["disruptionsAllowed"] == 0
    assert list(status["disruptedPods"]) == ["a"]
    assert fake.writes == 1


async def test_an_eviction_the_budget_forbids_is_a_429_with_its_cause(fake: FakeKube) -> None:
    fake.add(PODS, pod("a"))
    fake.add(PODDISRUPTIONBUDGETS, budget(allowed=0))

    with pytest.raises(KubeDisruptionBlocked) as caught:
        await fake.evict("apps", "a")

    assert caught.value.status == 429
    assert (
        caught.value.message == "The disruption budget web needs 1 healthy pods and has 2 currently"
    )
    assert fake.stored(PODS, "apps", "a") is not None


async def test_a_budget_not_yet_observed_refuses_and_two_budgets_are_a_500(fake: FakeKube) -> None:
    fake.add(PODS, pod("a"))
    fake.add(PODDISRUPTIONBUDGETS, budget(allowed=1, generation_seen=0))
    with pytest.raises(KubeError) as caught:
        await fake.evict("apps", "a")
    assert caught.value.status == 429
    assert not isinstance(caught.value, KubeDisruptionBlocked)

    second = budget(allowed=1)
    second["metadata"]["name"] = "web-too"
    fake.add(PODDISRUPTIONBUDGETS, second)
    with pytest.raises(KubeError) as caught:
        await fake.evict("apps", "a")
    assert caught.value.status == 500


async def test_pods_not_running_or_already_deleting_ignore_the_budget(fake: FakeKube) -> None:
    pending = pod("p")
    pending["status"]["phase"] = "Pending"
    fake.add(PODS, pending)
    fake.add(PODDISRUPTIONBUDGETS, budget(allowed=0))

    await fake.evict("apps", "p")

    assert fake.stored(PODS, "apps", "p") is None


async def test_a_bound_pod_with_a_grace_period_terminates_until_its_kubelet_removes_it(
    fake: FakeKube,
) -> None:
    fake.add(PODS, pod("a", terminationGracePeriodSeconds=30))

    await fake.evict("apps", "a")

    stored = fake.stored(PODS, "apps", "a")
    assert stored is not None
    assert stored["metadata"]["deletionGracePeriodSeconds"] == 30
    assert stored["metadata"]["deletionTimestamp"] == rfc3339(NOW + timedelta(seconds=30))
    fake.vanish(PODS, "apps", "a")
    assert fake.stored(PODS, "apps", "a") is None


async def test_evicting_a_pod_that_is_gone_is_not_found(fake: FakeKube) -> None:
    with pytest.raises(KubeNotFound):
        await fake.evict("apps", "gone")
