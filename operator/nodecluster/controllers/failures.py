"""Every failure visible within one reconcile: a condition and one Warning Event, never
only a traceback in the operator's log.

Each controller's queue handler runs through `reporting`: an error it does not handle
itself (a write the API server refused, an API that does not answer, a bug) is written
where people look before the reconcile is retried with backoff:

- on a NodeCluster, `Stalled` when a person must act (the API server refused a write: 400,
  403, 404, 422 — RBAC, admission, a bad value), else `Degraded` (retried: 409, 429, 5xx,
  timeouts, anything unexpected), with the server's message;
- on a ClusterNode, its `Ready` condition and `status.message`;
- on a NodeProvider (cluster-scoped, shared by every installation on the API server), this
  installation's entry of `status.installations` (NotReady, with the reason and message),
  and the top-level phase, `Ready` and `Stalled` only where this installation writes them
  (the smallest id: `nodeprovider.installation_status_patch`, the one rule for both);
- on a NodeClusterOperation, `Stalled` or `Degraded` as on a NodeCluster, and its
  `status.message`, its phase unchanged: it is retried until its timeout, which is the
  only thing (besides a refusal) that fails it (`report_operation_failure`, called by the
  operation controller itself: its queue is keyed by cluster, and only it knows which
  operation was running);
- on every kind, one Warning Event per distinct failure: a failure repeated by every
  retry is reported once, and reported again only when it changes or after it cleared.
  Where the object's status already shows the failure, that is the memory, so a restarted
  operator neither posts it again nor rewrites anything.

A successful reconcile writes the status its controller derives, which replaces the
failure's condition (an operation's next successful step sets it False: `cleared`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from nodecluster import API_VERSION
from nodecluster.api.common import Condition
from nodecluster.api.nodecluster import NodeCluster
from nodecluster.api.nodeprovider import InstallationView, NodeProvider, NodeProviderStatus
from nodecluster.api.operation import NodeClusterOperation
from nodecluster.api.reasons import Reason
from nodecluster.clock import rfc3339
from nodecluster.controllers.kubeapi import (
    CLUSTERNODES,
    NODECLUSTERS,
    NODEPROVIDERS,
    OPERATIONS,
    REFUSED,
    Kind,
    KubeConflict,
    KubeError,
)
from nodecluster.controllers.metrics import summarize
from nodecluster.controllers.nodeprovider import installation_status_patch
from nodecluster.controllers.workqueue import Backoff
from nodecluster.controllers.world import ProviderUnavailable, World, provider_reason
from nodecluster.planning.conditions import condition
from nodecluster.providers.base import ProviderError

K = TypeVar("K")

log = logging.getLogger(__name__)

KINDS: dict[str, Kind] = {"NodeCluster": NODECLUSTERS, "ClusterNode": CLUSTERNODES}


FAILING = ("Stalled", "Degraded")
"""The condition types a failure sets True (see `failing_condition`)."""
RESTING: dict[str, Reason] = {"Stalled": Reason.PROGRESSING, "Degraded": Reason.AS_EXPECTED}
"""The reason each of them gives once False again."""


def classify(err: BaseException) -> tuple[Reason, str]:
    """The reason a failure is reported with, and its message."""
    if isinstance(err, ProviderUnavailable):
        return err.reason, err.message
    if isinstance(err, ProviderError):
        return provider_reason(err), str(err)
    if isinstance(err, KubeError):
        if err.status in REFUSED:
            return (
                Reason.API_REFUSED,
                f"the API server refused a write ({err.status}): {err.message}",
            )
        return Reason.API_UNAVAILABLE, f"an API call failed ({err.status}): {err.message}"
    return Reason.RECONCILE_ERROR, f"{type(err).__name__}: {err}"


def reporting(
    kind: str, handler: Callable[[World, K], Awaitable[float | None]]
) -> Callable[[World, K], Awaitable[float | None]]:
    """`handler` with its unhandled failures reported (see the module's docstring)."""

    async def run(world: World, key: K) -> float | None:
        # Measured here, around the reconcile and its report: the one place every kind's
        # reconcile passes through (nodecluster_reconcile_duration_seconds, _errors_total).
        start = world.clock.monotonic()
        try:
            again = await handler(world, key)
        except Backoff:
            world.metrics.reconciled(kind, world.clock.monotonic() - start, failed=False)
            raise  # handled: reported by the handler itself
        except asyncio.CancelledError:
            raise
        except Exception as err:
            reason, message = classify(err)
            log.debug("%s %s failed", kind, key, exc_info=True)
            try:
                await report(world, kind, key, reason, message)
            finally:
                world.metrics.reconciled(kind, world.clock.monotonic() - start, failed=True)
            raise Backoff(f"{reason}: {message}") from err
        world.metrics.reconciled(kind, world.clock.monotonic() - start, failed=False)
        world.book.failures.pop((kind, key), None)
        return again

    return run


async def report(world: World, kind: str, key: Any, reason: Reason, message: str) -> None:
    """Write a failure on the object, and post one Event for it (once per failure)."""
    repeated = world.book.failures.get((kind, key)) == (reason, message)
    if repeated and kind != "NodeProvider":
        return  # reported already: the retries say nothing new
    namespace, name = ("", key) if isinstance(key, str) else key
    involved: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace or None},
    }
    said = message
    try:
        if kind in KINDS:
            involved = await _write_condition(world, kind, namespace, name, reason, message)
        elif kind == "NodeProvider":
            involved, shown = await _write_provider_failure(world, name, reason, message, repeated)
            if shown or repeated:  # said already (before a restart, too: its entry says so)
                world.book.failures[(kind, key)] = (reason, message)
                return
        elif kind == "NodeClusterOperation":
            # Keyed by cluster, and failed before it knew which operation runs (listing
            # them): said on the cluster, as `kubectl describe` shows it (with its uid).
            said = f"the operations of this cluster cannot run: {message}"
            involved = {**involved, "kind": "NodeCluster"}
            involved = await world.api.get(NODECLUSTERS, namespace, name)
    except KubeError as err:
        log.warning("%s %s/%s: could not report %s: %s", kind, namespace, name, reason, err)
    await world.api.event(involved, "Warning", reason, said)
    world.book.failures[(kind, key)] = (reason, message)


