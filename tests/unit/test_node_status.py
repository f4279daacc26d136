"""planning.nodestatus: a ClusterNode's status from what its provider says (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from builders import NOW

from nodecluster.api.clusternode import ClusterNode, NodeState
from nodecluster.api.reasons import Reason
from nodecluster.planning.nodestatus import (
    status_deleting,
    status_from_error,
    status_from_machine,
    status_missing,
)


@dataclass(frozen=True)
class Machine:
    """What a provider reports (structurally a providers.base.Machine)."""

    state: NodeState = "Running"
    provider_id: str = "sim://web-b2c4d"
    zone: str | None = "zone-a"
    machine_type: str = "small"
    created_at: Any = NOW - timedelta(minutes=5)
    addresses: tuple[tuple[str, str], ...] = field(default=(("InternalIP", "10.0.0.4"),))


def cluster_node(power: str = "Running", **status: Any) -> ClusterNode:
    return ClusterNode.model_validate(
        {
            "metadata": {"name": "web-b2c4d", "namespace": "team-a", "generation": 2},
            "spec": {
                "clusterName": "web",
                "providerRef": {"name": "sim"},
                "profile": {"machineType": "small"},
                "powerState": power,
            },
            "status": status,
        }
    )


@pytest.mark.parametrize(
    ("state", "power", "ready", "reason", "unhealthy"),
    [
        ("Running", "Running", True, "MachineRunning", False),
        ("Stopped", "Stopped", False, "MachineStopped", False),
        ("Stopped", "Running", False, "MachineStopped", True),
        ("Failed", "Running", False, "MachineFailed", True),
        ("Provisioning", "Running", False, "MachineProvisioning", False),
    ],
)
def test_the_machine_state_decides_ready_and_since_when_unhealthy(
    state: NodeState, power: str, ready: bool, reason: str, unhealthy: bool
) -> None:
    status = status_from_machine(cluster_node(power), Machine(state=state), NOW)

    assert status.ready is ready
    assert status.state == state
    assert status.conditions[0].reason == reason
    assert status.conditions[0].observed_generation == 2
    assert (status.unhealthy_since == NOW) is unhealthy
    assert status.provider_id == "sim://web-b2c4d"
    assert [(a.type, a.address) for a in status.addresses] == [("InternalIP", "10.0.0.4")]


def test_unhealthy_since_keeps_its_first_time() -> None:
    earlier = NOW - timedelta(minutes=3)
    node = cluster_node(unhealthySince=earlier.isoformat(), state="Failed")

    status = status_from_machine(node, Machine(state="Failed"), NOW)

    assert status.unhealthy_since == earlier


def test_a_reboot_issued_now_is_recorded_and_an_old_one_kept() -> None:
    earlier = NOW - timedelta(hours=1)
    node = cluster_node(lastRebootTime=earlier.isoformat())

    assert (
        status_from_machine(node, Machine(state="Rebooting"), NOW, rebooted=True).last_reboot_time
        == NOW
    )
    assert status_from_machine(node, Machine(), NOW).last_reboot_time == earlier


@pytest.mark.parametrize(
    ("before", "machine", "rebooted", "restarted"),
    [
        # Up again after being down on purpose: restarted now.
        *[(s, "Running", False, True) for s in ("Stopped", "Starting", "Stopping", "Rebooting")],
        # A reboot that was over by the answer to it.
        ("Running", "Running", True, True),
        # Running all along, coming up the first time, or not up (yet): kept as it was.
        ("Running", "Running", False, False),
        ("Provisioning", "Running", False, False),
        ("Stopped", "Starting", False, False),
        ("Running", "Rebooting", True, False),
    ],
)
def test_a_machine_up_again_after_a_stop_or_a_reboot_records_when(
    before: NodeState, machine: NodeState, rebooted: bool, restarted: bool
) -> None:
    earlier = NOW - timedelta(days=2)
    node = cluster_node(state=before, restartedAt=earlier.isoformat())

    status = status_from_machine(node, Machine(state=machine), NOW, rebooted=rebooted)

    assert status.restarted_at == (NOW if restarted else earlier)
    # An error in between keeps it: the machine did not restart for a failed call.
    later = status_from_error(node, Reason.PROVIDER_UNAVAILABLE, "timed out", NOW)
    assert later.restarted_at == earlier


def test_an_error_keeps_what_is_known_and_says_why() -> None:
    node = cluster_node(state="Running", ready=True, providerId="sim://x")

    status = status_from_error(node, Reason.PROVIDER_UNAVAILABLE, "timed out", NOW)

    assert status.state == "Running"
    assert status.provider_id == "sim://x"
    assert status.message == "timed out"
    assert status.conditions[0].status == "False"
    assert status.conditions[0].reason == "ProviderUnavailable"


def test_an_error_before_any_machine_leaves_the_node_pending() -> None:
    status = status_from_error(cluster_node(), Reason.QUOTA_EXCEEDED, "no room", NOW)

    assert status.state == "Pending"
    assert status.ready is False


RUNNING = {
    "state": "Running",
    "ready": True,
    "providerId": "sim://zone-a/i-00000007",
    "addresses": [{"type": "InternalIP", "address": "10.0.0.7"}],
    "lastRebootTime": (NOW - timedelta(hours=2)).isoformat(),
}


@pytest.mark.parametrize(
    ("before", "unhealthy_since"),
    [
        ({**RUNNING}, NOW),
        ({**RUNNING, "state": "Failed", "ready": False}, NOW),
        (
            {**RUNNING, "unhealthySince": (NOW - timedelta(minutes=3)).isoformat()},
            NOW - timedelta(minutes=3),
        ),
        ({**RUNNING, "providerId": None}, NOW),
    ],
    ids=["was-running", "was-failed", "unhealthy-earlier", "no-provider-id"],
)
def test_a_vanished_machine_is_failed_and_says_it_is_missing(
    before: dict[str, Any], unhealthy_since: Any
) -> None:
    status = status_missing(cluster_node(**before), NOW)

    ready = status.conditions[0]
    assert (ready.type, ready.status, ready.reason) == ("Ready", "False", Reason.MACHINE_MISSING)
    assert ready.message == status.message
    assert status.message is not None
    assert "web-b2c4d no longer exists at the provider" in status.message
    if before["providerId"]:
        assert before["providerId"] in status.message
    assert (status.state, status.ready) == ("Failed", False)
    assert status.unhealthy_since == unhealthy_since
    assert status.observed_generation == 2
    assert status.provider_id == before["providerId"]  # names the machine that vanished
    assert status.addresses == []
    assert status.last_reboot_time == NOW - timedelta(hours=2)


def test_a_deleting_node_says_how_long_it_drains() -> None:
    node = cluster_node(state="Running", ready=True)

    assert status_deleting(node, grace_left=42.4).message == "draining; machine deleted in 42s"
    plain = status_deleting(node)
    assert (plain.state, plain.ready, plain.message) == ("Deleting", False, None)
