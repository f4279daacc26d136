"""FakeKube tells the truth: one scenario, played through `KubeApi` against the fake and
against a real kube-apiserver (with kube-controller-manager's garbage collector), must
leave the same trace on both.

The controllers' in-process tests trust FakeKube's rules (generation, the status
subresource, resourceVersion preconditions, validation, finalizers, garbage collection).
This test is where those rules are checked against the real server, so when a Kubernetes
upgrade changes one, it fails here and not silently in production.

The trace is normalised: status codes, generations, which fields are present, whether a
resourceVersion moved, the names a selector lists, the names left at the end. Never raw
uids, timestamps or resourceVersions, which differ by nature, and never a whole body (the
real server adds managedFields, which the fake does not keep).

A running operator does not disturb it. This test does not request the `operator`
fixture, but another test of the session may have started it, and the operator watches
every namespace. Reading the controllers, this is what it would do to these objects:
the NodeCluster is `paused` and names a NodeProvider that does not exist, so the cluster
controller adds its finalizer, writes status and, when the cluster is deleted, deletes
its ClusterNodes (those whose `spec.clusterName` names it) before releasing the
finalizer; the node controller writes status (provider unavailable) and leaves alone a
deleting node without its own finalizer. So nothing recorded here is a field it writes
(the status field used is `zone`, which it never sets without a machine), generations
are unaffected (it never changes a spec of a paused cluster or its nodes), every
resourceVersion comparison is made under a precondition and retried on a conflict, and
deletion is awaited as a condition with a deadline, which also covers the operator's
finalizer and the garbage collector's delay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kube import Kube, wait_for

from nodecluster.controllers.kube import KubeClient
from nodecluster.controllers.kubeapi import (
    CLUSTERNODES,
    NODECLUSTERS,
    PODDISRUPTIONBUDGETS,
    PODS,
    Kind,
    KubeApi,
    KubeConflict,
    KubeDisruptionBlocked,
    KubeError,
    KubeNotFound,
)
from nodecluster.testing.fakekube import FakeKube

API_VERSION = "nodecluster.io/v1alpha1"
HOLD = "e2e.nodecluster.io/hold"
"""A finalizer of this test's own: the operator's node controller leaves it alone."""
CLUSTER = "honest"
OTHER = "honest-other"
GONE_TIMEOUT = 90.0
"""Seconds the garbage collector (and a running operator's finalizer) may take."""

Trace = list[tuple[Any, ...]]


def cluster_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "NodeCluster",
        "metadata": {"name": name},
        "spec": {
            "providerRef": {"name": "honesty-no-such-provider"},
            "profile": {"machineType": "small"},
            "targetNodes": 1,
            "paused": True,
        },
        "status": {"state": "Deployed"},
    }


def owner_reference(owner: dict[str, Any], controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "NodeCluster",
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def node_body(name: str, owners: list[dict[str, Any]], **metadata: Any) -> dict[str, Any]:
    cluster_name = owners[0]["metadata"]["name"]
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterNode",
        "metadata": {
            "name": name,
            "ownerReferences": [owner_reference(o, i == 0) for i, o in enumerate(owners)],
            **metadata,
        },
        "spec": {
            "clusterName": cluster_name,
            "providerRef": {"name": "honesty-no-such-provider"},
            "profile": {"machineType": "small"},
            "powerState": "Running",
        },
    }


async def refused(call: Awaitable[Any]) -> KubeError:
    """The error a call must end with; failing the test if it succeeds."""
    try:
        await call
    except KubeError as err:
        return err
    raise AssertionError("the call was expected to be refused")


def names_field(err: KubeError, field: str) -> tuple[int, bool]:
    """Status and whether the message names the field: what both servers must agree on."""
    return (err.status, f"{field}: " in err.message)


