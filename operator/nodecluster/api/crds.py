"""Generate the CustomResourceDefinitions from the pydantic models.

The models are the one source of truth: `nodecluster-operator crds` prints what this
module builds, `crds/` holds that output, and a unit test fails when they drift.

pydantic emits JSON Schema; the API server wants a *structural* OpenAPI v3 schema. The
differences handled here: no `$ref` (definitions are inlined), optionals become
`nullable` instead of `anyOf [..., null]`, free-form maps become
`x-kubernetes-preserve-unknown-fields`, and JSON-Schema-only keywords go.

Descriptions are what `kubectl explain` prints, so they are written for a platform engineer,
and each comes from one of two places:

- a field's `Field(description=...)`: what the field decides, its default, its unit;
- a model's `explain` class attribute (api/common.py, CamelModel): what an object of that
  model decides, wherever it appears. Not the model's docstring: docstrings explain the
  code to its developers ("why" notes, invariants, history) and would read as noise, or
  mislead, in `kubectl explain`; the schema hook of CamelModel puts `explain` in their place.

Where a field's type is a model (`policies.deletion: DeletionPolicy`), the object's
description is the model's `explain` followed by the field's description, which then says
only what is particular to this use (`Immutable.`, `With --nodes.`) or nothing. The field's
text used to replace the model's, and a field written as a label ("Deletion policy.")
turned the policy's explanation into a restatement of its name. A model used as list items
or map values describes those items; `spec` and `status` are described by their models, and
the whole object by `KindInfo.description`. tests/unit/test_crd_descriptions.py holds every
description to this: present, more than a word, not a restatement of the field's name, its
default and its unit said.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel

from nodecluster import GROUP, VERSION
from nodecluster.api.clusternode import ClusterNodeSpec, ClusterNodeStatus
from nodecluster.api.nodecluster import NodeClusterSpec, NodeClusterStatus
from nodecluster.api.nodeprovider import NodeProviderSpec, NodeProviderStatus
from nodecluster.api.operation import NodeClusterOperationSpec, NodeClusterOperationStatus
from nodecluster.api.receiver import NodeClusterReceiverSpec, NodeClusterReceiverStatus
from nodecluster.api.warmpool import POOL_LABEL

CATEGORY = "nodecluster-all"
"""`kubectl get nodecluster-all` lists every kind of the project. Not `nodecluster`:
kubectl resolves a category before a singular name, so that category would turn
`kubectl get nodecluster NAME` into a lookup across all kinds and break it."""


@dataclass(frozen=True)
class KindInfo:
    """Everything about a kind that is not its schema."""

    kind: str
    plural: str
    singular: str
    short: str
    scope: str
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    columns: list[dict[str, Any]] = field(default_factory=list)
    scale: dict[str, str] | None = None
    root_rules: list[dict[str, str]] = field(default_factory=list)
    """CEL rules on the whole object (the only place metadata.name can be checked)."""


POOL_COLUMN = ".metadata.labels." + POOL_LABEL.replace(".", "\\.")
"""The jsonPath of the ClusterNode's warm-pool label (dots in a label key escaped)."""


