"""Nodes as machines (nodecluster.providers.kwok.nodes): what a Node carries, how a machine's
state is read off it, and that the driver, its stages and tools/kwok.py say the same."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodecluster.providers.base import MachineSpec
from nodecluster.providers.identity import MachineIdentity, machine_name
from nodecluster.providers.kwok import STAGES
from nodecluster.providers.kwok import nodes as kn

ROOT = Path(__file__).resolve().parents[3]
IDENTITY = MachineIdentity("blue", "team-a", "web", "web-7kq2x", "0b1c6b1e-2f3a-4c5d")


def spec(**changes: Any) -> MachineSpec:
    fields: dict[str, Any] = {
        "name": machine_name(IDENTITY),
        "cluster": "team-a/web",
        "machine_type": "small",
        "zone": "zone-a",
        "labels": {"team": "batch"},
        "tags": IDENTITY.tags(),
    }
    fields.update(changes)
    return MachineSpec(**fields)


def body(machine: MachineSpec | None = None, **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "provider": "kwok",
        "zone": "zone-a",
        "shape": kn.Shape(cores=2, memory_mib=4096, pods=110),
        "boot_id": "b1",
        "ready_delay_ms": 1500,
    }
    options.update(kwargs)
    return kn.node_body(machine or spec(), **options)


def test_a_node_carries_the_machine_and_its_identity() -> None:
    node = body()
    metadata = node["metadata"]

    assert metadata["name"] == machine_name(IDENTITY)
    assert node["spec"]["providerID"] == f"kwok://{machine_name(IDENTITY)}"
    assert metadata["labels"] | IDENTITY.tags() == metadata["labels"]  # identity as labels
    assert json.loads(metadata["annotations"][kn.TAGS]) == IDENTITY.tags()  # and exactly
    assert metadata["labels"]["team"] == "batch"
    assert metadata["labels"][kn.KWOK_NODE] == metadata["annotations"][kn.KWOK_NODE] == "fake"
    assert metadata["labels"][kn.INSTANCE_TYPE] == "small"
    assert metadata["labels"][kn.ZONE] == "zone-a"
    assert metadata["annotations"][kn.READY_DELAY] == "1500ms"
    assert metadata["annotations"][kn.BOOT_ID] == "b1"
    assert node["status"]["capacity"] == {"cpu": "2", "memory": "4096Mi", "pods": "110"}
    assert node["status"]["allocatable"] == node["status"]["capacity"]
    assert [a["type"] for a in node["status"]["addresses"]] == ["InternalIP", "Hostname"]


def test_a_profile_label_cannot_hide_the_drivers_own() -> None:
    node = body(spec(labels={kn.ZONE: "elsewhere", kn.KWOK_NODE: "real", kn.PROVIDER: "x"}))
    labels = node["metadata"]["labels"]

    assert (labels[kn.ZONE], labels[kn.KWOK_NODE], labels[kn.PROVIDER]) == (
        "zone-a",
        "fake",
        "kwok",
    )


def test_values_too_long_for_a_label_are_shortened_there_and_exact_in_the_annotations() -> None:
    long_node = "n" * 200
    identity = MachineIdentity("blue", "team-a", "c" * 240, long_node, "uid-1")
    machine = spec(cluster=f"team-a/{'c' * 240}", tags=identity.tags())
    node = body(machine)
    labels, annotations = node["metadata"]["labels"], node["metadata"]["annotations"]

    assert all(kn.is_label_value(value) for value in labels.values())
    assert labels["nodecluster.io/node"] != long_node
    assert json.loads(annotations[kn.TAGS]) == identity.tags()
    assert annotations[kn.CLUSTER_REF] == machine.cluster
    assert kn.to_machine(node).cluster == machine.cluster
    assert kn.to_machine(node).tags == identity.tags()
    # Selection by the shortened label finds it; the exact annotation confirms it.
    selector = dict(t.split("=") for t in kn.provider_selector("kwok", machine.cluster).split(","))
    assert all(labels[key] == value for key, value in selector.items())
    assert kn.is_providers(node, "kwok", machine.cluster)
    assert not kn.is_providers(node, "kwok", "team-a/other")
    assert not kn.is_providers(node, "other")


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("web", True),
        ("blue.3f9a0c21", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("team-a/web", False),
        ("-web", False),
        ("", True),
    ],
)
def test_label_values(text: str, kept: bool) -> None:
    value = kn.label_value(text)

    assert kn.is_label_value(value)
    assert (value == text) is kept
    assert kn.label_value(text) == value  # stable
    if not kept:
        assert kn.label_value(text + "x") != value  # two long values still differ


def node_in(
    *,
    power: str | None = None,
    ready: tuple[str, str] | None = None,
    booted: str | None = "b1",
    boot_id: str = "b1",
    deleting: bool = False,
) -> dict[str, Any]:
    node = body(boot_id=boot_id)
    if power is not None:
        node["metadata"]["annotations"][kn.POWER] = power
    if deleting:
        node["metadata"]["deletionTimestamp"] = "2026-12-02T10:00:00Z"
    if ready is not None:
        status, reason = ready
        node["status"]["conditions"] = [{"type": "Ready", "status": status, "reason": reason}]
        node["status"]["nodeInfo"] = {"bootID": booted}
    return node


@pytest.mark.parametrize(
    ("node", "state"),
    [
        (node_in(), "Provisioning"),  # kwok has not booted it yet
        (node_in(ready=("True", "KubeletReady")), "Running"),
        (node_in(power="On", ready=("True", "KubeletReady")), "Running"),
        (node_in(power="Off", ready=("True", "KubeletReady")), "Stopping"),
        (node_in(power="Off", ready=("False", kn.STOPPED_REASON)), "Stopped"),
        (node_in(power="Off"), "Stopped"),  # stopped before it ever booted
        (node_in(power="On", ready=("False", kn.STOPPED_REASON), boot_id="b2"), "Starting"),
        (node_in(ready=("True", "KubeletReady"), boot_id="b2"), "Rebooting"),  # not yet down
        (node_in(ready=("False", kn.REBOOTING_REASON), boot_id="b2"), "Rebooting"),
        (node_in(ready=("Unknown", "NodeStatusUnknown")), "Running"),  # its kubelet is silent
        (node_in(ready=("True", "KubeletReady"), deleting=True), "Deleting"),
    ],
    ids=[
        "new",
        "booted",
        "started",
        "stopping",
        "stopped",
        "stopped-unbooted",
        "starting",
        "reboot-asked",
        "rebooting",
        "kubelet-silent",
        "deleting",
    ],
)
def test_the_state_is_read_off_the_node(node: dict[str, Any], state: str) -> None:
    assert kn.machine_state(node) == state


@pytest.mark.parametrize(
    ("cpu", "cores"), [("2", 2), ("1500m", 2), ("2000m", 2), ("250m", 1), ("0.5", 1), ("x", 1)]
)
def test_cores_are_whole(cpu: str, cores: int) -> None:
    node = body()
    node["status"]["capacity"]["cpu"] = cpu
    assert kn.cores_of(node) == cores


def test_a_machine_from_a_booted_node() -> None:
    node = node_in(ready=("True", "KubeletReady"))
    node["metadata"]["creationTimestamp"] = "2026-12-02T10:00:00Z"
    machine = kn.to_machine(node)

    assert machine.name == machine_name(IDENTITY)
    assert machine.provider_id == f"kwok://{machine.name}"
    assert (machine.cluster, machine.machine_type, machine.zone) == (
        "team-a/web",
        "small",
        "zone-a",
    )
    assert (machine.state, machine.cores) == ("Running", 2)
    assert machine.created_at.isoformat() == "2026-12-02T10:00:00+00:00"
    assert machine.addresses[1] == ("Hostname", machine.name)
    assert machine.tags == IDENTITY.tags()
    assert kn.to_machine(node, "Rebooting").state == "Rebooting"


def test_a_nodes_fake_address_is_stable_and_never_a_network_or_broadcast_address() -> None:
    addresses = {kn.fake_address(f"web-{i}") for i in range(500)}

    assert kn.fake_address("web-1") == kn.fake_address("web-1")
    assert len(addresses) == 500
    assert all(a.startswith("10.") and a.rsplit(".", 1)[1] not in ("0", "255") for a in addresses)


def test_the_stopped_taint_is_the_drivers_only() -> None:
    node = body()
    node["spec"]["taints"] = [
        {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
        kn.stopped_taint(),
    ]

    assert kn.without_stopped_taint(node) == [
        {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
    ]


def stages() -> dict[str, dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(STAGES.read_text()) if doc]
    return {doc["metadata"]["name"]: doc for doc in docs}


def test_the_stages_read_and_write_what_the_driver_writes_and_reads() -> None:
    """The driver and its stages are one design in two files: the keys and reasons must
    agree, or stop and reboot would wait for what never comes."""
    found = stages()
    text = STAGES.read_text()

    assert set(found) == {
        "nodecluster-node-boot",
        "nodecluster-node-power-off",
        "nodecluster-node-reboot",
        "nodecluster-pod-running",
        "nodecluster-pod-gone",
    }
    assert all(doc["kind"] == "Stage" for doc in found.values())
    for key in (kn.PROVIDER, kn.POWER, kn.BOOT_ID, kn.READY_DELAY):
        assert f'"{key}"' in text
    assert f"reason: {kn.STOPPED_REASON}" in text
    assert f"reason: {kn.REBOOTING_REASON}" in text
    off = [e for e in found["nodecluster-node-power-off"]["spec"]["selector"]["matchExpressions"]]
    assert {
        "key": f'.metadata.annotations["{kn.POWER}"]',
        "operator": "In",
        "values": [kn.POWER_OFF],
    } in off
    for name in ("nodecluster-node-boot", "nodecluster-node-power-off", "nodecluster-node-reboot"):
        keys = [e["key"] for e in found[name]["spec"]["selector"]["matchExpressions"]]
        assert f'.metadata.labels["{kn.PROVIDER}"]' in keys  # only the driver's Nodes


def test_tools_kwok_starts_kwok_as_the_driver_expects() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    import kwok

    process = kwok.KwokProcess("/k/config", "/tmp/kwok.log", binary="/bin/kwok")

    assert Path(kwok.STAGES) == STAGES
    assert kwok.SELECTOR == kn.KWOK_SELECTOR
    assert f"--manage-nodes-with-label-selector={kn.KWOK_SELECTOR}" in process.command()
    assert f"--config={STAGES}" in process.command()
    assert "--manage-all-nodes=false" in process.command()