async def with_precondition(
    api: KubeApi, kind: Kind, ns: str, name: str, patch: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Patch under the resourceVersion just read, re-reading if someone else (a running
    operator) wrote in between; return that resourceVersion and the answer."""
    for _ in range(20):
        version = (await api.get(kind, ns, name))["metadata"]["resourceVersion"]
        with_version = {
            **patch,
            "metadata": {**patch.get("metadata", {}), "resourceVersion": version},
        }
        try:
            return version, await api.patch(kind, ns, name, with_version)
        except KubeConflict:
            continue
    raise AssertionError(f"{name} kept changing under a precondition")


async def until(what: str, probe: Callable[[], Awaitable[bool]]) -> None:
    """Wait for a condition with a deadline (met at once by the fake, whose garbage
    collection is synchronous; seconds later on the real server)."""
    deadline = time.monotonic() + GONE_TIMEOUT
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {GONE_TIMEOUT}s waiting until {what}")
        await asyncio.sleep(0.2)


def is_gone(api: KubeApi, kind: Kind, ns: str, name: str) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        try:
            await api.get(kind, ns, name)
        except KubeNotFound:
            return True
        return False

    return probe


async def play(api: KubeApi, ns: str) -> Trace:
    """The scenario; each step appends what it observed, normalised."""
    trace: Trace = []
    versions: list[int] = []

    def seen(body: dict[str, Any]) -> dict[str, Any]:
        versions.append(int(body["metadata"]["resourceVersion"]))
        return body

    # Create: generation 1, status dropped; a second create of the name conflicts.
    owner = seen(await api.create(NODECLUSTERS, ns, cluster_body(CLUSTER)))
    other = seen(await api.create(NODECLUSTERS, ns, cluster_body(OTHER)))
    trace.append(("create cluster", owner["metadata"]["generation"], "status" in owner))
    held = seen(
        await api.create(
            CLUSTERNODES,
            ns,
            node_body("honest-held", [owner], finalizers=[HOLD], labels={"team": "batch"}),
        )
    )
    created_version = held["metadata"]["resourceVersion"]
    trace.append(("create node", held["metadata"]["generation"], held["metadata"]["finalizers"]))
    err = await refused(api.create(CLUSTERNODES, ns, node_body("honest-held", [owner])))
    trace.append(("create again", err.status))
    generated = node_body("", [owner], labels={"team": "batch", "zone": "a"})
    generated["metadata"] = {**generated["metadata"], "generateName": "honest-gen-"}
    del generated["metadata"]["name"]
    generated = seen(await api.create(CLUSTERNODES, ns, generated))
    gen_name = generated["metadata"]["name"]
    trace.append(("generateName", gen_name.startswith("honest-gen-"), len(gen_name)))

    # Patches of the main endpoint: spec bumps the generation, metadata does not, a patch
    # that changes nothing writes nothing, status is dropped.
    patched = seen(
        await api.patch(CLUSTERNODES, ns, "honest-held", {"spec": {"powerState": "Stopped"}})
    )
    trace.append(("spec patch", patched["metadata"]["generation"]))
    version, same = await with_precondition(
        api, CLUSTERNODES, ns, "honest-held", {"spec": {"powerState": "Stopped"}}
    )
    trace.append(("no-op patch", same["metadata"]["resourceVersion"] == version))
    patched = seen(
        await api.patch(
            CLUSTERNODES,
            ns,
            "honest-held",
            {"metadata": {"labels": {"note": "x"}, "annotations": {"example.com/why": "a b"}}},
        )
    )
    trace.append(("metadata patch", patched["metadata"]["generation"]))
    patched = await api.patch(CLUSTERNODES, ns, "honest-held", {"status": {"zone": "honesty"}})
    trace.append(
        (
            "status to main endpoint",
            (patched.get("status") or {}).get("zone"),
            patched["metadata"]["generation"],
        )
    )

    # The status subresource: status applied, the spec in the same patch ignored.
    patched = seen(
        await api.patch(
            CLUSTERNODES,
            ns,
            "honest-held",
            {"spec": {"powerState": "Running"}, "status": {"zone": "honesty"}},
            status=True,
        )
    )
    trace.append(
        (
            "status patch",
            patched["status"].get("zone"),
            patched["spec"]["powerState"],
            patched["metadata"]["generation"],
        )
    )

    # A stale resourceVersion is a conflict and changes nothing.
    err = await refused(
        api.patch(
            CLUSTERNODES,
            ns,
            "honest-held",
            {"metadata": {"resourceVersion": created_version}, "spec": {"powerState": "Running"}},
        )
    )
    current = await api.get(CLUSTERNODES, ns, "honest-held")
    trace.append(("stale patch", err.status, current["spec"]["powerState"]))

    # What the server refuses in metadata: 422, naming the field.
    bad_label = {"metadata": {"labels": {"team": "Batch Jobs"}}}
    err = await refused(api.patch(CLUSTERNODES, ns, "honest-held", bad_label))
    trace.append(("bad label value in a patch", *names_field(err, "metadata.labels")))
    for what, metadata, field in [
        ("label value", {"labels": {"team": "Batch Jobs"}}, "metadata.labels"),
        ("label key", {"labels": {"Team Name": "batch"}}, "metadata.labels"),
        ("long label value", {"labels": {"team": "x" * 64}}, "metadata.labels"),
        ("annotation key", {"annotations": {"a b": "c"}}, "metadata.annotations"),
        ("finalizer", {"finalizers": ["e2e.nodecluster.io/a b"]}, "metadata.finalizers"),
        ("name", {"name": "Honest_Bad"}, "metadata.name"),
    ]:
        body = node_body("honest-bad", [owner])
        body["metadata"].update(metadata)
        err = await refused(api.create(CLUSTERNODES, ns, body))
        trace.append((f"bad {what} in a create", *names_field(err, field)))
    for field, value in [("uid", "forged"), ("deletionTimestamp", "2000-01-01T00:00:00Z")]:
        err = await refused(
            api.patch(CLUSTERNODES, ns, "honest-held", {"metadata": {field: value}})
        )
        trace.append((f"patch {field}", *names_field(err, f"metadata.{field}")))

    # Equality-based label selectors.
    for selector in ["team=batch", "team!=batch", "zone", "!zone", "team==batch,zone=a"]:
        listed = await api.list(CLUSTERNODES, ns, selector)
        found = sorted(
            "generated" if n == gen_name else n for n in (o["metadata"]["name"] for o in listed)
        )
        trace.append(("select", selector, found))

    # Delete with a finalizer: only marked, the generation bumped; again: nothing changes;
    # no new finalizer while deleting; without the last finalizer it is gone.
    await api.delete(CLUSTERNODES, ns, "honest-held")
    marked = await api.get(CLUSTERNODES, ns, "honest-held")
    meta = marked["metadata"]
    trace.append(
        (
            "delete with a finalizer",
            "deletionTimestamp" in meta,
            meta.get("deletionGracePeriodSeconds"),
            meta["generation"],
        )
    )
    await api.delete(CLUSTERNODES, ns, "honest-held")
    again = (await api.get(CLUSTERNODES, ns, "honest-held"))["metadata"]
    trace.append(
        (
            "delete again",
            again["deletionTimestamp"] == meta["deletionTimestamp"],
            again["generation"],
        )
    )
    late = {"metadata": {"finalizers": [HOLD, "e2e.nodecluster.io/late"]}}
    err = await refused(api.patch(CLUSTERNODES, ns, "honest-held", late))
    trace.append(("new finalizer while deleting", *names_field(err, "metadata.finalizers")))
    version, last = await with_precondition(
        api, CLUSTERNODES, ns, "honest-held", {"metadata": {"finalizers": None}}
    )
    trace.append(
        (
            "last finalizer removed",
            "finalizers" in last["metadata"],
            last["metadata"]["resourceVersion"] == version,
        )
    )
    err = await refused(api.get(CLUSTERNODES, ns, "honest-held"))
    trace.append(("then", err.status))
    await api.delete(CLUSTERNODES, ns, "honest-held")  # a missing object: no error
    trace.append(("delete of a missing object", "ok"))

    # Cascade: the cluster's dependents go with it; one with another owner stays, without
    # the reference to the gone owner.
    seen(await api.create(CLUSTERNODES, ns, node_body("honest-free", [owner])))
    seen(await api.create(CLUSTERNODES, ns, node_body("honest-shared", [other, owner])))
    await api.delete(NODECLUSTERS, ns, CLUSTER)
    await until("the cluster is gone", is_gone(api, NODECLUSTERS, ns, CLUSTER))
    trace.append(("cluster gone",))
    for name in ("honest-free", gen_name):
        await until(f"{name} is gone", is_gone(api, CLUSTERNODES, ns, name))
        trace.append(("dependent gone", "generated" if name == gen_name else name))

    async def shared_lost_its_gone_owner() -> bool:
        refs = (await api.get(CLUSTERNODES, ns, "honest-shared"))["metadata"]["ownerReferences"]
        return [r["name"] for r in refs] == [OTHER]

    await until("the dangling owner reference goes", shared_lost_its_gone_owner)
    trace.append(("shared dependent kept, without the gone owner",))
    await api.delete(NODECLUSTERS, ns, OTHER)
    # Both awaited: with a running operator, its finalizer holds the cluster until the
    # operator has deleted the node itself.
    await until("the other cluster is gone", is_gone(api, NODECLUSTERS, ns, OTHER))
    await until("the last dependent is gone", is_gone(api, CLUSTERNODES, ns, "honest-shared"))
    left = [
        o["metadata"]["name"]
        for kind in (NODECLUSTERS, CLUSTERNODES)
        for o in await api.list(kind, ns)
    ]
    trace.append(("left", left))
    trace.append(
        (
            "resourceVersions increase",
            versions == sorted(versions),
            len(set(versions)) == len(versions),
        )
    )
    return trace


async def test_the_fake_and_the_real_api_server_end_the_same(kube: Kube, ns: str) -> None:
    fake_trace = await play(FakeKube(), ns)

    real = await KubeClient.connect(kubeconfig=str(kube.kubeconfig))
    try:
        real_trace = await play(real, ns)
    finally:
        await real.close()

    assert fake_trace == real_trace


def pod_body(name: str, node: str | None, grace: int = 0) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": grace,
        "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}],
    }
    if node is not None:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "honest"}},
        "spec": spec,
    }


async def evicted(api: KubeApi, ns: str, name: str) -> tuple[Any, ...]:
    """An eviction's outcome: ok, or the status and whether it is a budget's refusal."""
    try:
        await api.evict(ns, name)
    except KubeError as err:
        return ("refused", err.status, isinstance(err, KubeDisruptionBlocked))
    return ("ok",)


async def play_evictions(api: KubeApi, ns: str) -> Trace:
    """Evictions as the drain makes them, against a PodDisruptionBudget that allows nothing
    (maxUnavailable 0: kube-controller-manager's disruption controller computes the same
    status this writes, so the budget says the same on both)."""
    trace: Trace = []
    # Not yet scheduled: deleted at once, whatever the budget.
    await api.create(PODS, ns, pod_body("honest-pending", None))
    await api.create(PODS, ns, pod_body("honest-running", "honest-no-such-node"))
    await api.create(PODS, ns, pod_body("honest-slow", "honest-no-such-node", grace=30))
    for name in ("honest-running", "honest-slow"):
        await api.patch(PODS, ns, name, {"status": {"phase": "Running"}}, status=True)
    await api.create(
        PODDISRUPTIONBUDGETS,
        ns,
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "honest"},
            "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "honest"}}},
        },
    )
    budget_status = {
        "observedGeneration": 1,
        "disruptionsAllowed": 0,
        "currentHealthy": 0,
        "desiredHealthy": 2,
        "expectedPods": 2,
    }
    await api.patch(PODDISRUPTIONBUDGETS, ns, "honest", {"status": budget_status}, status=True)
    trace.append(("pending pod", await evicted(api, ns, "honest-pending")))
    trace.append(("pending pod gone", await is_gone(api, PODS, ns, "honest-pending")()))
    trace.append(("running pod, budget allows nothing", await evicted(api, ns, "honest-running")))
    trace.append(("still there", not await is_gone(api, PODS, ns, "honest-running")()))
    trace.append(("missing pod", await evicted(api, ns, "honest-no-such-pod")))

    await api.delete(PODDISRUPTIONBUDGETS, ns, "honest")
    await until("the budget is gone", is_gone(api, PODDISRUPTIONBUDGETS, ns, "honest"))
    trace.append(("running pod, no budget", await evicted(api, ns, "honest-running")))
    trace.append(("grace 0: gone at once", await is_gone(api, PODS, ns, "honest-running")()))
    trace.append(("pod with a grace period", await evicted(api, ns, "honest-slow")))
    slow = (await api.get(PODS, ns, "honest-slow"))["metadata"]
    trace.append(
        ("terminating", bool(slow.get("deletionTimestamp")), slow.get("deletionGracePeriodSeconds"))
    )
    listed = await api.list(PODS, ns, fields="spec.nodeName=honest-no-such-node")
    trace.append(("listed by node", [p["metadata"]["name"] for p in listed]))
    return trace


async def test_evictions_end_the_same_on_the_fake_and_the_real_api_server(
    kube: Kube, ns: str
) -> None:
    # A pod is admitted only once its namespace's default ServiceAccount exists.
    wait_for("the default ServiceAccount", lambda: kube.get("serviceaccount", "default", ns))
    fake_trace = await play_evictions(FakeKube(), ns)

    real = await KubeClient.connect(kubeconfig=str(kube.kubeconfig))
    try:
        real_trace = await play_evictions(real, ns)
    finally:
        await real.close()

    assert fake_trace == real_trace


async def play_named_events(api: KubeApi, ns: str) -> Trace:
    """Events posted once under a name (controllers/announcements.py), and read back."""
    trace: Trace = []
    involved = {
        "apiVersion": API_VERSION,
        "kind": "NodeClusterOperation",
        "metadata": {"name": "honest-op", "namespace": ns},
    }
    name = "honest-op.0123456789abcdef"
    first = await api.post_event(name, involved, "Normal", "OperationSucceeded", "Check: done")
    again = await api.post_event(name, involved, "Warning", "OperationFailed", "Check: timed out")
    trace.append(("posted", first, again))
    event = await api.read_event(ns, name)
    trace.append(("read", event["metadata"]["name"], event["reason"], event["message"]))
    err = await refused(api.read_event(ns, "honest-op.fedcba9876543210"))
    trace.append(("read missing", err.status, isinstance(err, KubeNotFound)))
    return trace


async def test_named_events_are_posted_once_and_read_back_the_same(kube: Kube, ns: str) -> None:
    fake_trace = await play_named_events(FakeKube(), ns)

    real = await KubeClient.connect(kubeconfig=str(kube.kubeconfig))
    try:
        real_trace = await play_named_events(real, ns)
    finally:
        await real.close()

    assert fake_trace == real_trace
    assert fake_trace[0] == ("posted", True, False)