def _age() -> dict[str, Any]:
    return {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


KINDS: list[KindInfo] = [
    KindInfo(
        kind="NodeProvider",
        plural="nodeproviders",
        singular="nodeprovider",
        short="np",
        scope="Cluster",
        spec=NodeProviderSpec,
        status=NodeProviderStatus,
        description="Where machines come from: a driver (aws, kwok, simulator, or a plugin), "
        "its settings and credentials, the zones and machine types it offers with their "
        "prices, and quotas on what all NodeClusters may take from it. Cluster-scoped, "
        "usually owned by a platform team.",
        columns=[
            {"name": "Driver", "type": "string", "jsonPath": ".spec.driver"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Nodes", "type": "integer", "jsonPath": ".status.nodes"},
            {"name": "Month-Cost", "type": "number", "jsonPath": ".status.usage.currentMonth.cost"},
            _age(),
        ],
    ),
    KindInfo(
        kind="NodeCluster",
        plural="nodeclusters",
        singular="nodecluster",
        short="nc",
        scope="Namespaced",
        spec=NodeClusterSpec,
        status=NodeClusterStatus,
        description="A group of compute machines (nodes) kept at the size and state declared "
        "in spec: the operator creates, replaces, stops and deletes machines at a "
        "NodeProvider until what exists matches, one ClusterNode per machine, and reports "
        "progress in status, conditions and Events.",
        columns=[
            {"name": "Provider", "type": "string", "jsonPath": ".spec.providerRef.name"},
            {"name": "Target", "type": "integer", "jsonPath": ".spec.targetNodes"},
            {"name": "Current", "type": "integer", "jsonPath": ".status.currentNodes"},
            {"name": "Ready", "type": "integer", "jsonPath": ".status.readyNodes"},
            {"name": "Warm", "type": "integer", "jsonPath": ".status.warmNodes"},
            {"name": "State", "type": "string", "jsonPath": ".status.state"},
            # Accrued up to status.usage.asOf (at most an hour behind while machines run):
            # `nodecluster-operator usage` brings it up to now.
            {"name": "Month-Cost", "type": "number", "jsonPath": ".status.usage.currentMonth.cost"},
            _age(),
        ],
        scale={
            "specReplicasPath": ".spec.targetNodes",
            "statusReplicasPath": ".status.currentNodes",
            "labelSelectorPath": ".status.selector",
        },
        root_rules=[
            {
                # Node names are `<cluster>-<5 chars>` and the cluster name is a label
                # value: both must stay within 63 characters.
                "rule": "self.metadata.name.size() <= 57",
                "message": "metadata.name: a NodeCluster name may have at most 57 characters "
                "(its nodes are named <name>-xxxxx, and the name is used as a label value)",
            }
        ],
    ),
    KindInfo(
        kind="ClusterNode",
        plural="clusternodes",
        singular="clusternode",
        short="cn",
        scope="Namespaced",
        spec=ClusterNodeSpec,
        status=ClusterNodeStatus,
        description="One member machine of a NodeCluster, created and deleted by it and "
        "driven at its provider. Deleting one by hand deletes its machine, and the cluster "
        "makes a new node to keep its target (a RemoveNodes operation lowers the target too).",
        columns=[
            {"name": "Cluster", "type": "string", "jsonPath": ".spec.clusterName"},
            {"name": "State", "type": "string", "jsonPath": ".status.state"},
            {"name": "Provider-ID", "type": "string", "jsonPath": ".status.providerId"},
            {"name": "Node", "type": "string", "jsonPath": ".status.nodeRef.name"},
            {"name": "Zone", "type": "string", "jsonPath": ".status.zone"},
            {"name": "Hook", "type": "string", "jsonPath": ".status.lifecycleHook.name"},
            # The warm pool's label (api/warmpool.py): "warm", or empty for a serving node.
            {"name": "Pool", "type": "string", "jsonPath": POOL_COLUMN},
            _age(),
        ],
    ),
    KindInfo(
        kind="NodeClusterOperation",
        plural="nodeclusteroperations",
        singular="nodeclusteroperation",
        short="nco",
        scope="Namespaced",
        spec=NodeClusterOperationSpec,
        status=NodeClusterOperationStatus,
        description="A one-off, auditable action on a NodeCluster: Check, Recover, "
        "ScaleOut, ScaleIn, Remove, Replace, Stop, Start or Reboot chosen nodes, or Adopt "
        "machines made without the operator. Create one to act; its status is the record "
        "of what happened.",
        columns=[
            {"name": "Cluster", "type": "string", "jsonPath": ".spec.clusterName"},
            {"name": "Action", "type": "string", "jsonPath": ".spec.action"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            _age(),
        ],
    ),
    KindInfo(
        kind="NodeClusterReceiver",
        plural="nodeclusterreceivers",
        singular="nodeclusterreceiver",
        short="ncr",
        scope="Namespaced",
        spec=NodeClusterReceiverSpec,
        status=NodeClusterReceiverStatus,
        description="An HTTP trigger (a webhook with a bearer token) that creates a "
        "NodeClusterOperation: Senlin's receiver, for Alertmanager and scripts.",
        columns=[
            {"name": "Cluster", "type": "string", "jsonPath": ".spec.clusterName"},
            {"name": "Action", "type": "string", "jsonPath": ".spec.action"},
            {
                "name": "Ready",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
            },
            {"name": "Triggered", "type": "integer", "jsonPath": ".status.counts.triggered"},
            {"name": "Last-Triggered", "type": "date", "jsonPath": ".status.lastTriggered.time"},
            _age(),
        ],
    ),
]

_API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. "
    "Servers should convert recognized schemas to the latest internal value, and may "
    "reject unrecognized values."
)
_KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. "
    "Servers may infer this from the endpoint the client submits requests to. "
    "Cannot be updated. In CamelCase."
)

_DROP = {"title", "additionalProperties", "$defs", "const", "discriminator"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Rewrite one pydantic JSON-Schema node into a structural OpenAPI v3 node."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        merged = {**copy.deepcopy(target), **node}
        merged = _describe(merged, target.get("description"), node.get("description"))
        return _structural(merged, defs)
    if node.get("x-kubernetes-int-or-string"):
        out = {k: v for k, v in node.items() if k not in {"anyOf", "type", "title", "default"}}
        if "default" in node and node["default"] is not None:
            out["default"] = node["default"]
        return out
    any_of = node.get("anyOf")
    if any_of is not None:
        non_null = [s for s in any_of if s.get("type") != "null"]
        if len(non_null) == 1 and len(non_null) < len(any_of):
            del node["anyOf"]
            inner = _structural(non_null[0], defs)
            outer = _structural_tail(node, defs)
            merged = _describe(
                {**inner, **outer}, inner.get("description"), outer.get("description")
            )
            merged["nullable"] = True
            return merged
    if "const" in node:
        node.setdefault("enum", [node["const"]])
    if node.get("type") == "object" and "properties" not in node:
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            node["additionalProperties"] = _structural(extra, defs)
            return _structural_tail(node, defs, keep_additional=True)
        node["x-kubernetes-preserve-unknown-fields"] = True
    return _structural_tail(node, defs)


def _describe(node: dict[str, Any], of_model: str | None, of_field: str | None) -> dict[str, Any]:
    """`node` described by its model's text, then its field's (see the module docstring)."""
    text = " ".join(t for t in (of_model, of_field) if t)
    if text:
        node["description"] = text
    return node


def _structural_tail(
    node: dict[str, Any], defs: dict[str, Any], keep_additional: bool = False
) -> Any:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP and not (keep_additional and key == "additionalProperties"):
            continue
        if key == "default" and value is None:
            continue
        if key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key in {"items", "additionalProperties"}:
            out[key] = _structural(value, defs)
        else:
            out[key] = value
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural schema of one model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema = _structural(raw, defs)
    assert isinstance(schema, dict)
    return schema


def crd(info: KindInfo) -> dict[str, Any]:
    """One CustomResourceDefinition."""
    spec_schema = openapi_schema(info.spec)
    status_schema = openapi_schema(info.status)
    subresources: dict[str, Any] = {"status": {}}
    if info.scale:
        subresources["scale"] = dict(info.scale)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{info.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": info.scope,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": [info.short],
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": subresources,
                    "additionalPrinterColumns": info.columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": info.description,
                            **(
                                {"x-kubernetes-validations": info.root_rules}
                                if info.root_rules
                                else {}
                            ),
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": _API_VERSION_DOC},
                                "kind": {"type": "string", "description": _KIND_DOC},
                                # The API server rejects anything but `type` here (not even
                                # a description): metadata's schema is its own.
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def all_crds() -> list[dict[str, Any]]:
    """Every CRD, in a stable order."""
    return [crd(info) for info in KINDS]


def render(doc: dict[str, Any]) -> str:
    """YAML as committed under crds/: stable key order so diffs stay readable."""
    header = "# Generated by `nodecluster-operator crds --write crds/`. Do not edit.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, width=100)


def crd_files() -> dict[str, str]:
    """File name -> content, as written under crds/."""
    return {f"{GROUP}_{info.plural}.yaml": render(crd(info)) for info in KINDS}
