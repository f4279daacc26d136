"""Invalid specs are refused by the API server itself (schema + CEL), with messages that
name the field; nothing reaches the operator. A well-formed reference to a provider that
does not exist cannot be checked by the API server, so the cluster says so in status."""

from __future__ import annotations

from typing import Any

import pytest
from kube import SAMPLES, Kube, sample, wait_for
from scenario import Scenario, operation_sample


def _spec(**changes: Any) -> dict[str, Any]:
    return changes


CASES = [
    pytest.param(_spec(targetNodes=-1), "spec.targetNodes", id="negative-target"),
    pytest.param(_spec(minNodes=5, maxNodes=2, targetNodes=3), "spec.minNodes", id="min-above-max"),
    pytest.param(_spec(targetNodes=20, maxNodes=10), "spec.targetNodes", id="target-above-max"),
    pytest.param(_spec(targetNodes=0, minNodes=1), "spec.targetNodes", id="target-below-min"),
    pytest.param(
        _spec(providerRef={"name": "Not_A_Name"}),
        "spec.providerRef.name",
        id="malformed-provider-ref",
    ),
    pytest.param(
        _spec(providerRef={"kind": "Secret", "name": "x"}),
        "spec.providerRef.kind",
        id="unknown-provider-kind",
    ),
    pytest.param(
        _spec(policies={"placement": {"zones": [{"name": "zone-a", "weight": 0}]}}),
        "spec.policies.placement.zones[0].weight",
        id="zero-zone-weight",
    ),
    pytest.param(
        _spec(policies={"placement": {"zones": [{"name": "zone-a"}, {"name": "zone-a"}]}}),
        "zone names must be unique",
        id="duplicate-zones",
    ),
    pytest.param(
        _spec(policies={"rollout": {"maxSurge": "lots"}}),
        "spec.policies.rollout.maxSurge",
        id="bad-max-surge",
    ),
    pytest.param(_spec(desiredState="Paused"), "spec.desiredState", id="unknown-desired-state"),
    pytest.param(
        _spec(suspend=["Launch", "Rollout", "Launch"]),
        "spec.suspend: Invalid value: must not name a process twice",
        id="duplicate-suspended-process",
    ),
    pytest.param(_spec(suspend=["AZRebalance"]), "spec.suspend[0]", id="unknown-process"),
    pytest.param(
        _spec(policies={"rollout": {"maxNodeLifetimeSeconds": 30}}),
        "spec.policies.rollout.maxNodeLifetimeSeconds",
        id="lifetime-under-a-minute",
    ),
    pytest.param(
        _spec(policies={"rollout": {"maxNodeLifetimeSeconds": 600}}),
        "spec.policies.rollout.maxNodeLifetimeSeconds: Invalid value",
        id="lifetime-not-above-the-default-startup-timeout",
    ),
    pytest.param(
        _spec(
            policies={
                "health": {"nodeStartupTimeoutSeconds": 900},
                "rollout": {"maxNodeLifetimeSeconds": 900},
            }
        ),
        "must be more than policies.health.nodeStartupTimeoutSeconds",
        id="lifetime-not-above-the-startup-timeout",
    ),
]


@pytest.mark.parametrize(("changes", "field"), CASES)
def test_invalid_cluster_is_refused_with_the_field_named(
    scenario: Scenario, kube: Kube, changes: dict[str, Any], field: str
) -> None:
    nc = scenario.cluster()
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(nc["spec"].get(key), dict):
            nc["spec"][key] = {**nc["spec"][key], **value}
        else:
            nc["spec"][key] = value

    proc = kube.apply(nc, check=False)

    assert proc.returncode != 0, "the API server accepted an invalid NodeCluster"
    assert field in proc.stderr, proc.stderr
    assert scenario.nc() == {}