async def _write_condition(
    world: World, kind: str, namespace: str, name: str, reason: Reason, message: str
) -> dict[str, Any]:
    api_kind = KINDS[kind]
    cache_key = (kind, namespace, name)
    body = world.bodies.get(cache_key) or await world.api.get(api_kind, namespace or None, name)
    status = dict(body.get("status") or {})
    generation = body.get("metadata", {}).get("generation")
    now = world.now()
    previous = [Condition.model_validate(c) for c in status.get("conditions", [])]
    if kind == "NodeCluster":
        failing = "Stalled" if reason.stalls else "Degraded"
        updated = [
            condition(previous, failing, True, reason, message, generation, now),
            condition(previous, "Ready", False, reason, message, generation, now),
        ]
    else:
        updated = [condition(previous, "Ready", False, reason, message, generation, now)]
    touched = {c.type for c in updated}
    conditions = [c for c in previous if c.type not in touched] + updated
    patch: dict[str, Any] = {
        "conditions": [
            c.model_dump(by_alias=True, exclude_none=True, mode="json") for c in conditions
        ]
    }
    if kind == "ClusterNode":
        patch["message"] = message
    patched = await world.api.patch(
        api_kind, namespace or None, name, {"status": patch}, status=True
    )
    world.bodies.wrote(cache_key, patched)
    if kind == "NodeCluster":
        # Its gauges show the failure too (nodecluster_condition: Stalled or Degraded).
        nc = NodeCluster.model_validate(patched)
        world.metrics.cluster_seen(
            (namespace, name), summarize(nc.spec.provider_ref.name, nc.spec.target_nodes, nc.status)
        )
    return patched


async def _write_provider_failure(
    world: World, name: str, reason: Reason, message: str, repeated: bool
) -> tuple[dict[str, Any], bool]:
    """Write a failure in this installation's view of a NodeProvider; the body, and whether
    that view said it already.

    A failure repeated by a retry is written again only where another installation wrote
    over it (the top-level fields, from a view read before this one's entry existed), never
    where this installation's own reconcile did: that reconcile got as far as its status
    write (it is what failed after it), and writing over it on every retry would make both
    rewrite the status, and announce it Ready, over and over."""
    cache_key = ("NodeProvider", "", name)
    body = world.bodies.get(cache_key) or await world.api.get(NODEPROVIDERS, None, name)
    old = NodeProvider.model_validate(body).status
    installation = world.settings.installation_id
    mine = old.installations.get(installation)
    shown = (
        mine is not None
        and mine.phase == "NotReady"
        and (mine.reason, mine.message) == (reason, message)
    )
    if repeated and not shown:
        return body, shown
    failing = provider_failure(old, installation, reason, message, world.now())
    # This installation's entry as it was (its users stay named), failing now.
    entry = (mine or InstallationView()).model_copy(
        update={
            "observed_generation": failing.observed_generation,
            "phase": failing.phase,
            "nodes": failing.nodes,
            "cores": failing.cores,
            "reason": str(reason),
            "message": message,
        }
    )
    patch, _ = installation_status_patch(installation, old, failing, entry)
    if patch is not None:
        body = await world.api.patch(NODEPROVIDERS, None, name, patch, status=True)
        world.bodies.wrote(cache_key, body)
    return body, shown


