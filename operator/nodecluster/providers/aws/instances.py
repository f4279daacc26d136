"""EC2 instances as the operator sees machines: names, tags, states, zones, cores.

A machine is found by its tags, not by its instance id: the operator knows a machine by
the name it derived from the node's identity (providers/identity.py) before it called
`create`, and after a crash that name is all it has. So every instance carries:

    Name                        the machine name (what the EC2 console shows)
    nodecluster.io/machine      the machine name (what `get` and `delete` look up)
    nodecluster.io/provider     the NodeProvider's name (what `list` is limited to)
    nodecluster.io/cluster-ref  `<namespace>/<cluster>` (what `list(cluster)` filters on)

plus the node's identity tags (installation, namespace, cluster, node, node uid), which
the operator decides ownership from, and the profile's labels. The driver's own four are
not handed back in `Machine.tags`: that field is the identity the operator asked for.

States: EC2's `pending` is both a first boot and a restart after a stop; the operator
judges a Provisioning node by the time since it was created, and a long-stopped machine
starting again would look overdue. The two differ in the launch time, which EC2 moves at
every start, while the primary network interface keeps the time it was attached at the
first launch: `pending` long after that attach time is a restart (`Starting`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from nodecluster.providers.base import InvalidConfig, Machine, MachineSpec, MachineState

if TYPE_CHECKING:
    from types_aiobotocore_ec2.type_defs import InstanceTypeDef, TagTypeDef

NAME_TAG = "Name"
MACHINE_TAG = "nodecluster.io/machine"
PROVIDER_TAG = "nodecluster.io/provider"
CLUSTER_REF_TAG = "nodecluster.io/cluster-ref"
DRIVER_TAGS = frozenset({NAME_TAG, MACHINE_TAG, PROVIDER_TAG, CLUSTER_REF_TAG})
OPERATOR_PREFIX = "nodecluster.io/"

MAX_TAGS = 50
"""EC2's limit of tags per resource."""
MAX_CLIENT_TOKEN = 64
"""EC2's limit on a ClientToken: 64 ASCII characters."""

LIVE_STATES = ("pending", "running", "shutting-down", "stopping", "stopped")
"""Every state but `terminated`: a terminated instance stays visible for about an hour,
and is gone for the operator at once."""

STATES: Mapping[str, MachineState] = {
    "pending": "Provisioning",
    "running": "Running",
    "stopping": "Stopping",
    "stopped": "Stopped",
    "shutting-down": "Deleting",
}
"""EC2 state -> machine state. `terminated` is not a state but NotFound."""

RESTART_AFTER = timedelta(seconds=60)
"""How long after its first launch a `pending` instance counts as starting again."""


def client_token(name: str) -> str:
    """The RunInstances ClientToken for a machine: its name (unique per node identity, at
    most 63 ASCII characters), or a digest of it for a longer or non-ASCII legacy name."""
    if len(name) <= MAX_CLIENT_TOKEN and name.isascii():
        return name
    return hashlib.sha256(name.encode()).hexdigest()[:MAX_CLIENT_TOKEN]


def instance_id_of(provider_id: str) -> str:
    """The instance id in a provider id (`aws:///<az>/<id>`), or the id itself."""
    return provider_id.rstrip("/").rsplit("/", 1)[-1]


def instance_tags(spec: MachineSpec, provider: str) -> list[TagTypeDef]:
    """Every tag of a new instance: the profile's labels, the identity, the driver's own.
    Later ones win, so a label can never hide the tags the machine is found by."""
    tags: dict[str, str] = {
        **spec.labels,
        **spec.tags,
        NAME_TAG: spec.name,
        MACHINE_TAG: spec.name,
        PROVIDER_TAG: provider,
        CLUSTER_REF_TAG: spec.cluster,
    }
    if len(tags) > MAX_TAGS:
        raise InvalidConfig(
            f"machine {spec.name} would carry {len(tags)} tags and EC2 allows {MAX_TAGS}: "
            f"{len(tags) - MAX_TAGS} fewer profile labels, please"
        )
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def tags_of(instance: InstanceTypeDef) -> dict[str, str]:
    """An instance's tags as a map."""
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", []) if "Key" in tag}


def identity_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The identity the operator tagged the machine with (`Machine.tags`)."""
    return {k: v for k, v in tags.items() if k.startswith(OPERATOR_PREFIX) and k not in DRIVER_TAGS}


def first_launch(instance: InstanceTypeDef) -> datetime:
    """When the instance was first launched: the attach time of its primary network
    interface (kept across stop and start), else its launch time."""
    for eni in instance.get("NetworkInterfaces", []):
        attachment = eni.get("Attachment", {})
        if attachment.get("DeviceIndex") == 0 and "AttachTime" in attachment:
            return _utc(attachment["AttachTime"])
    return _utc(instance.get("LaunchTime") or datetime.now(UTC))


def machine_state(instance: InstanceTypeDef) -> MachineState | None:
    """The machine state of an instance; None once it is terminated (or unknown)."""
    name = instance.get("State", {}).get("Name", "")
    state = STATES.get(name)
    launched = instance.get("LaunchTime")
    if (
        state == "Provisioning"
        and launched
        and _utc(launched) - first_launch(instance) > RESTART_AFTER
    ):
        return "Starting"
    return state


def to_machine(
    instance: InstanceTypeDef,
    zone_of_subnet: Mapping[str, str],
    cores_by_type: Mapping[str, int],
    state: MachineState | None = None,
) -> Machine:
    """The operator's view of one (live) instance. `state` overrides EC2's, for answers
    that carry a newer one (StopInstances' CurrentState) than the instance read before."""
    tags = tags_of(instance)
    instance_type = str(instance.get("InstanceType", ""))
    az = instance.get("Placement", {}).get("AvailabilityZone")
    subnet = instance.get("SubnetId")
    zone = zone_of_subnet.get(subnet or "") or az
    cpu = instance.get("CpuOptions", {})
    vcpus = cpu.get("CoreCount", 0) * cpu.get("ThreadsPerCore", 1)
    return Machine(
        name=tags.get(MACHINE_TAG) or tags.get(NAME_TAG) or instance["InstanceId"],
        provider_id=f"aws:///{az or ''}/{instance['InstanceId']}",
        cluster=tags.get(CLUSTER_REF_TAG, ""),
        state=state or machine_state(instance) or "Deleting",
        machine_type=instance_type,
        zone=zone,
        cores=cores_by_type.get(instance_type) or vcpus or 1,
        created_at=first_launch(instance),
        addresses=addresses_of(instance),
        tags=identity_tags(tags),
    )


def addresses_of(instance: InstanceTypeDef) -> tuple[tuple[str, str], ...]:
    """Addresses as Kubernetes Nodes name them (InternalIP, ExternalIP, InternalDNS,
    ExternalDNS), in that order, the empty ones left out."""
    pairs: Sequence[tuple[str, Any]] = (
        ("InternalIP", instance.get("PrivateIpAddress")),
        ("ExternalIP", instance.get("PublicIpAddress")),
        ("InternalDNS", instance.get("PrivateDnsName")),
        ("ExternalDNS", instance.get("PublicDnsName")),
    )
    return tuple((kind, str(value)) for kind, value in pairs if value)


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
