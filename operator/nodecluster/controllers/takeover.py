"""The node's and the cluster's side of an Adopt operation (controllers/adopt.py).

A ClusterNode an Adopt operation created carries the provider id of its machine
(`ADOPT_MACHINE_ANNOTATION`). Its controller takes that machine over instead of creating
one, in the place it would call `create`: the node exists before the machine is tagged
for it, so there is never a machine tagged with this installation's identity and no
ClusterNode to own it (the orphan collection would delete such a machine, the owner's,
at its next look: its creation time is long past the grace period). The node's own
reconcile makes it crash-safe as it makes `create` safe: the machine's name is derived
from the node's identity, the tags written are that identity, and after a crash the next
reconcile finds the machine by that name (`get`) and does not adopt it twice.

The cluster's side: while `ADOPTING_ANNOTATION` names an Adopt operation still running,
the cluster's reconcile makes no new node (planning/adopt.py says why). A marker left by
an operation that ended or was deleted (timed out before its nodes were made) is ignored.
"""

from __future__ import annotations

from nodecluster.api.nodecluster import NodeCluster
from nodecluster.api.operation import NodeClusterOperation
from nodecluster.controllers.kubeapi import OPERATIONS, KubeNotFound
from nodecluster.controllers.world import World
from nodecluster.planning.adopt import ADOPTING_ANNOTATION
from nodecluster.providers.base import (
    Adoption,
    InvalidConfig,
    Machine,
    MachineSelection,
    MachineSpec,
    NotFound,
    ProviderDriver,
)
from nodecluster.providers.identity import claimed_by


async def take_over_machine(driver: ProviderDriver, provider_id: str, spec: MachineSpec) -> Machine:
    """The machine `provider_id`, made the node's (tagged as `spec` says); NotFound if it
    is gone. One already the node's (an earlier attempt adopted it) is returned as it is;
    one someone else claims is returned untouched, for the caller's ownership check to
    refuse (`MachineOwnedElsewhere`): it was free when the operation looked, and taken
    since."""
    try:
        return await driver.get(spec.name)
    except NotFound:
        pass
    if not isinstance(driver, Adoption):
        raise InvalidConfig(
            f"this node adopts machine {provider_id}, and its NodeProvider's driver cannot "
            "adopt machines"
        )
    found = [
        m
        for m in await driver.discover(MachineSelection(provider_ids=(provider_id,)))
        if m.provider_id == provider_id
    ]
    if not found:
        raise NotFound(f"machine {provider_id}, which this node adopts, does not exist")
    if claimed_by(found[0]) is not None:
        return found[0]
    return await driver.adopt(found[0], spec)


async def adopting_operation(world: World, cluster: NodeCluster) -> str | None:
    """The Adopt operation creating this cluster's nodes right now, if any: the one its
    `ADOPTING_ANNOTATION` names, if that exists, is an Adopt of this cluster, and has not
    ended. (One API read, only while the annotation is there.)"""
    name = cluster.metadata.annotations.get(ADOPTING_ANNOTATION)
    if not name:
        return None
    try:
        body = await world.api.get(OPERATIONS, cluster.metadata.namespace, name)
    except KubeNotFound:
        return None
    op = NodeClusterOperation.model_validate(body)
    if op.spec.action != "Adopt" or op.spec.cluster_name != cluster.metadata.name:
        return None
    if op.status.phase in ("Succeeded", "Failed"):
        return None
    return name
