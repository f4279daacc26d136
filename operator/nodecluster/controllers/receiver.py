"""NodeClusterReceiver controller and the receivers' HTTP endpoint (`run --receiver-address`).

`POST /receivers/<namespace>/<name>` with `Authorization: Bearer <token>` creates the
receiver's NodeClusterOperation. The answers:

- 401 for a missing or wrong token and for a receiver this operator does not serve, with
  the same body and the same header either way, so that names cannot be probed; counted in
  `nodecluster_receiver_requests_total{outcome="unauthorized"}` (with empty labels for a
  receiver that does not exist, so a flood of made-up names adds no series);
- 503 with Retry-After on a standby replica (`--leader-elect`; see below), and when the
  API server fails a call;
- 413 for a body over `MAX_BODY_BYTES`, 400 for one that is not JSON;
- 200 for Alertmanager's `resolved` (nothing is done), 409 when the cluster does not exist,
  429 with Retry-After within the scaling cooldown (nothing is created), 202 with the
  operation's name when one is created.

Nothing about a token is logged, written (status, Events, annotations) or kept in a repr:
the Authorization header is read in one place and never formatted, and the Secret's data
is held in `SealedData`.

Why every replica serves and a standby answers 503, rather than a standby being taken out
of the Service by a readiness probe: the chart's rolling update (`maxUnavailable: 0`) waits
for a new pod to be Ready, and a new pod is a standby until the old leader lets the Lease
go; a standby that is never Ready would block every upgrade. Alertmanager retries a 5xx
(and not a 4xx), so a notification that lands on the standby is sent again and reaches
the leader; nothing is written by a standby, so the fence never has to stop it.

Writes follow the project's rule (intent before effect): a trigger first records its
operation's name in the receiver's status (`pendingOperation`, with `lastTriggered` and the
count; conditioned on the resourceVersion read), then creates the operation (an existing
one of that name is the same trigger's, created by an attempt whose answer was lost), posts
its Event once, and clears `pendingOperation`. A failure in between leaves the name
recorded: the caller's retry, or the receiver's next reconcile, creates that operation and
no other. Triggers of one receiver are serialised by a lock, with its reconciles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from nodecluster.api.nodecluster import NodeCluster
from nodecluster.api.reasons import Reason
from nodecluster.api.receiver import (
    NodeClusterReceiver,
    ReceiverCaller,
    ReceiverRateLimited,
    ReceiverTrigger,
)
from nodecluster.controllers.announcements import event_name, post_once
from nodecluster.controllers.expectations import NsName
from nodecluster.controllers.kubeapi import (
    NODECLUSTERS,
    OPERATIONS,
    REFUSED,
    Kind,
    KubeConflict,
    KubeError,
    KubeNotFound,
)
from nodecluster.controllers.metrics import parse_address
from nodecluster.controllers.workqueue import WorkQueue
from nodecluster.controllers.world import World
from nodecluster.planning.conditions import condition, replace_condition
from nodecluster.planning.receiver import (
    MAX_BODY_BYTES,
    PayloadError,
    bearer_token,
    caller,
    operation_body,
    operation_name,
    parse_payload,
    retry_after,
    token_matches,
)

log = logging.getLogger(__name__)

RECEIVERS = Kind("nodeclusterreceivers")

PATH = "/receivers/{namespace}/{name}"

SECRET_CACHE_SECONDS = 5.0
"""How long a token Secret read for a request is used for the next ones: a flood of
requests (with good tokens or bad) costs the API server one read per receiver every few
seconds, and a rotated Secret is in effect within this long."""

RESYNC_SECONDS = 300.0
"""How often a receiver's Ready condition is computed again without an event: Secrets are
not watched (the operator may only `get` them), so a Secret created or deleted later is
seen within this long, or at the next request, which looks again at once."""

STANDBY_RETRY_AFTER = 2
"""Retry-After of a standby's 503: about the Lease's retry period."""

UNAUTHORIZED = {"error": "unauthorized"}
"""The one body of a 401: an unknown receiver and a wrong token look the same."""

Outcome = str
"""The `outcome` label: triggered, resolved, rate_limited, unauthorized, standby,
too_large, bad_request, cluster_not_found, error."""


class SealedData:
    """A Secret's data that never shows in a repr, a log line or a traceback's locals."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str]) -> None:
        self._data = dict(data)

    def get(self, key: str) -> str | None:
        """The value of `key`, if any."""
        return self._data.get(key)

    def __repr__(self) -> str:
        return f"SealedData(keys={sorted(self._data)})"