def provider_failure(
    old: NodeProviderStatus, installation: str, reason: Reason, message: str, now: datetime
) -> NodeProviderStatus:
    """A NodeProvider's status as one installation sees it while its reconcile fails: what
    it saw before (generation, usage), NotReady for `reason`; Stalled if that needs a
    person. The reconcile's next success derives the status afresh, which replaces it."""
    mine = old.installations.get(installation)
    seen = mine if mine is not None else old
    generation = seen.observed_generation
    stalled = reason.stalls
    return NodeProviderStatus(
        observed_generation=generation,
        phase="NotReady",
        nodes=seen.nodes,
        cores=seen.cores,
        conditions=[
            condition(old.conditions, "Ready", False, reason, message, generation, now),
            condition(
                old.conditions,
                "Stalled",
                stalled,
                reason,
                message if stalled else "",
                generation,
                now,
            ),
        ],
    )


def failing_condition(reason: Reason) -> str:
    """Stalled for what needs a person, Degraded for what passes by itself."""
    return "Stalled" if reason.stalls else "Degraded"


def shows_failure(conditions: list[Condition], reason: Reason, message: str) -> bool:
    """Whether conditions already say this failure (it was reported before)."""
    ctype = failing_condition(reason)
    return any(
        c.type == ctype and c.status == "True" and c.reason == reason and c.message == message
        for c in conditions
    )


def cleared(conditions: list[Condition], generation: int | None, now: datetime) -> list[Condition]:
    """Conditions with every failure set False again (unchanged if none is True): what a
    successful step of an operation writes, in the write it makes anyway."""
    return [
        condition(conditions, c.type, False, RESTING[c.type], "", generation, now)
        if c.type in FAILING and c.status == "True"
        else c
        for c in conditions
    ]


async def report_operation_failure(
    world: World, op: NodeClusterOperation, start_time: datetime | None, err: BaseException
) -> str:
    """Write a failure of an operation's step on the operation, and post one Event for it;
    the message to back off with.

    `op` is the operation as last recorded. The patch carries only what the failure
    changes (conditions, message, and the start time if the failed step was its first, so
    that its timeout runs), on that version of the operation only (its resourceVersion is
    the patch's precondition): a step may have recorded more than `op` shows (a write whose
    answer was lost: an intent, or the operation's end), and that must stay. An operation
    whose status already shows the failure, or whose failure this process reported, is not
    written nor announced again; nor is one that moved on past `op` (409: the write the
    step failed on took effect after all).
    """
    reason, message = classify(err)
    log.debug("operation %s/%s failed", op.metadata.namespace, op.metadata.name, exc_info=err)
    namespace, name = op.metadata.namespace or "default", op.metadata.name
    book_key = ("NodeClusterOperation", (namespace, name))
    if world.book.failures.get(book_key) == (reason, message) or shows_failure(
        op.status.conditions, reason, message
    ):
        return f"{reason}: {message}"
    now = world.now()
    generation = op.metadata.generation
    ctype = failing_condition(reason)
    previous = op.status.conditions
    conditions = [c for c in previous if c.type != ctype] + [
        condition(previous, ctype, True, reason, message, generation, now)
    ]
    patch: dict[str, Any] = {
        "message": f"retrying after a failure ({reason}): {message}",
        "conditions": [
            c.model_dump(by_alias=True, exclude_none=True, mode="json") for c in conditions
        ],
    }
    if op.status.start_time is None and start_time is not None:
        patch["startTime"] = rfc3339(start_time)
    body: dict[str, Any] = {"status": patch}
    if op.metadata.resource_version:
        body["metadata"] = {"resourceVersion": op.metadata.resource_version}
    try:
        await world.api.patch(OPERATIONS, namespace, name, body, status=True)
    except KubeConflict:
        # It moved on: the step's own write took effect and only its answer was lost (an
        # intent, or the operation's end). The retry reads it afresh and says the failure
        # if it is still there; said now, a Warning would stand next to an operation that
        # Succeeded, about a failure that changed nothing.
        return f"{reason}: {message}"
    except KubeError as patch_err:
        log.warning(
            "NodeClusterOperation %s/%s: could not report %s: %s",
            namespace,
            name,
            reason,
            patch_err,
        )
    await world.api.event(op.model_dump(by_alias=True, mode="json"), "Warning", reason, message)
    world.book.failures[book_key] = (reason, message)
    return f"{reason}: {message}"


def forget_operation_failure(world: World, op: NodeClusterOperation) -> None:
    """A step of the operation succeeded: a failure like the last is news again."""
    world.book.failures.pop(
        ("NodeClusterOperation", (op.metadata.namespace or "default", op.metadata.name)), None
    )
