"""Kubernetes Nodes as the operator sees machines: names, labels, annotations, states.

A kwok machine *is* a Node object. The driver plays the cloud and kwok plays the kubelet,
and each writes only its own half, as a cloud and a kubelet do:

- the driver writes the Node's metadata and spec: it creates the Node (with the capacity
  of its machine type in `status`, as a kubelet registers one), marks it powered off or
  on, asks for a reboot, and deletes it;
- kwok, running the stages in `stages.yaml` next to this module, writes `status`: it
  makes a new Node Ready (after `nodecluster.io/ready-delay`), NotReady when its power
  annotation says Off, NotReady and then Ready again when its boot id changes.

So no field has two writers, and `get` reads the machine's state off the Node: what the
driver asked for (its annotations) against what "the kubelet" reported (the Ready
condition and `status.nodeInfo.bootID`).

What a Node carries:

    metadata.name                          the machine name (a DNS label: a valid Node name)
    spec.providerID                        kwok://<name>
    label kwok.x-k8s.io/node=fake          what kwok is started to manage (its label selector),
                                           as kwok's docs and Karpenter's kwok provider mark
                                           fake Nodes; also an annotation, for a kwok that
                                           selects by annotation
    label+annotation nodecluster.io/provider     the NodeProvider (`list` selects on it)
    label+annotation nodecluster.io/cluster-ref  `<namespace>/<cluster>` (`list(cluster)`)
    labels nodecluster.io/installation, namespace, cluster, node, node-uid
                                           the identity, for `kubectl get nodes -l`
    annotation nodecluster.io/tags         the identity, exactly (JSON): what `Machine.tags`
                                           is read from
    node.kubernetes.io/instance-type, topology.kubernetes.io/zone, kubernetes.io/hostname,
    kubernetes.io/os, kubernetes.io/arch   the well-known labels a kubelet and a cloud set
    annotation nodecluster.io/power        Off while stopped (On, or absent, otherwise)
    annotation nodecluster.io/boot-id      changed by start and reboot; kwok copies it to
                                           status.nodeInfo.bootID when the Node boots
    annotation nodecluster.io/ready-delay  how long kwok waits before a boot ends (Go duration)
    taint nodecluster.io/stopped:NoSchedule  while stopped

Label values are at most 63 characters of a restricted alphabet, and a ClusterNode's name or
a cluster reference may not fit: such a value is shortened with a hash of its whole
(`label_value`) for selection, and the exact value is in an annotation, which `list` and
`get` check. Profile labels become Node labels too; the driver's own win over them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from nodecluster.providers.base import Machine, MachineSpec, MachineState
from nodecluster.providers.identity import (
    CLUSTER_TAG,
    INSTALLATION_TAG,
    NAMESPACE_TAG,
    NODE_TAG,
    NODE_UID_TAG,
)

PROVIDER_ID_PREFIX = "kwok://"

KWOK_NODE = "kwok.x-k8s.io/node"
KWOK_NODE_VALUE = "fake"
KWOK_SELECTOR = f"{KWOK_NODE}={KWOK_NODE_VALUE}"
"""kwok's `--manage-nodes-with-label-selector` (or `--manage-nodes-with-annotation-selector`):
kwok then manages these Nodes and no other, so it never takes over a real kubelet's Node."""

PROVIDER = "nodecluster.io/provider"
CLUSTER_REF = "nodecluster.io/cluster-ref"
TAGS = "nodecluster.io/tags"
POWER = "nodecluster.io/power"
BOOT_ID = "nodecluster.io/boot-id"
READY_DELAY = "nodecluster.io/ready-delay"
IMAGE = "nodecluster.io/image"
STOPPED_TAINT = "nodecluster.io/stopped"

POWER_ON = "On"
POWER_OFF = "Off"

STOPPED_REASON = "MachineStopped"
"""The Ready condition's reason while the power annotation says Off (set by kwok's stage)."""
REBOOTING_REASON = "Rebooting"
"""The Ready condition's reason between a new boot id and the end of that boot."""

INSTANCE_TYPE = "node.kubernetes.io/instance-type"
ZONE = "topology.kubernetes.io/zone"
HOSTNAME = "kubernetes.io/hostname"
OS = "kubernetes.io/os"
ARCH = "kubernetes.io/arch"

IDENTITY_LABELS = (INSTALLATION_TAG, NAMESPACE_TAG, CLUSTER_TAG, NODE_TAG, NODE_UID_TAG)
"""Identity tags that are also labels (shortened when they do not fit)."""