class Receivers:
    """The receivers this operator serves: their bodies (from the watch), their reconcile
    queue, and the endpoint. `can_act` says whether this replica may write (the leader,
    or any process without leader election)."""

    def __init__(self, world: World, can_act: Callable[[], bool] = lambda: True) -> None:
        self.world = world
        self.can_act = can_act
        self.known: dict[NsName, dict[str, Any]] = {}
        """Each served receiver's body as the watch last showed it: an unknown name is
        refused without any API call."""
        self.queue: WorkQueue[NsName] = WorkQueue("NodeClusterReceiver", self.reconcile, 50)
        self._locks: dict[NsName, asyncio.Lock] = {}
        self._secrets: dict[NsName, tuple[float, SealedData | KubeError]] = {}
        self._runner: web.AppRunner | None = None
        self.address: str | None = None
        """`host:port` the endpoint is bound to (the port chosen when 0 was asked for)."""

    # -- the watch ----------------------------------------------------------------------

    def observe(self, type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of a NodeClusterReceiver: remember it and look at it."""
        meta = body.get("metadata", {})
        key: NsName = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if not self.world.settings.serves(key[0]):
            return
        if type == "DELETED":
            self.known.pop(key, None)
            self._locks.pop(key, None)
            self.queue.forget(key)
            return
        before = self.known.get(key)
        self.known[key] = dict(body)
        # Looked at when new, when its spec changed, and while a trigger is half done; not
        # for its own status writes (conditions, counts), which would only wake it again.
        if (
            before is None
            or type is None
            or _generation(before) != _generation(body)
            or (body.get("status") or {}).get("pendingOperation")
        ):
            self.queue.add(key)

    # -- the reconcile ------------------------------------------------------------------

    async def reconcile(self, key: NsName) -> float | None:
        """Finish a trigger left half done, and say in Ready whether the receiver can be
        used: its Secret, key and cluster exist. One status patch, only when it changes."""
        async with self._lock(key):
            api = self.world.api
            try:
                body = await api.get(RECEIVERS, *key)
            except KubeNotFound:
                self.queue.forget(key)
                return None
            receiver = NodeClusterReceiver.model_validate(body)
            problem: tuple[Reason, str] | None = None
            try:
                body = await self._complete(body, receiver) or body
            except KubeError as err:
                reason = Reason.API_REFUSED if err.status in REFUSED else Reason.API_UNAVAILABLE
                op = receiver.status.pending_operation
                problem = (reason, f"cannot create NodeClusterOperation {op}: {err}")
            receiver = NodeClusterReceiver.model_validate(body)
            if problem is None:
                problem = await self._problem(receiver, fresh=True)
            await self._write_ready(receiver, problem)
            return RESYNC_SECONDS

    async def _problem(
        self, receiver: NodeClusterReceiver, fresh: bool = False
    ) -> tuple[Reason, str] | None:
        """Why the receiver cannot be used, if it cannot (never a word of the token)."""
        ns = receiver.metadata.namespace or ""
        ref = receiver.spec.token_secret_ref
        found = await self._secret(ns, ref.name, fresh=fresh)
        if isinstance(found, KubeError):
            if found.status == 404:
                return (Reason.SECRET_NOT_FOUND, f"Secret {ns}/{ref.name} does not exist")
            return (
                Reason.SECRET_NOT_READABLE,
                f"cannot read Secret {ns}/{ref.name} (the operator may read Secrets only in "
                f"the namespaces its RBAC names): {found.status}",
            )
        if not (found.get(ref.key) or "").strip():
            return (
                Reason.SECRET_KEY_NOT_FOUND,
                f"Secret {ns}/{ref.name} has no key {ref.key!r}, or it is empty",
            )
        try:
            await self.world.api.get(NODECLUSTERS, ns, receiver.spec.cluster_name)
        except KubeNotFound:
            return (
                Reason.CLUSTER_NOT_FOUND,
                f"NodeCluster {ns}/{receiver.spec.cluster_name} does not exist",
            )
        return None

    async def _write_ready(
        self, receiver: NodeClusterReceiver, problem: tuple[Reason, str] | None
    ) -> None:
        meta = receiver.metadata
        if problem is None:
            reason, message = (
                Reason.AS_EXPECTED,
                f"POST {PATH.format(namespace=meta.namespace, name=meta.name)} with the token "
                f"creates a {receiver.spec.action} operation on NodeCluster "
                f"{receiver.spec.cluster_name}",
            )
        else:
            reason, message = problem
        previous = receiver.status.conditions
        ready = condition(
            previous, "Ready", problem is None, reason, message, meta.generation, self.world.now()
        )
        conditions = replace_condition(previous, ready)
        if conditions == previous and receiver.status.observed_generation == meta.generation:
            return
        before = next((c for c in previous if c.type == "Ready"), None)
        if problem is not None and (before is None or before.reason != reason):
            # Once per new reason, as a person watching `kubectl describe` wants to know.
            involved = {
                "apiVersion": receiver.api_version,
                "kind": receiver.kind,
                "metadata": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid},
            }
            await self.world.api.event(involved, "Warning", reason, message)
        await self.world.api.patch(
            RECEIVERS,
            meta.namespace,
            meta.name,
            {
                "status": {
                    "observedGeneration": meta.generation,
                    "conditions": [c.wire() for c in conditions],
                }
            },
            status=True,
        )

    # -- the endpoint -------------------------------------------------------------------

    async def serve(self, address: str) -> str:
        """Serve the endpoint at `address` (HOST:PORT; port 0: a free one) on this loop;
        the bound address is logged and returned."""
        host, port = parse_address(address)
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(PATH, self.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as err:
            await runner.cleanup()
            raise SystemExit(f"cannot serve receivers at {address}: {err}") from err
        self._runner = runner
        bound = runner.addresses[0]
        self.address = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"
        log.info("Receivers served at http://%s/receivers/", self.address)
        return self.address

    async def close(self) -> None:
        """Stop serving, then finish the reconciles that run."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.queue.close()

    async def handle(self, request: web.Request) -> web.Response:
        """One request (see the module's docstring for the answers)."""
        key: NsName = (request.match_info["namespace"], request.match_info["name"])
        known = self.known.get(key) if self.world.settings.serves(key[0]) else None
        token = bearer_token(request.headers.get("Authorization"))
        if known is None or not await self._authorized(key, known, token):
            self._count(key if known is not None else ("", ""), "unauthorized")
            return web.json_response(
                UNAUTHORIZED, status=401, headers={"WWW-Authenticate": 'Bearer realm="receivers"'}
            )
        if not self.can_act():
            self._count(key, "standby")
            return _answer(
                503,
                "this replica stands by for the leader Lease: try again",
                {"Retry-After": str(STANDBY_RETRY_AFTER)},
            )
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self._count(key, "too_large")
            return _answer(413, f"the body may have at most {MAX_BODY_BYTES} bytes")
        try:
            payload = parse_payload(raw)
        except PayloadError as err:
            self._count(key, "bad_request")
            return _answer(400, str(err))
        who = caller(
            payload,
            request.remote,
            request.headers.get("X-Forwarded-For"),
            request.headers.get("User-Agent"),
        )
        try:
            async with self._lock(key):
                if payload.kind == "resolved":
                    return await self._resolved(key)
                return await self._trigger(key, who)
        except KubeError as err:
            self._count(key, "error")
            log.warning("Receiver %s/%s: the API server failed a call: %s", *key, err)
            return _answer(503, f"the API server failed a call: {err}", {"Retry-After": "5"})

    async def _authorized(self, key: NsName, body: dict[str, Any], token: str | None) -> bool:
        if token is None:
            return False
        try:
            receiver = NodeClusterReceiver.model_validate(body)
        except ValidationError:
            return False
        ref = receiver.spec.token_secret_ref
        found = await self._secret(key[0], ref.name)
        if isinstance(found, KubeError):
            self.queue.add(key)  # say so in Ready now, not at the next resync
            return False
        return token_matches(token, found.get(ref.key))

    async def _secret(
        self, namespace: str, name: str, fresh: bool = False
    ) -> SealedData | KubeError:
        """The Secret's data, or the error reading it, read at most every
        SECRET_CACHE_SECONDS (unless `fresh`)."""
        now = self.world.clock.monotonic()
        cached = self._secrets.get((namespace, name))
        if cached is not None and not fresh and 0 <= now - cached[0] < SECRET_CACHE_SECONDS:
            return cached[1]
        found: SealedData | KubeError
        try:
            found = SealedData(await self.world.api.read_secret(namespace, name))
        except KubeError as err:
            found = err
        if len(self._secrets) > 1000:  # receivers come and go: never grow without bound
            self._secrets.clear()
        self._secrets[(namespace, name)] = (now, found)
        return found

    async def _resolved(self, key: NsName) -> web.Response:
        body = await self._fresh(key)
        if body is None:
            self._count(key, "unauthorized")
            return web.json_response(UNAUTHORIZED, status=401)
        receiver = NodeClusterReceiver.model_validate(body)
        counts = receiver.status.counts.model_copy(
            update={"resolved": receiver.status.counts.resolved + 1}
        )
        await self._patch_status(body, {"counts": counts.wire()})
        self._count(key, "resolved")
        return _answer(200, "resolved: nothing to do", status_word="ignored")

    async def _trigger(self, key: NsName, who: ReceiverCaller) -> web.Response:
        api, ns = self.world.api, key[0]
        body = await self._fresh(key)
        if body is None:
            self._count(key, "unauthorized")
            return web.json_response(UNAUTHORIZED, status=401)
        receiver = NodeClusterReceiver.model_validate(body)
        # A trigger recorded but not created (a failure, a restart) is this request's
        # retry: the caller is told it succeeded, and it counts as no new trigger.
        finished = receiver.status.pending_operation
        if finished is not None:
            await self._complete(body, receiver)
            self._count(key, "triggered")
            return _answer(202, f"created NodeClusterOperation {finished}", operation=finished)
        try:
            cluster_body = await api.get(NODECLUSTERS, ns, receiver.spec.cluster_name)
        except KubeNotFound:
            self._count(key, "cluster_not_found")
            self.queue.add(key)
            return _answer(409, f"NodeCluster {ns}/{receiver.spec.cluster_name} does not exist")
        cluster = NodeCluster.model_validate(cluster_body)
        now = self.world.now()
        wait = retry_after(receiver, cluster, now)
        status = receiver.status
        if wait > 0:
            limited = ReceiverRateLimited(time=now, retry_after_seconds=wait, caller=who)
            counts = status.counts.model_copy(
                update={"rate_limited": status.counts.rate_limited + 1}
            )
            await self._patch_status(
                body, {"lastRateLimited": limited.wire(), "counts": counts.wire()}
            )
            self._count(key, "rate_limited")
            return _answer(
                429,
                f"NodeCluster {cluster.metadata.name}'s scaling cooldown allows the next "
                f"trigger in {wait}s",
                {"Retry-After": str(wait)},
            )
        sequence = status.counts.triggered + 1
        trigger = ReceiverTrigger(
            time=now, operation=operation_name(receiver, sequence), caller=who
        )
        counts = status.counts.model_copy(update={"triggered": sequence})
        body = await self._patch_status(
            body,
            {
                "lastTriggered": trigger.wire(),
                "pendingOperation": trigger.operation,
                "counts": counts.wire(),
            },
        )
        await self._complete(body, NodeClusterReceiver.model_validate(body))
        self._count(key, "triggered")
        log.info(
            "Receiver %s/%s created NodeClusterOperation %s (%s of %s) for %s",
            *key,
            trigger.operation,
            receiver.spec.action,
            receiver.spec.cluster_name,
            who.address,
        )
        return _answer(
            202, f"created NodeClusterOperation {trigger.operation}", operation=trigger.operation
        )

    async def _complete(
        self, body: dict[str, Any], receiver: NodeClusterReceiver
    ) -> dict[str, Any] | None:
        """Create the operation recorded in `pendingOperation` (an existing one is it),
        post its Event once, and clear the record; the receiver as stored then, or None
        when nothing was pending."""
        name = receiver.status.pending_operation
        trigger = receiver.status.last_triggered
        if name is None:
            return None
        if trigger is None or trigger.operation != name:
            trigger = ReceiverTrigger(time=self.world.now(), operation=name)
        api, meta = self.world.api, receiver.metadata
        # An existing one was created by an attempt whose answer was lost, or before a restart.
        with contextlib.suppress(KubeConflict):
            await api.create(OPERATIONS, meta.namespace or "", operation_body(receiver, trigger))
        who = trigger.caller
        by = who.address or "unknown address"
        if who.alertmanager_receiver:
            by += f" (Alertmanager receiver {who.alertmanager_receiver})"
        await post_once(
            api,
            event_name(meta.name, meta.uid, "Triggered", name),
            body,
            "Normal",
            "Triggered",
            f"Created NodeClusterOperation {name} ({receiver.spec.action} of NodeCluster "
            f"{receiver.spec.cluster_name}) for a request from {by}",
        )
        return await self._patch_status(body, {"pendingOperation": None})

    async def _fresh(self, key: NsName) -> dict[str, Any] | None:
        try:
            body = await self.world.api.get(RECEIVERS, *key)
        except KubeNotFound:
            return None
        self.known[key] = body
        return body

    async def _patch_status(self, body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """A status patch conditioned on the body's resourceVersion (a conflict raises: the
        caller is asked to retry, and reads afresh); the body as stored after it."""
        meta = body["metadata"]
        stored = await self.world.api.patch(
            RECEIVERS,
            meta["namespace"],
            meta["name"],
            {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status},
            status=True,
        )
        self.known[(meta["namespace"], meta["name"])] = stored
        return stored

    def _lock(self, key: NsName) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _count(self, key: NsName, outcome: Outcome) -> None:
        self.world.metrics.receiver_requests.labels(key[0], key[1], outcome).inc()


def _generation(body: Mapping[str, Any]) -> object:
    return (body.get("metadata") or {}).get("generation")


def _answer(
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
    operation: str | None = None,
    status_word: str | None = None,
) -> web.Response:
    body: dict[str, Any] = {"message": message}
    if operation is not None:
        body["operation"] = operation
    if status_word is not None:
        body["result"] = status_word
    return web.json_response(body, status=status, headers=dict(headers or {}))
