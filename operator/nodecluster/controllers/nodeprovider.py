"""NodeProvider controller: checks that the driver can be built and reports it.

A bad driver config is a person's mistake, so it is reported where people look
(the Ready condition and an Event) and every cluster using the provider is woken up
to say so too, instead of a traceback loop in the operator's log. Only what needs a
person says Stalled (a bad config, a Secret that is not there); a passing fault while
building the driver (a token endpoint timing out, a refused key mid-rotation) is
Ready=False and Stalled=False, and clears by itself.

It also holds the provider with this installation's finalizer while anything uses it, and
lets go once nothing does (inuse.py); while it is being deleted and still held, its entry
of `status.installations` says what holds it (`ProviderInUse`) and one Warning Event why
its deletion waits (exactly one: posted before the entry is written, announcements.py).

A provider that is not Ready is looked at again, 30 s after it stopped being Ready and then
about as long again as it has been not Ready, up to `Settings.credentials_refresh_seconds`:
the Secret it names cannot be watched, so this is how one created (or fixed) after the
NodeProvider is found. A Ready one is looked at every poll interval, and at the latest when
its credentials are due to be read again, so a rotated Secret reaches the driver in time.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from nodecluster.api.nodeprovider import (
    InstallationView,
    NodeProvider,
    NodeProviderStatus,
    provider_finalizer,
)
from nodecluster.api.reasons import Reason
from nodecluster.controllers.accounting import installation_usage
from nodecluster.controllers.announcements import event_name, post_once
from nodecluster.controllers.clusternode import POLL_SETTLING_SECONDS, POLLED_STATES
from nodecluster.controllers.expectations import NsName
from nodecluster.controllers.inuse import deletion_waits, settle_hold
from nodecluster.controllers.kubeapi import (
    NODECLUSTERS,
    NODEPROVIDERS,
    KubeConflict,
    KubeError,
    KubeNotFound,
    status_patch,
)
from nodecluster.controllers.metrics import ProviderSummary
from nodecluster.controllers.phases import CONFLICT_RETRY_SECONDS
from nodecluster.controllers.quota import provider_hourly_cost, provider_usage
from nodecluster.controllers.world import ProviderUnavailable, World
from nodecluster.planning.conditions import condition
from nodecluster.planning.usage import price_list
from nodecluster.providers.base import Machine, ProviderDriver, ProviderError
from nodecluster.providers.identity import collected_by, node_of

log = logging.getLogger(__name__)

NOT_READY_FIRST_LOOK_SECONDS = 30.0
"""How soon a provider that just stopped being Ready is looked at again."""


async def reconcile_provider(world: World, name: str) -> float | None:
    """Validate one NodeProvider, hold it while it is used (inuse.py), publish its status."""
    # Providers are few: their bodies stay cached, so a health poll reads nothing.
    key = ("NodeProvider", "", name)
    try:
        body = await world.body(NODEPROVIDERS, key)
    except KubeNotFound:
        return None
    np = NodeProvider.model_validate(body)
    world.providers.specs[name] = np
    try:
        held = await settle_hold(world, np)
    except KubeConflict:
        world.bodies.drop(key)  # written meanwhile: read it again
        return CONFLICT_RETRY_SECONDS
    if held is None:
        return None  # it held nothing but this installation's finalizer: gone
    np, users = held
    now = world.now()
    driver: ProviderDriver | None = None
    reason: Reason
    try:
        driver = await world.providers.driver(name)
        ok, reason, message = True, Reason.DRIVER_READY, f"driver {np.spec.driver!r} is ready"
    except ProviderUnavailable as err:
        ok, reason, message = False, err.reason, err.message
    nodes, cores = provider_usage(world, name)
    quotas = np.spec.quotas
    world.metrics.provider_seen(
        name,
        ProviderSummary(
            nodes,
            quotas.max_nodes,
            cores,
            quotas.max_cores,
            ready=ok,
            hourly_cost=provider_hourly_cost(world, name, price_list(np.spec.buckets)),
            hourly_cost_limit=quotas.max_hourly_cost,
        ),
    )
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
    # This installation's entry says why it is (not) Ready, or, while the provider is being
    # deleted and this installation still holds it, why the deletion waits.
    said: tuple[Reason, str] = (reason, message)
    holds = provider_finalizer(world.settings.installation_id) in np.metadata.finalizers
    if np.metadata.deletion_timestamp is not None and users is not None and holds:
        said = (Reason.PROVIDER_IN_USE, deletion_waits(world, name, users))
    # Under the lock of the entry, from the newest body: a cluster's retirement
    # (accounting.py) may have written the entry's usage since this reconcile read it.
    async with world.providers.status_lock(name):
        old = NodeProvider.model_validate(world.bodies.get(key) or body).status
        had = old.installations.get(world.settings.installation_id)
        mine = InstallationView(
            observed_generation=gen,
            phase=status.phase,
            nodes=nodes,
            cores=cores,
            reason=str(said[0]),
            message=said[1],
            users=users,
            usage=installation_usage(world, name, had.usage if had is not None else None, now),
        )
        status.usage = mine.usage
        patch, before = installation_status_patch(world.settings.installation_id, old, status, mine)
        was = before.phase if before is not None else old.phase
        newly_waits = said[0] == Reason.PROVIDER_IN_USE and (
            before is None or before.reason != Reason.PROVIDER_IN_USE
        )
        if patch is not None:
            if newly_waits:
                # Said once, when it begins: before the entry that remembers it is written, under
                # a name of this deletion of this provider (announcements.py), so neither a kill
                # nor a lost answer in between loses it, and a retry does not say it again.
                await post_once(
                    world.api,
                    in_use_event_name(world, np),
                    body,
                    "Warning",
                    str(said[0]),
                    said[1],
                )
            try:
                patched = await world.api.patch(NODEPROVIDERS, None, name, patch, status=True)
            except KubeNotFound:
                return None
            world.bodies.wrote(key, patched)
            if was != status.phase:
                await world.api.event(body, "Normal" if ok else "Warning", reason, message)
    if was != status.phase or newly_waits:
        # Its clusters say what changed: not Ready, or no new machines while it goes.
        for cluster in world.clusters_of(name):
            world.queues.cluster.add(cluster)
    if driver is None:
        since = ready_c.last_transition_time or now
        not_ready_for = (now - since).total_seconds()
        return min(
            world.settings.credentials_refresh_seconds,
            max(NOT_READY_FIRST_LOOK_SECONDS, not_ready_for),
        )
    await poll_health(world, name, driver)
    intervals = [world.book.poll_intervals.get(k) for k in world.clusters_of(name)]
    known = [i for i in intervals if i is not None]
    again = min(known) if known else world.settings.default_poll_seconds
    credentials_due = world.providers.next_read_in(name)
    return again if credentials_due is None else min(again, credentials_due)


def in_use_event_name(world: World, np: NodeProvider) -> str:
    """The name of the Event saying why a provider's deletion waits for this installation:
    one per installation per deletion (a provider is deleted once; one created again under
    the same name has another uid, and its deletion is news)."""
    meta = np.metadata
    return event_name(
        meta.name,
        meta.uid,
        world.settings.installation_id,
        Reason.PROVIDER_IN_USE,
        meta.deletion_timestamp.isoformat() if meta.deletion_timestamp else "",
    )


def installation_status_patch(
    installation: str,
    old: NodeProviderStatus,
    new: NodeProviderStatus,
    mine: InstallationView,
) -> tuple[dict[str, Any] | None, InstallationView | None]:
    """The status patch of one installation (None: nothing changed), and the entry it had
    before.

    Every installation on the API server reconciles each NodeProvider (cluster-scoped), and
    each counts only its own nodes: were all to write the same fields they would rewrite
    each other's on every look, without end. So each writes only its entry of
    `status.installations` (a merge patch of one key leaves the others' alone), and the
    top-level fields only the installation of the smallest id among the entries writes.
    """
    before = old.installations.get(installation)
    others = [other for other in old.installations if other != installation]
    patch: dict[str, Any] = {}
    if not others or installation < min(others):
        old_top = {k: v for k, v in old.wire().items() if k != "installations"}
        new_top = {k: v for k, v in new.wire().items() if k != "installations"}
        if old_top != new_top:
            patch.update(status_patch(old_top, new_top)["status"])
    old_mine = before.wire() if before is not None else None
    new_mine = mine.wire()
    if old_mine != new_mine:
        gone = {key: None for key in old_mine or {} if key not in new_mine}
        patch["installations"] = {installation: {**gone, **new_mine}}
    return ({"status": patch} if patch else None), before


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
    settings = world.settings
    for m in machines:
        # Another installation's machines, or those of namespaces not served, are not
        # this operator's to watch or collect (identity.py).
        if not collected_by(settings.installation_id, settings.serves, m):
            continue
        ns, _, cluster = m.cluster.partition("/")
        by_cluster.setdefault((ns, cluster), {})[node_of(m.name, m.tags)] = m
    now = world.clock.now()
    # Clusters with neither machines nor cached nodes have nothing to compare: skipping
    # them keeps an idle fleet's poll proportional to its machines, not its clusters.
    index = world.node_index
    known = world.clusters_of(provider)
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
            if node_of(m.name, m.tags) not in nodes
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
    except KubeError as err:
        # Refused (403: permissions of some namespaces only) or failing: the cluster may
        # exist, so nothing is deleted, and the rest of the poll goes on.
        if key[0] not in world.book.orphan_checks_refused:
            world.book.orphan_checks_refused.add(key[0])
            log.warning(
                "Provider health poll: cannot check clusters of namespace %s, so its "
                "machines are never collected as orphans: %s",
                key[0],
                err,
            )
        return
    for m in machines:
        log.info("Deleting machine %s of vanished cluster %s/%s", m.name, *key)
        with contextlib.suppress(ProviderError):
            await driver.delete(m.name)
