"""The pure rules of Node integration (planning/kubenode.py): what a Node says, the labels
and taints patch (none when in sync), which pods a drain waits for, and when a
ClusterNode's event means its Node link is out of date."""

from __future__ import annotations

from typing import Any

from nodecluster.api.nodecluster import NodeTaint
from nodecluster.planning.kubenode import (
    NOT_REGISTERED,
    drain_work,
    link_stale,
    node_facts,
    pod_facts,
    sync_patch,
)

PID = "sim://zone-a/i-00000001"


def node(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": "n1", "uid": "u1", "resourceVersion": "42", "labels": {"a": "1"}},
        "spec": {"providerID": PID},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "lastTransitionTime": "2030-01-01T00:00:00Z"}
            ]
        },
    }  # fmt: skip
    for key, value in fields.items():
        body[key] = {**body[key], **value}
    return body


def test_a_node_without_a_provider_id_is_nobodys() -> None:
    assert node_facts({"metadata": {"name": "x"}, "spec": {}}) is None


def test_heartbeats_and_resource_versions_are_not_relevant() -> None:
    one = node_facts(node())
    beat = node(metadata={"name": "n1", "uid": "u1", "resourceVersion": "43", "labels": {"a": "1"}})
    other = node_facts(beat)
    assert one is not None and other is not None
    assert one.relevant() == other.relevant()


def test_in_sync_nothing_is_patched() -> None:
    facts = node_facts(
        node(spec={"taints": [{"key": "t", "value": "v", "effect": "NoSchedule",
                               "timeAdded": "2030-01-01T00:00:00Z"}]})
    )  # fmt: skip
    assert facts is not None
    taints = [NodeTaint(key="t", value="v", effect="NoSchedule")]
    assert sync_patch({"a": "1"}, taints, facts) is None


def test_missing_labels_are_merged_and_taints_keep_everyone_elses() -> None:
    theirs = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}
    facts = node_facts(
        node(spec={"taints": [theirs, {"key": "t", "value": "old", "effect": "NoSchedule"}]})
    )
    assert facts is not None

    patch = sync_patch({"b": "2"}, [NodeTaint(key="t", value="new", effect="NoSchedule")], facts)

    assert patch == {
        "metadata": {"labels": {"b": "2"}, "resourceVersion": "42"},
        "spec": {"taints": [theirs, {"key": "t", "effect": "NoSchedule", "value": "new"}]},
    }


def test_labels_alone_need_no_resource_version() -> None:
    facts = node_facts(node())
    assert facts is not None
    assert sync_patch({"b": "2"}, [], facts) == {"metadata": {"labels": {"b": "2"}}}


def pod(name: str, **meta: Any) -> dict[str, Any]:
    phase = meta.pop("phase", "Running")
    return {"metadata": {"name": name, "namespace": "apps", **meta}, "status": {"phase": phase}}


def test_a_drain_leaves_daemonset_and_mirror_pods_and_ignores_finished_ones() -> None:
    daemon = [{"kind": "DaemonSet", "name": "ds", "controller": True}]
    pods = [
        pod("web"),
        pod("agent", ownerReferences=daemon),
        pod("static", annotations={"kubernetes.io/config.mirror": "x"}),
        pod("done", phase="Succeeded"),
        pod("going", deletionTimestamp="2030-01-01T00:00:00Z"),
    ]

    work = drain_work([pod_facts(p) for p in pods], node_ready=True)

    assert [p.name for p in work.evict] == ["web"]
    assert [p.name for p in work.waiting] == ["going"]
    assert work.left == 2
    # A Node that is not Ready has no kubelet to stop what is terminating: not waited for.
    assert drain_work([pod_facts(p) for p in pods], node_ready=False).left == 1


def linked_body(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-x1"},
        "spec": {"profile": {"machineType": "small", "nodeLabels": {"a": "1"}}},
        "status": {
            "providerId": PID,
            "nodeRef": {"name": "n1", "uid": "u1"},
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "NodeReady", "status": "True", "reason": "KubeletReady",
                 "lastTransitionTime": "2030-01-01T00:00:00Z"},
            ],
            **status,
        },
    }  # fmt: skip


def test_a_clusternode_that_says_what_its_node_says_is_not_stale() -> None:
    assert not link_stale(linked_body(), node_facts(node()))


def test_a_clusternode_is_stale_when_its_node_changed_or_went() -> None:
    unready = node(status={"conditions": [{"type": "Ready", "status": "False",
                                           "reason": "KubeletNotReady"}]})  # fmt: skip
    assert link_stale(linked_body(), node_facts(unready))
    assert link_stale(linked_body(), None)
    assert link_stale(linked_body(), node_facts(node(metadata={"name": "n1", "uid": "u2"})))
    no_label = node(metadata={"name": "n1", "uid": "u1", "labels": {}})
    assert link_stale(linked_body(), node_facts(no_label))


def test_a_clusternode_not_registered_stays_so_without_a_node() -> None:
    body = linked_body(
        nodeRef=None,
        conditions=[{"type": "NodeReady", "status": "False", "reason": NOT_REGISTERED}],
    )
    del body["status"]["nodeRef"]
    assert not link_stale(body, None)
    # No machine yet, or being deleted: their own rules decide.
    assert not link_stale({"metadata": {}, "status": {}}, None)
