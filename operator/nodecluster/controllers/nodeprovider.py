"""NodeProvider controller: checks that the driver can be built and reports it.

A bad driver config is a person's mistake, so it is reported where people look
(the Ready condition and an Event) and every cluster using the provider is woken up
to say so too, instead of a traceback loop in the operator's log.
"""

from __future__ import annotations

import logging

from nodecluster.api.common import Condition
from nodecluster.api.nodeprovider import NodeProvider, NodeProviderStatus
from nodecluster.controllers.kube import NODEPROVIDERS, KubeNotFound, status_patch
from nodecluster.controllers.world import ProviderUnavailable, World

log = logging.getLogger(__name__)


async def reconcile_provider(world: World, name: str) -> float | None:
    """Validate one NodeProvider and publish its status."""
    body = world.take_body("NodeProvider", "", name)
    if body is None:
        try:
            body = await world.client.get(NODEPROVIDERS, None, name)
        except KubeNotFound:
            return None
    np = NodeProvider.model_validate(body)
    world.providers[name] = np
    now = world.now()
    try:
        await world.driver(name)
        ok, reason, message = True, "DriverReady", f"driver {np.spec.driver!r} is ready"
    except ProviderUnavailable as err:
        ok, reason, message = False, err.reason, err.message
    nodes, cores = world.provider_usage(name)
    old = np.status
    prev = next((c for c in old.conditions if c.type == "Ready"), None)
    value = "True" if ok else "False"
    since = prev.last_transition_time if prev is not None and prev.status == value else None
    status = NodeProviderStatus(
        observed_generation=np.metadata.generation,
        phase="Ready" if ok else "NotReady",
        nodes=nodes,
        cores=cores,
        conditions=[
            Condition(
                type="Ready",
                status=value,
                reason=reason,
                message=message,
                observed_generation=np.metadata.generation,
                last_transition_time=since or now,
            ),
            Condition(
                type="Stalled",
                status="False" if ok else "True",
                reason=reason,
                message="" if ok else message,
                observed_generation=np.metadata.generation,
                last_transition_time=since or now,
            ),
        ],
    )
    if status.wire() != old.wire():
        try:
            await world.client.patch(
                NODEPROVIDERS, None, name, status_patch(old.wire(), status.wire()), status=True
            )
        except KubeNotFound:
            return None
        if old.phase != status.phase:
            await world.client.event(body, "Normal" if ok else "Warning", reason, message)
    if world.cluster_queue is not None:
        for key in world.clusters_by_provider.get(name, set()):
            world.cluster_queue.add(key)
    return None