MAX_LABEL_VALUE = 63
HASH_DIGITS = 10
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NOT_IN_A_LABEL_VALUE = re.compile(r"[^-A-Za-z0-9_.]+")


def label_value(text: str) -> str:
    """`text` as a label value: itself when it is one, else a readable prefix and 10 hex
    digits of a hash of the whole (so two long values still differ)."""
    if len(text) <= MAX_LABEL_VALUE and _LABEL_VALUE.match(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:HASH_DIGITS]
    prefix = _NOT_IN_A_LABEL_VALUE.sub("-", text)[: MAX_LABEL_VALUE - HASH_DIGITS - 1]
    prefix = prefix.strip("-_.")
    return f"{prefix}-{digest}" if prefix else digest


def is_label_value(text: str) -> bool:
    """Whether the API server accepts `text` as a label value."""
    return len(text) <= MAX_LABEL_VALUE and bool(_LABEL_VALUE.match(text))


def provider_selector(provider: str, cluster: str | None = None) -> str:
    """The label selector of a NodeProvider's Nodes (of one cluster)."""
    selector = f"{PROVIDER}={label_value(provider)}"
    if cluster is not None:
        selector += f",{CLUSTER_REF}={label_value(cluster)}"
    return selector


@dataclass(frozen=True)
class Shape:
    """What a machine type gives a Node: its capacity."""

    cores: int
    memory_mib: int
    pods: int


def fake_address(name: str) -> str:
    """A stable InternalIP for a Node, from its name: 10.x.y.z, z never 0 or 255.

    Unique enough for operations that pick nodes by address (24 bits: two of a thousand
    Nodes share one about three times in a hundred thousand), and nothing routes to it."""
    digest = hashlib.sha256(name.encode()).digest()
    return f"10.{digest[0]}.{digest[1]}.{1 + digest[2] % 254}"


def node_body(
    spec: MachineSpec,
    *,
    provider: str,
    zone: str,
    shape: Shape,
    boot_id: str,
    ready_delay_ms: int,
) -> dict[str, Any]:
    """The Node a create posts: metadata, providerID and the capacity of its type."""
    labels: dict[str, str] = dict(spec.labels)
    labels.update({key: label_value(spec.tags[key]) for key in IDENTITY_LABELS if key in spec.tags})
    labels.update(
        {
            KWOK_NODE: KWOK_NODE_VALUE,
            PROVIDER: label_value(provider),
            CLUSTER_REF: label_value(spec.cluster),
            INSTANCE_TYPE: spec.machine_type,
            ZONE: zone,
            HOSTNAME: label_value(spec.name),
            OS: "linux",
            ARCH: "amd64",
        }
    )
    annotations = {
        KWOK_NODE: KWOK_NODE_VALUE,
        PROVIDER: provider,
        CLUSTER_REF: spec.cluster,
        TAGS: json.dumps(dict(spec.tags), sort_keys=True, separators=(",", ":")),
        BOOT_ID: boot_id,
        READY_DELAY: f"{ready_delay_ms}ms",
    }
    if spec.image:
        annotations[IMAGE] = spec.image
    resources = {
        "cpu": str(shape.cores),
        "memory": f"{shape.memory_mib}Mi",
        "pods": str(shape.pods),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": spec.name, "labels": labels, "annotations": annotations},
        "spec": {"providerID": f"{PROVIDER_ID_PREFIX}{spec.name}"},
        "status": {
            "capacity": resources,
            "allocatable": dict(resources),
            "addresses": [
                {"type": "InternalIP", "address": fake_address(spec.name)},
                {"type": "Hostname", "address": spec.name},
            ],
        },
    }


