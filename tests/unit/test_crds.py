"""The CRDs under crds/ are what the models generate, and are CRDs the API server takes:
structural, documented, with the scale subresource, printer columns, names and CEL
rules that users and tools rely on."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from nodecluster.api.crds import all_crds, crd_files
from nodecluster.api.nodecluster import ClusterState
from nodecluster.cli import main

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
REGENERATE = "nodecluster-operator crds --write crds"

BY_KIND = {doc["spec"]["names"]["kind"]: doc for doc in all_crds()}


def schema_of(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = BY_KIND[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (`.spec.policies.zones[]`, `.status.zones{}`)."""
    yield path, node
    for name, prop in node.get("properties", {}).items():
        yield from walk(prop, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def test_committed_crds_match_the_models() -> None:
    generated = crd_files()
    committed = {p.name: p.read_text() for p in CRDS.glob("*.yaml")}
    stale = sorted(
        n for n in generated.keys() | committed.keys() if generated.get(n) != committed.get(n)
    )
    assert not stale, f"crds/ differs from the models in {stale}; run: {REGENERATE}"


def test_crds_check_command_passes_on_the_committed_crds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["crds", "--check", str(CRDS)]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("drift", ["edited", "missing", "extra"])
def test_crds_check_command_fails_on_drift_and_says_how_to_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], drift: str
) -> None:
    assert main(["crds", "--write", str(tmp_path)]) == 0
    victim = tmp_path / "nodecluster.io_nodeclusters.yaml"
    if drift == "edited":
        victim.write_text(victim.read_text() + "# hand edit\n")
    elif drift == "missing":
        victim.unlink()
    else:
        (tmp_path / "stray.yaml").write_text("{}\n")

    assert main(["crds", "--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"nodecluster-operator crds --write {tmp_path}" in err


def test_files_are_the_crds_as_yaml() -> None:
    for name, text in crd_files().items():
        doc = yaml.safe_load(text)
        assert doc == BY_KIND[doc["spec"]["names"]["kind"]]
        assert name == f"nodecluster.io_{doc['spec']['names']['plural']}.yaml"


KINDS = sorted(BY_KIND)


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_structural(kind: str) -> None:
    for path, node in walk(schema_of(kind)):
        assert "$ref" not in node, path
        assert "$defs" not in node and "title" not in node and "const" not in node, path
        if "anyOf" in node or "oneOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, path
        int_or_string = node.get("x-kubernetes-int-or-string") is True
        preserved = node.get("x-kubernetes-preserve-unknown-fields") is True
        assert "type" in node or int_or_string or preserved, f"{path}: no type"
        if "properties" in node:
            assert node["type"] == "object", path
            assert "additionalProperties" not in node, path
        if node.get("type") == "array":
            assert isinstance(node.get("items"), dict), path


@pytest.mark.parametrize("kind", KINDS)
def test_every_property_is_documented(kind: str) -> None:
    undocumented = [
        path
        for path, node in walk(schema_of(kind))
        # Only named fields: list items and map values are explained by their field.
        # metadata is the API server's own; it allows nothing but `type` there.
        if path and path[-1] not in "]}" and path != ".metadata" and not node.get("description")
    ]
    assert undocumented == []


@pytest.mark.parametrize("kind", KINDS)
def test_names_and_subresources(kind: str) -> None:
    spec = BY_KIND[kind]["spec"]
    short = {
        "NodeProvider": "np",
        "NodeCluster": "nc",
        "ClusterNode": "cn",
        "NodeClusterOperation": "nco",
        "NodeClusterReceiver": "ncr",
    }
    assert spec["group"] == "nodecluster.io"
    assert spec["names"]["shortNames"] == [short[kind]]
    # `nodecluster-all`, not `nodecluster`: kubectl resolves a category before a
    # singular name, so a category named like a kind breaks `kubectl get nodecluster X`.
    assert spec["names"]["categories"] == ["nodecluster-all"]
    every_name = {
        n
        for doc in BY_KIND.values()
        for n in (doc["spec"]["names"]["singular"], doc["spec"]["names"]["plural"])
    }
    assert not set(spec["names"]["categories"]) & (every_name | set(short.values()))
    assert spec["scope"] == ("Cluster" if kind == "NodeProvider" else "Namespaced")
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"]["status"] == {}
    assert BY_KIND[kind]["metadata"]["name"] == f"{spec['names']['plural']}.nodecluster.io"


def test_nodecluster_has_the_scale_subresource() -> None:
    scale = BY_KIND["NodeCluster"]["spec"]["versions"][0]["subresources"]["scale"]
    assert scale == {
        "specReplicasPath": ".spec.targetNodes",
        "statusReplicasPath": ".status.currentNodes",
        "labelSelectorPath": ".status.selector",
    }
    properties = schema_of("NodeCluster")["properties"]
    assert properties["spec"]["properties"]["targetNodes"]["type"] == "integer"
    assert properties["status"]["properties"]["currentNodes"]["type"] == "integer"
    assert properties["status"]["properties"]["selector"]["type"] == "string"


def resolve(schema: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for part in json_path.strip(".").split("."):
        node = (node or {}).get("properties", {}).get(part)
    return node


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        (
            "NodeCluster",
            ["Provider", "Target", "Current", "Ready", "Warm", "State", "Month-Cost", "Age"],
        ),
        ("ClusterNode", ["Cluster", "State", "Provider-ID", "Node", "Zone", "Hook", "Pool", "Age"]),
        ("NodeProvider", ["Driver", "Phase", "Nodes", "Month-Cost", "Age"]),
        ("NodeClusterOperation", ["Cluster", "Action", "Phase", "Age"]),
        (
            "NodeClusterReceiver",
            ["Cluster", "Action", "Ready", "Triggered", "Last-Triggered", "Age"],
        ),
    ],
)
def test_printer_columns(kind: str, columns: list[str]) -> None:
    printed = BY_KIND[kind]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in printed] == columns
    for column in printed:
        if column["name"] == "Age":
            assert column == {
                "name": "Age",
                "type": "date",
                "jsonPath": ".metadata.creationTimestamp",
            }
            continue
        if "[?(" in column["jsonPath"]:  # a condition's field: conditions[] is in the schema
            assert resolve(schema_of(kind), column["jsonPath"].split("[")[0]) is not None
            continue
        if column["jsonPath"].startswith(".metadata.labels."):
            # A label (the warm pool's): metadata is the server's own, not in our schema;
            # its dots escaped, as kubectl's JSONPath needs them.
            assert column["type"] == "string", column
            assert "\\." in column["jsonPath"] and " " not in column["jsonPath"], column
            continue
        target = resolve(schema_of(kind), column["jsonPath"])
        assert target is not None, f"{column['jsonPath']} is not in the schema"
        if column["type"] == "date":
            assert (target["type"], target.get("format")) == ("string", "date-time"), column
            continue
        assert target["type"] == column["type"], column