# profile.labels become the ClusterNodes' metadata.labels: a label the API server would
# refuse there must be refused here, or every node create fails and the cluster never
# converges. Each case: the labels, then what the refusal must say.
LABEL_CASES = [
    pytest.param(
        {"team": "Batch Jobs"},
        ["spec.profile.labels[team]", "label values must be"],
        id="value-with-a-space",
    ),
    pytest.param(
        {"team": "v" * 64},
        ["spec.profile.labels.team", "may not be more than 63"],
        id="value-of-64-characters",
    ),
    pytest.param(
        {"bad key": "x"},
        ["spec.profile.labels", 'label key "bad key"', "alphanumeric"],
        id="key-with-a-space",
    ),
    pytest.param(
        {"a/b/c": "x"},
        ["spec.profile.labels", 'label key "a/b/c"', "DNS subdomain and '/'"],
        id="key-with-two-slashes",
    ),
    pytest.param(
        {"k" * 64: "x"},
        ["spec.profile.labels", "at most 63 characters"],
        id="key-name-of-64-characters",
    ),
    pytest.param(
        {"Example_Corp/team": "x"},
        ["spec.profile.labels", 'label key "Example_Corp/team"', "RFC 1123 subdomain"],
        id="prefix-not-a-dns-subdomain",
    ),
    pytest.param(
        {"nodecluster.io/cluster": "other"},
        ["spec.profile.labels", "Forbidden", "reserved"],
        id="reserved-key",
    ),
    pytest.param(
        {f"l{i}": "x" for i in range(65)},
        ["spec.profile.labels", "Too many", "at most 64"],
        id="65-labels",
    ),
]


@pytest.mark.parametrize(("labels", "fragments"), LABEL_CASES)
def test_invalid_profile_labels_are_refused_with_the_label_named(
    scenario: Scenario, kube: Kube, labels: dict[str, str], fragments: list[str]
) -> None:
    nc = scenario.cluster()
    nc["spec"]["profile"]["labels"] = labels

    proc = kube.apply(nc, check=False)

    assert proc.returncode != 0, "the API server accepted invalid profile labels"
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr
    assert scenario.nc() == {}


def test_labels_at_the_edge_of_valid_are_accepted_and_reach_the_nodes(
    scenario: Scenario, kube: Kube
) -> None:
    labels = {
        "empty": "",
        "long": "v" * 63,
        "example.com/team": "batch",
        "k" * 63: "My_Value-1.0",
    }
    scenario.make_provider()
    scenario.make_cluster(targetNodes=1, profile={"machineType": "small", "labels": labels})

    def node_labels() -> dict[str, str] | None:
        nodes = scenario.nodes()
        return nodes[0]["metadata"]["labels"] if nodes else None

    on_the_node = wait_for("a ClusterNode created", node_labels)
    assert on_the_node == {**labels, "nodecluster.io/cluster": "workers"}


def test_too_long_a_name_is_refused(scenario: Scenario, kube: Kube) -> None:
    nc = scenario.cluster(name="n" * 58)

    proc = kube.apply(nc, check=False)

    assert proc.returncode != 0
    assert "metadata.name" in proc.stderr and "57 characters" in proc.stderr


