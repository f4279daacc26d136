"""NodeProvider controller: checks that the driver can be built and reports it.

A bad driver config is a person's mistake, so it is reported where people look
(the Ready condition and an Event) and every cluster using the provider is woken up
to say so too, instead of a traceback loop in the operator's log. Only what needs a
person says Stalled (a bad config, a Secret that is not there); a passing fault while
building the driver (a token endpoint timing out, a refused key mid-rotation) is
Ready=False and Stalled=False, and clears by itself.

A provider that is not Ready is looked at again, 30 s after it stopped being Ready and then
about as long again as it has been not Ready, up to `Settings.credentials_refresh_seconds`:
the Secret it names cannot be watched, so this is how one created (or fixed) after the
NodeProvider is found. A Ready one is looked at every poll interval, and at the latest when
its credentials are due to be read again, so a rotated Secret reaches the driver in time.
"""

from __future__ import annotations

import contextlib
import logging

from nodecluster.api.nodeprovider import NodeProvider, NodeProviderStatus
from nodecluster.api.reasons import Reason
from nodecluster.controllers.clusternode import POLL_SETTLING_SECONDS, POLLED_STATES
from nodecluster.controllers.expectations import NsName
from nodecluster.controllers.kubeapi import NODECLUSTERS, NODEPROVIDERS, KubeNotFound, status_patch
from nodecluster.controllers.quota import provider_usage
from nodecluster.controllers.world import ProviderUnavailable, World
from nodecluster.planning.conditions import condition
from nodecluster.providers.base import Machine, ProviderDriver, ProviderError

log = logging.getLogger(__name__)

NOT_READY_FIRST_LOOK_SECONDS = 30.0
"""How soon a provider that just stopped being Ready is looked at again."""


async def reconcile_provider(world: World, name: str) -> float | None:
    """Validate one NodeProvider and publish its status."""
    # Providers are few: their bodies stay cached, so a health poll reads nothing.
    try:
        body = await world.body(NODEPROVIDERS, ("NodeProvider", "", name))
    except KubeNotFound:
        return None
    np = NodeProvider.model_validate(body)
    world.providers.specs[name] = np
    now = world.now()
    driver: ProviderDriver | None = None
    reason: Reason
    try:
        driver = await world.providers.driver(name)
        ok, reason, message = True, Reason.DRIVER_READY, f"driver {np.spec.driver!r} is ready"
    except ProviderUnavailable as err:
        ok, reason, message = False, err.reason, err.message
    nodes, cores = provider_usage(world, name)
    old = np.status
    gen = np.metadata.generation
    stalled = not ok and reason.stalls
    ready_c = condition(old.conditions, "Ready", ok, reason, message, gen, now)
    status = NodeProviderStatus(
        observed_generation=gen,
        phase="Ready" if ok else "NotReady",
        nodes=nodes,
        cores=cores,
        conditions=[
            ready_c,
            condition(
                old.conditions, "Stalled", stalled, reason, message if stalled else "", gen, now
            ),
        ],
    )
    if status.wire() != old.wire():
        try:
            patched = await world.api.patch(
                NODEPROVIDERS, None, name, status_patch(old.wire(), status.wire()), status=True
            )
        except KubeNotFound:
            return None
        world.bodies.wrote(("NodeProvider", "", name), patched)
        if old.phase != status.phase:
            await world.api.event(body, "Normal" if ok else "Warning", reason, message)
    if old.phase != status.phase:
        for key in world.book.clusters_of(name):
            world.queues.cluster.add(key)
    if driver is None:
        since = ready_c.last_transition_time or now
        not_ready_for = (now - since).total_seconds()
        return min(
            world.settings.credentials_refresh_seconds,
            max(NOT_READY_FIRST_LOOK_SECONDS, not_ready_for),
        )
    await poll_health(world, name, driver)
    intervals = [world.book.poll_intervals.get(k) for k in world.book.clusters_of(name)]
    known = [i for i in intervals if i is not None]
    again = min(known) if known else world.settings.default_poll_seconds
    credentials_due = world.providers.next_read_in(name)
    return again if credentials_due is None else min(again, credentials_due)


async def poll_provider(world: World, name: str) -> float | None:
    """A health poll asked for by settling machines; again soon while any still settles."""
    try:
        driver = await world.providers.driver(name)
    except ProviderUnavailable:
        return None  # the nodes poll on their own (and report why)
    settling = await poll_health(world, name, driver)
    return POLL_SETTLING_SECONDS if settling else None


async def poll_health(world: World, provider: str, driver: ProviderDriver) -> bool:
    """One list call for every machine of the provider, compared with the node cache.

    Nodes whose machine changed state or vanished are woken (their controller records
    it, and the cluster remediates); clusters with untracked machines are woken to
    sweep them. Nothing is written when everything matches, so an idle fleet costs one
    provider call per interval and no API writes. Returns whether any machine is still
    settling (provisioning, stopping, starting, rebooting) as far as its node knows.
    """
    try:
        machines = await driver.list(None)
    except ProviderError as err:
        log.info("Provider %s: health poll failed: %s", provider, err)
        world.providers.call_failed(provider, err)
        return False
    by_cluster: dict[NsName, dict[str, Machine]] = {}
    for m in machines:
        ns, _, cluster = m.cluster.partition("/")
        by_cluster.setdefault((ns, cluster), {})[m.name] = m
    now = world.clock.now()
    # Clusters with neither machines nor cached nodes have nothing to compare: skipping
    # them keeps an idle fleet's poll proportional to its machines, not its clusters.
    index = world.node_index
    known = world.book.clusters_of(provider)
    keys = set(by_cluster) | {k for k in known if k in index}
    settling = False
    for key in keys:
        listed = by_cluster.get(key, {})
        nodes = {n.name: n for n in world.nodes_of(key)}
        for node in nodes.values():
            if node.deleting or not node.has_machine:
                continue
            machine = listed.get(node.name)
            changed = machine is None or machine.state != node.state
            if changed:
                world.queues.node.add((key[0], node.name))
            settling = settling or node.state in POLLED_STATES
        untracked = [
            m
            for m in listed.values()
            if m.name not in nodes
            and (now - m.created_at).total_seconds() > world.settings.orphan_grace_seconds
        ]
        if untracked:
            if key in known:
                world.book.orphans_suspected.add(key)
                world.queues.cluster.add(key)
            else:
                await _delete_if_orphaned(world, driver, key, untracked)
    return settling


async def _delete_if_orphaned(
    world: World, driver: ProviderDriver, key: NsName, machines: list[Machine]
) -> None:
    """Machines of a cluster that no longer exists at all: delete them, once confirmed."""
    try:
        await world.api.get(NODECLUSTERS, key[0], key[1])
        return  # the cluster exists; its own reconcile will sweep
    except KubeNotFound:
        pass
    for m in machines:
        log.info("Deleting machine %s of vanished cluster %s/%s", m.name, *key)
        with contextlib.suppress(ProviderError):
            await driver.delete(m.name)
