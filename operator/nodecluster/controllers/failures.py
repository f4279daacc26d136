"""Every failure visible within one reconcile: a condition and one Warning Event, never
only a traceback in the operator's log.

Each controller's queue handler runs through `reporting`: an error it does not handle
itself (a write the API server refused, an API that does not answer, a bug) is written
where people look before the reconcile is retried with backoff:

- on a NodeCluster, `Stalled` when a person must act (the API server refused a write: 400,
  403, 404, 422 — RBAC, admission, a bad value), else `Degraded` (retried: 409, 429, 5xx,
  timeouts, anything unexpected), with the server's message;
- on a ClusterNode, its `Ready` condition and `status.message`;
- on every kind, one Warning Event per distinct failure: a failure repeated by every
  retry is reported once, and reported again only when it changes or after it cleared.

A successful reconcile writes the status its controller derives, which replaces the
failure's condition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nodecluster import API_VERSION
from nodecluster.api.common import Condition
from nodecluster.api.reasons import Reason
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, Kind, KubeError
from nodecluster.controllers.workqueue import Backoff
from nodecluster.controllers.world import World
from nodecluster.planning.conditions import condition

K = TypeVar("K")

log = logging.getLogger(__name__)

REFUSED = frozenset({400, 403, 404, 422})
"""Statuses of a write the API server will refuse again until a person changes something."""

KINDS: dict[str, Kind] = {"NodeCluster": NODECLUSTERS, "ClusterNode": CLUSTERNODES}


def classify(err: BaseException) -> tuple[Reason, str]:
    """The reason a failure is reported with, and its message."""
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
        try:
            again = await handler(world, key)
        except (Backoff, asyncio.CancelledError):
            raise
        except Exception as err:
            reason, message = classify(err)
            log.debug("%s %s failed", kind, key, exc_info=True)
            await report(world, kind, key, reason, message)
            raise Backoff(f"{reason}: {message}") from err
        world.book.failures.pop((kind, key), None)
        return again

    return run


async def report(world: World, kind: str, key: Any, reason: Reason, message: str) -> None:
    """Write a failure on the object, and post one Event for it (once per failure)."""
    if world.book.failures.get((kind, key)) == (reason, message):
        return  # reported already: the retries say nothing new
    namespace, name = ("", key) if isinstance(key, str) else key
    involved: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace or None},
    }
    try:
        if kind in KINDS:
            involved = await _write_condition(world, kind, namespace, name, reason, message)
    except KubeError as err:
        log.warning("%s %s/%s: could not report %s: %s", kind, namespace, name, reason, err)
    await world.api.event(involved, "Warning", reason, message)
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
    return patched