def test_changing_the_provider_is_refused(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider()
    scenario.make_cluster(targetNodes=0, minNodes=0)

    proc = kube.kubectl(
        "patch",
        "nodecluster/workers",
        "-n",
        scenario.ns,
        "--type=merge",
        "-p",
        '{"spec":{"providerRef":{"name":"another"}}}',
        check=False,
    )

    assert proc.returncode != 0
    assert "spec.providerRef" in proc.stderr and "immutable" in proc.stderr


@pytest.mark.parametrize("timeout", [0, 7 * 86400 + 1], ids=["zero", "over-a-week"])
def test_an_operation_timeout_out_of_range_is_refused(
    scenario: Scenario, kube: Kube, timeout: int
) -> None:
    op = operation_sample("check")
    op["metadata"]["namespace"] = scenario.ns
    op["spec"]["timeoutSeconds"] = timeout

    proc = kube.apply(op, check=False)

    assert proc.returncode != 0, "the API server accepted an out-of-range timeoutSeconds"
    assert "spec.timeoutSeconds" in proc.stderr, proc.stderr


def test_an_operation_timeout_cannot_be_added_or_changed(scenario: Scenario, kube: Kube) -> None:
    # The operator applies the default timeout: adding one later must be refused as any
    # other change, or a stuck operation could be kept running past its deadline.
    for name, spec in (("untimed", {}), ("timed", {"timeoutSeconds": 60})):
        op = operation_sample("check")
        op["metadata"].update(name=name, namespace=scenario.ns)
        op["spec"].update(clusterName="whatever", **spec)
        kube.apply(op)

        proc = kube.kubectl(
            "patch",
            "nodeclusteroperation",
            name,
            "-n",
            scenario.ns,
            "--type=merge",
            "-p",
            '{"spec":{"timeoutSeconds":7200}}',
            check=False,
        )

        assert proc.returncode != 0, name
        assert "immutable" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "action", ["RemoveNodes", "ReplaceNodes", "StopNodes", "StartNodes", "RebootNodes"]
)
@pytest.mark.parametrize(
    "nodes",
    [None, {}, {"names": []}, {"selector": {"matchLabels": {}}}],
    ids=["absent", "empty", "no-names", "empty-selector"],
)
def test_a_node_action_that_chooses_no_nodes_is_refused(
    scenario: Scenario, kube: Kube, action: str, nodes: dict[str, Any] | None
) -> None:
    # Without a criterion these would act on every node of the cluster.
    op = operation_sample("check")
    op["metadata"].update(name="no-nodes", namespace=scenario.ns)
    op["spec"]["action"] = action
    if nodes is not None:
        op["spec"]["nodes"] = nodes

    proc = kube.apply(op, check=False)

    assert proc.returncode != 0, "the API server accepted a node action choosing no nodes"
    assert "spec.nodes: Required value" in proc.stderr, proc.stderr
    assert "only Check and Recover act on every node" in proc.stderr


def test_every_operation_sample_is_accepted(scenario: Scenario, kube: Kube) -> None:
    paths = sorted((SAMPLES / "operations").glob("*.yaml"))
    assert len(paths) == 11
    for path in paths:
        op = sample(f"operations/{path.name}")
        op["metadata"]["namespace"] = scenario.ns
        proc = kube.apply(op, check=False)
        assert proc.returncode == 0, f"{path.name}: {proc.stderr}"


def test_unknown_provider_is_reported_as_stalled(scenario: Scenario, kube: Kube) -> None:
    scenario.make_cluster(targetNodes=2)  # no provider made

    def stalled_condition() -> dict[str, Any] | None:
        cond = kube.condition("nodecluster", "workers", "Stalled", scenario.ns)
        return cond if cond.get("status") == "True" else None

    stalled = wait_for("Stalled=True", stalled_condition)
    assert stalled["reason"] == "ProviderNotFound"
    assert scenario.provider in stalled["message"]
    assert scenario.nodes() == []


def test_invalid_driver_config_is_reported_not_crashed(
    scenario: Scenario, kube: Kube, operator: object
) -> None:
    scenario.make_provider(createLatencySeconds="slow")
    scenario.make_cluster(targetNodes=1)

    def provider_not_ready() -> dict[str, Any] | None:
        ready = kube.condition("nodeprovider", scenario.provider, "Ready")
        return ready if ready.get("status") == "False" else None

    ready = wait_for("NodeProvider Ready=False", provider_not_ready)
    assert ready["reason"] == "InvalidProviderConfig"
    assert "createLatencySeconds" in ready["message"]

    def cluster_stalled() -> dict[str, Any] | None:
        cond = kube.condition("nodecluster", "workers", "Stalled", scenario.ns)
        return cond if cond.get("status") == "True" else None

    assert wait_for("cluster Stalled", cluster_stalled)["reason"] == "InvalidProviderConfig"

    # A cluster of a broken provider can still be deleted (none of its nodes got a machine).
    kube.kubectl("delete", "nodecluster/workers", "-n", scenario.ns, "--wait=false")
    wait_for("the cluster deleted", lambda: scenario.nc() == {}, timeout=60)