def _metadata(node: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata: Mapping[str, Any] = node.get("metadata") or {}
    return metadata


def annotations_of(node: Mapping[str, Any]) -> Mapping[str, str]:
    """The Node's annotations."""
    annotations: Mapping[str, str] = _metadata(node).get("annotations") or {}
    return annotations


def labels_of(node: Mapping[str, Any]) -> Mapping[str, str]:
    """The Node's labels."""
    labels: Mapping[str, str] = _metadata(node).get("labels") or {}
    return labels


def is_providers(node: Mapping[str, Any], provider: str, cluster: str | None = None) -> bool:
    """Whether the Node was made by this NodeProvider (of this cluster): the exact
    annotations, not the labels, which may be shortened."""
    annotations = annotations_of(node)
    if annotations.get(PROVIDER) != provider:
        return False
    return cluster is None or annotations.get(CLUSTER_REF) == cluster


def ready_condition(node: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The Node's Ready condition; None before kwok first booted it."""
    for condition in (node.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            found: Mapping[str, Any] = condition
            return found
    return None


def machine_state(node: Mapping[str, Any]) -> MachineState:
    """The machine's state: what the driver asked for (the annotations) against what kwok
    reported (the Ready condition and the boot id).

    Booted means kwok finished the boot the driver asked for last: Ready, with the boot id
    of the annotation. A Node NotReady for another reason (kwok stopped, the node lifecycle
    controller's `Unknown`) is still a powered-on machine, Running, as a cloud reports an
    instance whose kubelet died: the Node's own health is the Node's to tell."""
    if _metadata(node).get("deletionTimestamp"):
        return "Deleting"
    annotations = annotations_of(node)
    ready = ready_condition(node)
    up = ready is not None and ready.get("status") == "True"
    if annotations.get(POWER) == POWER_OFF:
        return "Stopping" if up else "Stopped"
    if ready is None:
        return "Provisioning"
    booted = ((node.get("status") or {}).get("nodeInfo") or {}).get("bootID")
    if up:
        return "Running" if booted == annotations.get(BOOT_ID) else "Rebooting"
    if ready.get("reason") == REBOOTING_REASON:
        return "Rebooting"
    if ready.get("reason") == STOPPED_REASON:
        return "Starting"
    return "Running"


def cores_of(node: Mapping[str, Any]) -> int:
    """Whole cores of the Node's capacity (at least 1)."""
    raw = str(((node.get("status") or {}).get("capacity") or {}).get("cpu") or "1")
    try:
        cores = Decimal(raw[:-1]) / 1000 if raw.endswith("m") else Decimal(raw)
    except InvalidOperation:
        return 1
    return max(1, int(cores.to_integral_value(rounding="ROUND_CEILING")))


def tags_of(node: Mapping[str, Any]) -> dict[str, str]:
    """The identity the Node was created with (its tags annotation)."""
    raw = annotations_of(node).get(TAGS)
    if not raw:
        return {}
    try:
        tags = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(tags, dict):
        return {}
    return {str(key): str(value) for key, value in tags.items()}


def created_at(node: Mapping[str, Any]) -> datetime:
    """When the Node was created."""
    stamp = _metadata(node).get("creationTimestamp")
    if not stamp:
        return datetime.now(UTC)
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))


def addresses_of(node: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(type, address) pairs of the Node's status."""
    found: Sequence[Mapping[str, Any]] = (node.get("status") or {}).get("addresses") or ()
    return tuple(
        (str(item["type"]), str(item["address"]))
        for item in found
        if item.get("type") and item.get("address")
    )


def to_machine(node: Mapping[str, Any], state: MachineState | None = None) -> Machine:
    """The operator's view of one Node. `state` overrides the one read off the Node, for
    answers that know better (a reboot just asked for)."""
    name = str(_metadata(node).get("name", ""))
    labels = labels_of(node)
    provider_id = (node.get("spec") or {}).get("providerID") or f"{PROVIDER_ID_PREFIX}{name}"
    return Machine(
        name=name,
        provider_id=str(provider_id),
        cluster=annotations_of(node).get(CLUSTER_REF, ""),
        state=state or machine_state(node),
        machine_type=labels.get(INSTANCE_TYPE, ""),
        zone=labels.get(ZONE),
        cores=cores_of(node),
        created_at=created_at(node),
        addresses=addresses_of(node),
        tags=tags_of(node),
    )


def without_stopped_taint(node: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Node's taints but the driver's own: others' (the node lifecycle controller's
    `not-ready`, a person's) are kept as they are."""
    taints: Sequence[Mapping[str, Any]] = (node.get("spec") or {}).get("taints") or ()
    return [dict(taint) for taint in taints if taint.get("key") != STOPPED_TAINT]


def stopped_taint() -> dict[str, str]:
    """The taint of a powered-off Node: nothing new is scheduled there. A taint rather than
    a cordon (`spec.unschedulable`), which people and drains set for their own reasons and
    which a start must not undo."""
    return {"key": STOPPED_TAINT, "value": "true", "effect": "NoSchedule"}