def test_status_schema_keeps_every_status_field() -> None:
    # A status field missing from the schema is pruned by the API server and the
    # operator would rewrite it forever.
    status = schema_of("NodeCluster")["properties"]["status"]["properties"]
    for name in (
        "observedGeneration",
        "state",
        "currentNodes",
        "readyNodes",
        "selector",
        "conditions",
    ):
        assert name in status
    assert set(status["state"]["enum"]) == set(get_args(ClusterState))
    condition = status["conditions"]["items"]["properties"]
    assert {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    } <= set(condition)


def rules(kind: str) -> dict[str, list[dict[str, Any]]]:
    return {
        path: node["x-kubernetes-validations"]
        for path, node in walk(schema_of(kind))
        if "x-kubernetes-validations" in node
    }


@pytest.mark.parametrize("kind", KINDS)
def test_every_cel_rule_has_a_message(kind: str) -> None:
    for path, validations in rules(kind).items():
        for rule in validations:
            assert rule["rule"].strip(), path
            assert len(rule.get("message", "")) > 10, (path, rule)


@pytest.mark.parametrize(
    ("kind", "path", "fragment"),
    [
        ("NodeCluster", ".spec", "self.minNodes <= self.maxNodes"),
        ("NodeCluster", ".spec", "self.targetNodes >= self.minNodes"),
        ("NodeCluster", ".spec", "self.targetNodes <= self.maxNodes"),
        ("NodeCluster", ".spec", "oldSelf.desiredState != 'Terminated'"),
        ("NodeCluster", ".spec.providerRef", "self == oldSelf"),
        ("NodeCluster", ".spec.policies.placement.zones", "exists_one"),
        ("NodeCluster", ".spec.policies.rollout.maxSurge", "matches"),
        ("NodeCluster", ".spec.policies.rollout.maxUnavailable", "matches"),
        ("NodeCluster", ".spec.policies.health.maxUnhealthy", "matches"),
        ("NodeCluster", ".spec.suspend", "exists_one"),
        ("NodeCluster", ".spec.policies", "maxNodeLifetimeSeconds >"),
        ("ClusterNode", ".spec.clusterName", "self == oldSelf"),
        ("ClusterNode", ".spec.providerRef", "self == oldSelf"),
        ("ClusterNode", ".spec.profile", "self == oldSelf"),
        ("ClusterNode", ".spec.zone", "self == oldSelf"),
        ("NodeClusterOperation", ".spec", "self == oldSelf"),
        ("NodeCluster", ".spec.profile.labels", "self.all(k, "),
        ("NodeCluster", ".spec.profile.labels{}", "self.matches("),
        ("ClusterNode", ".spec.profile.labels", "self.all(k, "),
        ("ClusterNode", ".spec.profile.labels{}", "self.matches("),
        ("NodeClusterReceiver", ".spec", "!has(self.count) || self.action in"),
        ("NodeClusterReceiver", ".spec", "!has(self.nodes) || self.action in"),
    ],
)
def test_cel_rules_are_present(kind: str, path: str, fragment: str) -> None:
    found = rules(kind).get(path, [])
    assert any(fragment in r["rule"] for r in found), f"{kind}{path}: {found}"


def test_int_or_string_fields_are_int_or_string() -> None:
    rollout = resolve(schema_of("NodeCluster"), ".spec.policies.rollout")
    assert rollout is not None
    for name, default in (("maxSurge", 1), ("maxUnavailable", 0)):
        field = rollout["properties"][name]
        assert field["x-kubernetes-int-or-string"] is True
        assert "type" not in field and "anyOf" not in field
        assert field["default"] == default


# profile.labels become every ClusterNode's metadata.labels, so the API server must refuse
# there what it would refuse on metadata.labels (or every node create fails with 422 and
# the cluster never converges). The e2e suite proves the rules on a real API server; these
# tests pin the schema and run the rules' regular expressions (RE2 and Python's `re` agree
# on these) over Kubernetes' own examples.


def labels_schema(kind: str) -> dict[str, Any]:
    node = resolve(schema_of(kind), ".spec.profile.labels")
    assert node is not None
    return node


def regex_of(rule: dict[str, Any]) -> re.Pattern[str]:
    (pattern,) = re.findall(r"matches\('([^']*)'\)", rule["rule"])
    return re.compile(pattern)


@pytest.mark.parametrize("kind", ["NodeCluster", "ClusterNode"])
def test_profile_labels_are_bounded_string_maps(kind: str) -> None:
    labels = labels_schema(kind)
    assert labels["type"] == "object"
    # The CEL cost estimate is multiplied by the map's largest size: unbounded, the rules
    # would not fit the API server's budget.
    assert labels["maxProperties"] == 64
    assert labels["additionalProperties"]["type"] == "string"
    assert labels["additionalProperties"]["maxLength"] == 63


@pytest.mark.parametrize("kind", ["NodeCluster", "ClusterNode"])
def test_every_label_key_rule_names_an_offending_key(kind: str) -> None:
    key_rules = labels_schema(kind)["x-kubernetes-validations"]
    assert len(key_rules) == 3
    for rule in key_rules:
        assert rule["rule"].startswith("self.all(k, ")
        assert "self.filter(k, " in rule["messageExpression"]
        assert rule["message"].startswith("label key")


def test_the_operators_own_label_prefix_is_forbidden() -> None:
    reserved = [
        r
        for r in labels_schema("NodeCluster")["x-kubernetes-validations"]
        if "reserved" in r["message"]
    ]
    assert [r["reason"] for r in reserved] == ["FieldValueForbidden"]
    assert "!k.startsWith('nodecluster.io/')" in reserved[0]["rule"]


VALID_VALUES = ["", "a", "MyValue", "my_value", "12345", "v1.2-rc_3", "v" * 63]
INVALID_VALUES = ["Batch Jobs", "-a", "a-", "_a", "a.", "é", "a/b", "a:b"]


def test_the_label_value_rule_matches_what_kubernetes_accepts() -> None:
    (rule,) = labels_schema("NodeCluster")["additionalProperties"]["x-kubernetes-validations"]
    assert rule["message"].startswith("label values must be")
    value = regex_of(rule)
    assert [v for v in VALID_VALUES if not value.search(v)] == []
    assert [v for v in INVALID_VALUES if value.search(v)] == []


VALID_KEYS = ["a", "MyName", "my.name", "123-abc", "example.com/MyName", "k" * 63, "a.b-c/x"]
INVALID_KEYS = ["", "bad key", "a/b/c", "-a", "a-", "a/", "ä", "a/-b"]


def test_the_label_key_name_rule_matches_what_kubernetes_accepts() -> None:
    name_rule, _prefix_rule, _reserved = labels_schema("NodeCluster")["x-kubernetes-validations"]
    name = regex_of(name_rule)
    assert [k for k in VALID_KEYS if not name.search(k)] == []
    assert [k for k in INVALID_KEYS if name.search(k)] == []


VALID_PREFIXES = ["a", "example.com", "my-corp.example.com", "0.a"]
INVALID_PREFIXES = ["", "Example.com", "example_corp", "-a", "a-", "a..b", ".a", "a."]


def test_the_label_key_prefix_rule_matches_what_kubernetes_accepts() -> None:
    _name_rule, prefix_rule, _reserved = labels_schema("NodeCluster")["x-kubernetes-validations"]
    assert "<= 253" in prefix_rule["rule"]
    prefix = regex_of(prefix_rule)
    assert [p for p in VALID_PREFIXES if not prefix.search(p)] == []
    assert [p for p in INVALID_PREFIXES if prefix.search(p)] == []
