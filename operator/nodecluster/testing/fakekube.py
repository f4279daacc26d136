"""FakeKube: an in-memory kube-apiserver for exactly the calls of `KubeApi`.

Why a fake server and not a mock: the controllers are correct only because of rules the
API server enforces: which writes bump `metadata.generation`, that the main endpoint drops
`status` and the status subresource drops everything else, that a stale
`metadata.resourceVersion` is refused, that finalizers turn a delete into a mark, that
dependents follow their owner. A mock answers what its author believes; this fake holds
those rules in one place, and `tests/e2e/test_fake_honesty.py` plays one scenario against
it and against a real kube-apiserver and asserts that both end the same way, so what it
believes is checked against the real thing.

What behaves as on the real server (checked by that honesty test):

- one global, increasing `resourceVersion` (etcd's revision) written on every change, and
  none on a write that changes nothing;
- `generation` 1 on create, +1 when anything but metadata and status changes, and +1 when
  a delete marks an object that has finalizers (`deletionTimestamp` and
  `deletionGracePeriodSeconds: 0` set); a second delete of a marked object changes nothing;
- every kind has a status subresource: create and main-endpoint patches keep the stored
  status, status patches keep everything else;
- RFC 7386 merge patches; `metadata.resourceVersion` in a patch is a precondition (409);
  a patch cannot change what the server owns (generation and creationTimestamp are
  silently kept; uid, deletionGracePeriodSeconds and setting deletionTimestamp are 422);
  no new finalizer on an object being deleted (422);
- a patch that removes a deleting object's last finalizer is never stored: the object
  goes at once (one DELETED event carrying the last stored body, no MODIFIED), and the
  answer is the patched body with the resourceVersion it had before (the answer is in
  the honesty test; the watch events were checked by hand against kube-apiserver
  v1.37.2, since that test does not watch);
- 422 for names, label keys and values, annotation keys, finalizer names and owner
  references that kube-apiserver refuses, with its messages (`metadata.labels: Invalid
  value: "Batch Jobs": ...`);
- garbage collection with background propagation: when an object is removed, dependents
  whose every owner is gone are deleted (and, as the garbage collector does, references
  to gone owners are removed from dependents that keep another owner).

- evictions (`evict`) as the eviction subresource decides them against the
  PodDisruptionBudgets stored (pods not running or already deleting ignore the budget; an
  unobserved budget is a 429, one allowing nothing a 429 with the `DisruptionBudget`
  cause, two budgets a 500), and the graceful deletion of a pod bound to a Node: it stays
  terminating for its kubelet (`vanish`) unless its grace period is 0; pods listed by
  field selector (`spec.nodeName=`). The budget's status is a test's to set: the
  disruption controller is not modelled.

What it deliberately does not do: validate or prune against the CRD schemas (the CRDs
are tested on their own), managedFields and server-side apply, namespaces (every
namespace exists), admission and RBAC, set-based label selectors. Garbage collection
happens at once, inside the call that removed the owner; the real garbage collector in
kube-controller-manager works asynchronously, seconds later. A test that needs the window
in between can hold a watch (see `Watch.hold`) but not the store.

Three things for tests beyond the `KubeApi` calls:

- Watches: `fake.watch(CLUSTERNODES, initial=True)` returns a `Watch`, subscribed at once,
  that yields a `WatchEvent` for every change in order (`async for event in watch`), or
  hands over what is there without waiting (`watch.drain()`). `hold()`/`release()` and
  `lag` simulate a watch that falls behind the store.
- Faults: `fake.fail("patch", "clusternodes", 409)`, `fake.fail(..., after_effect=True)`
  (the write happens, the answer is lost), `fake.slow(...)`, `fake.hang(...)`; each
  returns the `Fault`, which fires `times` times (None: until `fake.remove(fault)`).
- A journal: `fake.calls` (a `Call` per API call, with its outcome), `fake.writes` (create,
  patch, delete and event calls, counted as `KubeClient.writes` counts them), and
  `fake.events` (the core/v1 Events posted).
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import datetime
import json
import logging
import math
import random
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast, get_args

from nodecluster import GROUP
from nodecluster.clock import Clock, SystemClock, rfc3339
from nodecluster.controllers.kubeapi import (
    PODDISRUPTIONBUDGETS,
    PODS,
    Kind,
    KubeConflict,
    KubeDisruptionBlocked,
    KubeError,
    event_body,
    kube_error,
    named_event_body,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

Verb = Literal[
    "get", "list", "create", "patch", "patch_status", "delete", "read_secret", "event", "evict"
]
"""The API calls faults and the journal are keyed by (`patch_status`: a status patch)."""

VERBS: frozenset[str] = frozenset(get_args(Verb))

WRITE_VERBS: frozenset[str] = frozenset(
    {"create", "patch", "patch_status", "delete", "event", "evict"}
)
"""The verbs `FakeKube.writes` counts: the same calls `KubeClient.writes` counts."""

EventType = Literal["ADDED", "MODIFIED", "DELETED"]

Outcome = Literal["pending", "ok", "error", "cancelled"]

ObjectKey = tuple[str, str, str]
"""(plural, namespace or "" for cluster-scoped kinds, name): where an object is stored."""

SECRETS = "secrets"
EVENTS = "events"
NAMESPACES = "namespaces"

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""The alphabet of generated name suffixes, as kube-apiserver's (no vowels: no words)."""

MAX_GENERATE_NAME_PREFIX = 58
"""kube-apiserver cuts generateName to this, so that prefix + 5 characters fit in 63."""

ANNOTATIONS_SIZE_LIMIT = 256 * 1024
"""Bytes of all annotation keys and values of one object (TotalAnnotationSizeLimitB)."""

# The server's own regexes and messages (k8s.io/apimachinery/pkg/util/validation), so a
# test that matches on a message matches the real server's too.
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character"
)
_LABEL_VALUE_FMT = f"({_QUALIFIED_NAME_FMT})?"
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character"
)
_DNS_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN_FMT = _DNS_LABEL_FMT + "(\\." + _DNS_LABEL_FMT + ")*"
_DNS_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)
_NAME_PART_MAX = 63
_LABEL_VALUE_MAX = 63
_DNS_SUBDOMAIN_MAX = 253

_SERVER_OWNED_METADATA = (
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
"""Metadata a write cannot change: the server puts the stored values back (or refuses the
write: see `_immutable_errors`)."""


@dataclass(frozen=True)
class WatchEvent:
    """One change of the store, as a watch delivers it."""

    kind: str
    """The plural of the object's kind (`Kind.plural`), e.g. "clusternodes"."""
    type: EventType
    """ADDED, MODIFIED or DELETED."""
    body: dict[str, Any]
    """The object as of this change (for DELETED: its last body). A copy per watch."""


@dataclass
class Fault:
    """A misbehaviour of the server for the calls that match `verb`, `resource` and `name`.

    A firing fault first waits `latency` seconds (on the event loop's clock: free under
    looptime), then answers with HTTP `status`, or never answers (`hang`) until the
    caller is cancelled. With `after_effect` the write happens first: the server did
    it, and the client never heard (a lost response).
    """

    verb: Verb
    """The call it applies to."""
    resource: str | None = None
    """A kind's plural, "secrets" or "events"; None: any."""
    name: str | None = None
    """Only calls about the object of this name (for events: the involved object); None:
    any (lists have no name: a fault with one never matches a list)."""
    status: int | None = None
    """The HTTP status to answer with (403, 404, 409, 422, 500, 503, ...)."""
    message: str = "injected by FakeKube"
    """The error message the caller sees."""
    after_effect: bool = False
    """Answer (with `status`, or by hanging) only after the write took effect."""
    latency: float = 0.0
    """Seconds to wait before answering."""
    hang: bool = False
    """Never answer; the caller waits until it is cancelled."""
    times: int | None = 1
    """How often it fires; None: until removed."""
    skip: int = 0
    """Matching calls let through before it starts firing ("the second status write")."""
    probability: float = 1.0
    """The chance that it fires on a matching call (drawn from the fake's seeded random):
    faults at random points, the same points on every run with the same seed."""
    fired: int = 0
    """How often it has fired so far."""
    seen: int = 0
    """Matching calls so far, fired or not."""

    def __post_init__(self) -> None:
        if self.verb not in VERBS:
            raise ValueError(f"unknown verb {self.verb!r}; one of {sorted(VERBS)}")
        if self.status is not None and self.status < 400:
            raise ValueError(f"a fault's status is an error status, not {self.status}")
        if self.status is None and not self.hang and self.latency <= 0:
            raise ValueError("a fault needs a status, a latency or a hang")

    @property
    def active(self) -> bool:
        """Whether it will fire again."""
        return self.times is None or self.fired < self.times

    @property
    def answers(self) -> bool:
        """Whether it replaces the server's answer (an error or a hang), not only delays it."""
        return self.status is not None or self.hang

    def matches(self, verb: str, resource: str, name: str | None) -> bool:
        """Whether a call is one this fault is about."""
        return (
            self.verb == verb
            and self.resource in (None, resource)
            and (self.name is None or self.name == name)
        )


@dataclass
class Call:
    """One API call as the fake answered it: the journal's entry."""

    verb: Verb
    resource: str
    """The kind's plural, "secrets" or "events"."""
    namespace: str | None
    name: str | None
    """For a create with generateName: the generated name, once known."""
    outcome: Outcome = "pending"
    """pending (not answered yet, e.g. hanging), ok, error, or cancelled."""
    status: int | None = None
    """The HTTP status answered (404 also for a delete of a missing object, which is ok)."""
    injected: bool = False
    """Whether a `Fault` decided the answer."""


class _Sealed:
    """A Secret's data that never shows itself: not in a repr, a log line or a failing
    assertion's output, even when a test prints the fake's attributes."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str]) -> None:
        self._data = dict(data)

    def reveal(self) -> dict[str, str]:
        return dict(self._data)

    def __repr__(self) -> str:
        return f"<secret data: {len(self._data)} keys>"


class Watch:
    """A subscription to the fake's changes, opened by `FakeKube.watch`.

    It is registered when created, so no change made after `watch()` returned is missed,
    however late the first `__anext__` comes. Events are delivered in the order of the
    changes. `hold()` keeps them back until `release()`, and `lag` delays each by that
    many seconds of loop time: a watch behind the store, as a busy real one is, where a
    controller reads a newer object than the event it is handling.
    """

    def __init__(
        self, kinds: frozenset[str] | None, lag: float, on_close: Callable[[Watch], None]
    ) -> None:
        self.kinds = kinds
        """The plurals delivered; None: all."""
        self.lag = lag
        """Seconds (loop time) each event is held back after its change."""
        self._buffer: collections.deque[tuple[float, WatchEvent]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._held = False
        self._closed = False
        self._on_close = on_close

    def wants(self, kind: str) -> bool:
        """Whether changes of this kind go to this watch."""
        return self.kinds is None or kind in self.kinds

    def offer(self, event: WatchEvent, at: float) -> None:
        """Queue a change that happened at loop time `at` (the fake calls this)."""
        if self._closed or not self.wants(event.kind):
            return
        self._buffer.append((at, WatchEvent(event.kind, event.type, _json_copy(event.body))))
        self._wakeup.set()

    def hold(self) -> None:
        """Keep events back (they still queue) until `release()`."""
        self._held = True

    def release(self) -> None:
        """Deliver what was held back, in order."""
        self._held = False
        self._wakeup.set()

    def pending(self) -> int:
        """How many events are queued, deliverable or not."""
        return len(self._buffer)

    def drain(self) -> builtins.list[WatchEvent]:
        """Every event deliverable now (not held, lag passed), without waiting."""
        out: builtins.list[WatchEvent] = []
        while self._buffer and self._due_in() <= 0:
            out.append(self._buffer.popleft()[1])
        return out

    def close(self) -> None:
        """End the watch: iteration stops, queued events are dropped, nothing more comes."""
        if self._closed:
            return
        self._closed = True
        self._buffer.clear()
        self._wakeup.set()
        self._on_close(self)

    def _due_in(self) -> float:
        """Seconds until the first queued event may be delivered (inf: none, or held)."""
        if self._held or not self._buffer:
            return math.inf
        at = self._buffer[0][0]
        if self.lag <= 0 or at == -math.inf:
            return 0.0
        return at + self.lag - asyncio.get_running_loop().time()

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        return self

    async def __anext__(self) -> WatchEvent:
        while True:
            if self._closed:
                raise StopAsyncIteration
            wait = self._due_in()
            if wait <= 0:
                return self._buffer.popleft()[1]
            # Checking and clearing happen with no await in between, so a change offered
            # meanwhile is never lost: offer() sets the event after this clear().
            self._wakeup.clear()
            if math.isinf(wait):
                await self._wakeup.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=wait)

    def __repr__(self) -> str:
        kinds = "all" if self.kinds is None else ",".join(sorted(self.kinds))
        state = "closed" if self._closed else ("held" if self._held else "open")
        return f"Watch({kinds}, {state}, pending={len(self._buffer)})"


class FakeKube:
    """An in-memory API server implementing `KubeApi`, with watches, faults and a journal.

    Objects are stored per (plural, namespace, name) as JSON-ready dicts and copied in
    and out, so no caller can change the store except through the API. Timestamps come
    from `clock` (with `LoopClock`, call it inside the running loop); `seed` makes uids
    and generated names repeat from run to run.
    """

    def __init__(self, clock: Clock | None = None, seed: int | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.calls: builtins.list[Call] = []
        """The journal: every API call in the order it came in."""
        self.events: builtins.list[dict[str, Any]] = []
        """Every core/v1 Event posted (and not refused), as stored; Events are kept apart
        from the objects (no watch sees them): the controllers only read one back by name
        (`read_event`), never list or watch them."""
        self.history: builtins.list[WatchEvent] = []
        """Every change of the store in order, as a watch opened at the start saw them."""
        self.closed = False
        """Whether `close()` was called (the fake keeps answering: tests may read on)."""
        self._objects: dict[ObjectKey, dict[str, Any]] = {}
        self._secrets: dict[tuple[str, str], _Sealed] = {}
        self._faults: builtins.list[Fault] = []
        self._watches: builtins.list[Watch] = []
        self._revision = 0
        self._random = random.Random(seed)
        self.cluster_identity = str(uuid.UUID(int=self._random.getrandbits(128), version=4))
        """The uid of this fake cluster's kube-system Namespace (`cluster_uid`)."""

    def __repr__(self) -> str:
        return (
            f"FakeKube(objects={len(self._objects)}, revision={self._revision}, "
            f"calls={len(self.calls)}, faults={len(self._faults)}, watches={len(self._watches)})"
        )

    # -- KubeApi ---------------------------------------------------------------------------

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        """See KubeApi.get."""
        call = Call("get", kind.plural, namespace, name)
        return await self._serve(call, lambda: _json_copy(self._existing(kind, namespace, name)))

    async def pages(
        self, kind: Kind, namespace: str | None, limit: int = 1000
    ) -> AsyncIterator[builtins.list[dict[str, Any]]]:
        """See KubeApi.pages: the list, in pages of `limit` (one list call, as the fake
        answers a list at once; the real server answers each page)."""
        items = await self.list(kind, namespace)
        for start in range(0, max(len(items), 1), limit):
            yield items[start : start + limit]

    async def list(
        self, kind: Kind, namespace: str | None, selector: str = "", fields: str = ""
    ) -> builtins.list[dict[str, Any]]:
        """See KubeApi.list: sorted by namespace and name, as etcd's key order is. Field
        selectors are equality terms on any path (`spec.nodeName=x`); the real server
        takes only the fields each kind supports (for pods spec.nodeName among them)."""
        call = Call("list", kind.plural, namespace, None)

        def answer() -> builtins.list[dict[str, Any]]:
            requirements = parse_selector(selector)
            field_terms = parse_field_selector(fields)
            return [
                _json_copy(body)
                for body in self._bodies(kind, namespace)
                if _selected(body, requirements) and _fields_match(body, field_terms)
            ]

        return await self._serve(call, answer)

    async def create(self, kind: Kind, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """See KubeApi.create: status in the body is dropped (status subresource)."""
        call = Call("create", kind.plural, namespace, body.get("metadata", {}).get("name"))

        def effect() -> dict[str, Any]:
            stored = self._insert(kind, namespace, body, seeding=False)
            call.name = stored["metadata"]["name"]
            return _json_copy(stored)

        return await self._serve(call, effect, ok=201)

    async def patch(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        status: bool = False,
    ) -> dict[str, Any]:
        """See KubeApi.patch: the main endpoint ignores `status`, the status subresource
        everything else; a deleting object left without finalizers is removed."""
        verb: Verb = "patch_status" if status else "patch"
        call = Call(verb, kind.plural, namespace, name)
        return await self._serve(
            call, lambda: _json_copy(self._apply_patch(kind, namespace, name, patch, status))
        )

    async def delete(self, kind: Kind, namespace: str | None, name: str) -> None:
        """See KubeApi.delete: a missing object is fine (journaled with status 404)."""
        call = Call("delete", kind.plural, namespace, name)

        def effect() -> None:
            key = self._key(kind, namespace, name)
            if key not in self._objects:
                call.status = 404
                return
            self._delete_object(key)

        await self._serve(call, effect)

    async def evict(self, namespace: str, name: str) -> None:
        """See KubeApi.evict: as kube-apiserver's eviction subresource decides, with the
        PodDisruptionBudgets stored here (`add(PODDISRUPTIONBUDGETS, ...)`).

        A pod that is not running (Pending, Succeeded, Failed) or is being deleted already
        is deleted without asking its budget. Otherwise its budget (the one budget of its
        namespace whose selector matches it; two are a 500, as on the real server) must
        have observed its generation (else 429) and allow a disruption
        (`status.disruptionsAllowed`; else 429 `KubeDisruptionBlocked` with the server's
        cause); the eviction takes one (disruptionsAllowed - 1, the pod noted in
        disruptedPods) before deleting the pod. The disruption controller that recomputes
        budgets is not modelled: a test sets a budget's status as that controller would.
        The pod is deleted as `delete` deletes it: one bound to a Node with a grace period
        stays terminating until `vanish` (its kubelet) removes it.
        """
        call = Call("evict", PODS.plural, namespace, name)

        def effect() -> None:
            key = self._key(PODS, namespace, name)
            pod = self._existing(PODS, namespace, name)
            phase = (pod.get("status") or {}).get("phase", "Pending")
            ignores_budget = phase in ("Pending", "Succeeded", "Failed") or bool(
                pod["metadata"].get("deletionTimestamp")
            )
            if not ignores_budget:
                self._take_disruption(pod)
            self._delete_object(key)

        await self._serve(call, effect, ok=201)

    def _take_disruption(self, pod: dict[str, Any]) -> None:
        """Take one disruption from the pod's budget, or refuse as the server does."""
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        budgets = [
            b
            for b in self._bodies(PODDISRUPTIONBUDGETS, meta.get("namespace"))
            if _label_selector_matches((b.get("spec") or {}).get("selector"), labels)
        ]
        if len(budgets) > 1:
            raise kube_error(
                500,
                "This pod has more than one PodDisruptionBudget, which the eviction "
                "subresource does not support.",
            )
        if not budgets:
            return
        budget = _json_copy(budgets[0])
        bmeta, status = budget["metadata"], budget.setdefault("status", {})
        if status.get("observedGeneration", 0) < bmeta.get("generation", 0):
            raise kube_error(
                429,
                "Cannot evict pod as it would violate the pod's disruption budget. The "
                f"disruption budget {bmeta['name']} is still being processed by the server.",
            )
        if status.get("disruptionsAllowed", 0) <= 0:
            raise KubeDisruptionBlocked(
                429,
                f"The disruption budget {bmeta['name']} needs "
                f"{status.get('desiredHealthy', 0)} healthy pods and has "
                f"{status.get('currentHealthy', 0)} currently",
            )
        status["disruptionsAllowed"] -= 1
        disrupted = status.setdefault("disruptedPods", {})
        disrupted[meta["name"]] = rfc3339(self.clock.now())
        bmeta["resourceVersion"] = self._next_revision()
        key = self._key(PODDISRUPTIONBUDGETS, bmeta.get("namespace"), bmeta["name"])
        self._objects[key] = budget
        self._publish(PODDISRUPTIONBUDGETS.plural, "MODIFIED", budget)

    async def cluster_uid(self) -> str:
        """See KubeApi.cluster_uid: `cluster_identity` (faults: verb get, "namespaces")."""
        call = Call("get", NAMESPACES, None, "kube-system")
        return await self._serve(call, lambda: self.cluster_identity)

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """See KubeApi.read_secret: the data given to `put_secret`."""
        call = Call("read_secret", SECRETS, namespace, name)

        def answer() -> dict[str, str]:
            sealed = self._secrets.get((namespace, name))
            if sealed is None:
                raise kube_error(404, f'secrets "{name}" not found')
            return sealed.reveal()

        return await self._serve(call, answer)

    async def event(self, involved: dict[str, Any], etype: str, reason: str, message: str) -> None:
        """See KubeApi.event: recorded in `events`; a failure (injected) is logged, never
        raised, as `KubeClient.event` does."""
        meta = involved.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        call = Call("event", EVENTS, namespace, meta.get("name"))

        def effect() -> None:
            self.events.append(self._event_body(involved, etype, reason, message))

        try:
            await self._serve(call, effect, ok=201)
        except KubeError as err:
            log.warning("could not post event %s on %s: %s", reason, meta.get("name"), err)

    async def post_event(
        self, name: str, involved: dict[str, Any], etype: str, reason: str, message: str
    ) -> bool:
        """See KubeApi.post_event: recorded in `events` unless one of that name (and
        namespace) is there already, as the server's 409 would say; faults raise."""
        meta = involved.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        call = Call("event", EVENTS, namespace, meta.get("name"))

        def effect() -> None:
            if any(
                e["metadata"]["name"] == name and e["metadata"]["namespace"] == namespace
                for e in self.events
            ):
                raise kube_error(409, f'events "{name}" already exists')
            self.events.append(self._event_body(involved, etype, reason, message, name=name))

        try:
            await self._serve(call, effect, ok=201)
        except KubeConflict:
            return False
        return True

    async def read_event(self, namespace: str, name: str) -> dict[str, Any]:
        """See KubeApi.read_event: from `events` (which never expire here); journaled as a
        get of "events" by the Event's own name."""
        call = Call("get", EVENTS, namespace, name)

        def answer() -> dict[str, Any]:
            for event in self.events:
                meta = event["metadata"]
                if (meta["name"], meta["namespace"]) == (name, namespace):
                    return _json_copy(event)
            raise kube_error(404, f'events "{name}" not found')

        return await self._serve(call, answer)

    async def close(self) -> None:
        """See KubeApi.close. Nothing to release; the fake stays readable."""
        self.closed = True

    # -- setting up and looking -------------------------------------------------------------

    def add(self, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
        """Store an object as if it had got there through the API, status included; for
        setting up a test. Not journaled and no faults; watches see it ADDED.

        Server-owned metadata is filled in where missing; a `deletionTimestamp` given is
        kept, so an object can start out being deleted.
        """
        namespace = body.get("metadata", {}).get("namespace") or "default"
        return _json_copy(self._insert(kind, namespace, body, seeding=True))

    def vanish(self, kind: Kind, namespace: str | None, name: str) -> None:
        """Remove an object at once, whatever its finalizers or grace period, as a kubelet
        does with a pod it has stopped (or `--force --grace-period=0`). Not journaled; a
        missing object is fine."""
        key = self._key(kind, namespace, name)
        if key in self._objects:
            self._remove(key)

    def stored(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored object, or None; not journaled and no faults (for assertions)."""
        body = self._objects.get(self._key(kind, namespace, name))
        return None if body is None else _json_copy(body)

    def objects(self, kind: Kind, namespace: str | None = None) -> builtins.list[dict[str, Any]]:
        """Every stored object of a kind (in a namespace; None: all), sorted as `list`."""
        return [_json_copy(body) for body in self._bodies(kind, namespace)]

    def snapshot(self) -> dict[ObjectKey, dict[str, Any]]:
        """The whole store, to compare before and after (`assert fake.snapshot() == before`)."""
        return {key: _json_copy(body) for key, body in sorted(self._objects.items())}

    @property
    def revision(self) -> int:
        """The last resourceVersion written (0: nothing yet)."""
        return self._revision

    def put_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        """Store a Secret's data as plain strings (read_secret returns them decoded)."""
        self._secrets[(namespace, name)] = _Sealed(data)

    def delete_secret(self, namespace: str, name: str) -> None:
        """Remove a Secret; a missing one is fine."""
        self._secrets.pop((namespace, name), None)

    def events_about(
        self, name: str | None = None, reason: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """The Events posted about an object (by name) and/or with a reason."""
        return [
            _json_copy(event)
            for event in self.events
            if (name is None or event["involvedObject"].get("name") == name)
            and (reason is None or event["reason"] == reason)
        ]

    # -- the journal -------------------------------------------------------------------------

    @property
    def writes(self) -> int:
        """Write calls (create, patch, status patch, delete, event) journaled, whatever
        their outcome: what `KubeClient.writes` would count."""
        return sum(1 for call in self.calls if call.verb in WRITE_VERBS)

    def calls_of(
        self, verb: Verb | None = None, resource: str | None = None, name: str | None = None
    ) -> builtins.list[Call]:
        """The journal's calls with this verb, resource and object name (None: any)."""
        return [
            call
            for call in self.calls
            if (verb is None or call.verb == verb)
            and (resource is None or call.resource == resource)
            and (name is None or call.name == name)
        ]

    def reset_journal(self) -> None:
        """Forget the calls and Events so far: for "after setup, X writes nothing"."""
        self.calls.clear()
        self.events.clear()

    # -- faults ------------------------------------------------------------------------------

    def inject(self, fault: Fault) -> Fault:
        """Add a fault; faults are consulted in the order they were injected."""
        self._faults.append(fault)
        return fault

    def fail(
        self,
        verb: Verb,
        resource: str | None = None,
        status: int = 500,
        *,
        name: str | None = None,
        after_effect: bool = False,
        times: int | None = 1,
        message: str = "injected by FakeKube",
        skip: int = 0,
        probability: float = 1.0,
    ) -> Fault:
        """Answer matching calls with an error (after the write, with `after_effect`)."""
        return self.inject(
            Fault(
                verb,
                resource,
                name,
                status=status,
                message=message,
                after_effect=after_effect,
                times=times,
                skip=skip,
                probability=probability,
            )
        )

    def slow(
        self,
        verb: Verb,
        resource: str | None = None,
        seconds: float = 1.0,
        *,
        name: str | None = None,
        times: int | None = 1,
    ) -> Fault:
        """Answer matching calls normally, `seconds` later."""
        return self.inject(Fault(verb, resource, name, latency=seconds, times=times))

    def hang(
        self,
        verb: Verb,
        resource: str | None = None,
        *,
        name: str | None = None,
        after_effect: bool = False,
        times: int | None = 1,
    ) -> Fault:
        """Never answer matching calls (after doing the write, with `after_effect`)."""
        return self.inject(
            Fault(verb, resource, name, hang=True, after_effect=after_effect, times=times)
        )

    def remove(self, fault: Fault) -> None:
        """Stop a fault from firing; removing one that is gone already is fine."""
        with contextlib.suppress(ValueError):
            self._faults.remove(fault)

    def clear_faults(self) -> None:
        """Remove every fault."""
        self._faults.clear()

    @property
    def faults(self) -> builtins.list[Fault]:
        """The faults injected and not removed (spent ones included: see `Fault.fired`)."""
        return builtins.list(self._faults)

    # -- watches -----------------------------------------------------------------------------

    def watch(self, *kinds: Kind | str, initial: bool = False, lag: float = 0.0) -> Watch:
        """Subscribe to changes of these kinds (none named: all), from now on.

        With `initial`, the watch starts with an ADDED event for every stored object of
        those kinds, as kopf's initial listing does, with no gap between listing and
        watching.
        """
        plurals = frozenset(k.plural if isinstance(k, Kind) else k for k in kinds) or None
        watch = Watch(plurals, lag, self._watches.remove)
        if initial:
            for (plural, _, _), body in sorted(self._objects.items()):
                watch.offer(WatchEvent(plural, "ADDED", body), at=-math.inf)
        self._watches.append(watch)
        return watch

    # -- the server's rules ------------------------------------------------------------------

    async def _serve(self, call: Call, effect: Callable[[], T], ok: int = 200) -> T:
        """Answer one call: journal it, let faults fire, do its effect, record the outcome."""
        self.calls.append(call)
        try:
            answer, delay = self._fire_faults(call)
            if delay > 0:
                await asyncio.sleep(delay)
            if answer is not None and not answer.after_effect:
                await self._injected_answer(call, answer)
            try:
                result = effect()
            except KubeError as err:
                call.outcome, call.status = "error", err.status
                raise
            if answer is not None:
                await self._injected_answer(call, answer)
        except asyncio.CancelledError:
            call.outcome = "cancelled"
            raise
        call.outcome = "ok"
        if call.status is None:
            call.status = ok
        log.debug(
            "%s %s %s/%s: %s", call.verb, call.resource, call.namespace, call.name, call.status
        )
        return result

    def _fire_faults(self, call: Call) -> tuple[Fault | None, float]:
        """Count the faults that fire for this call; return the one that answers it and
        the seconds to wait first.

        Every matching latency-only fault fires (their delays add up); of the faults that
        answer (an error or a hang), only the first injected fires, so a second one waits
        for the next call.
        """
        matching = []
        for f in self._faults:
            if not (f.active and f.matches(call.verb, call.resource, call.name)):
                continue
            f.seen += 1
            if f.seen <= f.skip:
                continue
            if f.probability < 1.0 and self._random.random() >= f.probability:
                continue
            matching.append(f)
        answer = next((f for f in matching if f.answers), None)
        firing = [f for f in matching if f is answer or not f.answers]
        for fault in firing:
            fault.fired += 1
        return answer, sum(f.latency for f in firing)

    @staticmethod
    async def _injected_answer(call: Call, fault: Fault) -> None:
        """Answer as the fault says: hang until cancelled, or raise its error."""
        call.injected = True
        if fault.hang:
            await asyncio.get_running_loop().create_future()  # never resolved
        assert fault.status is not None
        call.outcome, call.status = "error", fault.status
        raise kube_error(fault.status, fault.message)

    def _key(self, kind: Kind, namespace: str | None, name: str) -> ObjectKey:
        if not kind.namespaced:
            return (kind.plural, "", name)
        if not namespace:
            # KubeClient then asks for /apis/<group>/<version>/<plural>/<name>: no such route.
            raise kube_error(404, "the server could not find the requested resource")
        return (kind.plural, namespace, name)

    def _existing(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        body = self._objects.get(self._key(kind, namespace, name))
        if body is None:
            raise kube_error(404, f'{_resource(kind)} "{name}" not found')
        return body

    def _bodies(self, kind: Kind, namespace: str | None) -> builtins.list[dict[str, Any]]:
        scoped = namespace if kind.namespaced else None
        return [
            body
            for (plural, ns, _), body in sorted(self._objects.items())
            if plural == kind.plural and (scoped is None or ns == scoped)
        ]

    def _next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    def _new_uid(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def _insert(
        self, kind: Kind, namespace: str, body: dict[str, Any], seeding: bool
    ) -> dict[str, Any]:
        """Store a new object: name it, validate it, fill in what the server owns. With
        `seeding` (add()), status and server-owned metadata given are kept."""
        obj = _json_copy(body)
        meta = obj.setdefault("metadata", {})
        if kind.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise kube_error(
                    400,
                    "the namespace of the provided object does not match the namespace "
                    "sent on the request",
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._generated_name(kind, meta)
        name = meta.get("name") or ""
        errors = _metadata_errors(meta)
        if errors:
            raise _invalid(obj, name, errors)
        if not seeding and meta.get("resourceVersion"):
            raise kube_error(500, "resourceVersion should not be set on objects to be created")
        key = self._key(kind, namespace, name)
        if key in self._objects:
            raise kube_error(409, f'{_resource(kind)} "{name}" already exists')
        if seeding:  # add(): an object as it may be after any history
            meta.setdefault("uid", self._new_uid())
            meta.setdefault("creationTimestamp", rfc3339(self.clock.now()))
            meta.setdefault("generation", 1)
        else:
            obj.pop("status", None)  # the status subresource: a create never sets status
            for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                meta.pop(field, None)
            meta["uid"] = self._new_uid()
            meta["creationTimestamp"] = rfc3339(self.clock.now())
            meta["generation"] = 1
        meta["resourceVersion"] = self._next_revision()
        self._objects[key] = obj
        self._publish(kind.plural, "ADDED", obj)
        return obj

    def _generated_name(self, kind: Kind, meta: dict[str, Any]) -> str:
        prefix = str(meta["generateName"])[:MAX_GENERATE_NAME_PREFIX]
        while True:  # the real server retries a taken name too
            name = prefix + "".join(self._random.choice(NAME_ALPHABET) for _ in range(5))
            if (kind.plural, meta.get("namespace", ""), name) not in self._objects:
                return name

    def _apply_patch(
        self, kind: Kind, namespace: str | None, name: str, patch: dict[str, Any], status: bool
    ) -> dict[str, Any]:
        """Merge-patch an object under the server's rules; return it as stored."""
        key = self._key(kind, namespace, name)
        old = self._existing(kind, namespace, name)
        patch = _json_copy(patch)
        wanted_version = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted_version is not None and wanted_version != old["metadata"]["resourceVersion"]:
            raise kube_error(
                409,
                f'Operation cannot be fulfilled on {_resource(kind)} "{name}": the '
                "object has been modified; please apply your changes to the latest version "
                "and try again",
            )
        if status:
            new = _json_copy(old)
            if "status" in patch:
                new = merge_patch(new, {"status": patch["status"]})
        else:
            new = self._patched_main(old, patch, name)
        if new == old:
            return old  # nothing changed: no write, no new resourceVersion, no event
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            # As the real server: the update is never stored. The object goes at once
            # (DELETED carries the last stored body, finalizers and all), and the answer
            # is the patched body with the resourceVersion it had.
            self._remove(key)
            return new
        meta["resourceVersion"] = self._next_revision()
        self._objects[key] = new
        self._publish(kind.plural, "MODIFIED", new)
        return new

    def _patched_main(
        self, old: dict[str, Any], patch: dict[str, Any], name: str
    ) -> dict[str, Any]:
        """A main-endpoint patch applied: status and server-owned metadata kept, validated,
        generation bumped when the spec (anything but metadata and status) changed."""
        new: dict[str, Any] = merge_patch(old, patch)
        if not isinstance(new.get("metadata"), dict):
            new["metadata"] = {}
        meta, old_meta = new["metadata"], old["metadata"]
        for field in ("name", "namespace"):
            given = meta.get(field)
            if given not in (None, "", old_meta.get(field)):
                raise kube_error(
                    400,
                    f"the {field} of the object ({given}) does not match the {field} on the "
                    f"URL ({old_meta.get(field)})",
                )
            if field in old_meta:
                meta[field] = old_meta[field]
        errors = _immutable_errors(meta, old_meta)
        for field in (*_SERVER_OWNED_METADATA, "resourceVersion"):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        for field in ("apiVersion", "kind"):
            if field in old:
                new[field] = old[field]
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
        errors += _metadata_errors(meta)
        if old_meta.get("deletionTimestamp"):
            added = [
                f for f in meta.get("finalizers") or [] if f not in old_meta.get("finalizers", [])
            ]
            if added:
                errors.append(
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the "
                    f"object is being deleted, found new finalizers {_go_strings(added)}"
                )
        if errors:
            raise _invalid(old, name, errors)
        if _spec_of(new) != _spec_of(old):
            meta["generation"] = old_meta.get("generation", 0) + 1
        return new

    def _delete_object(self, key: ObjectKey) -> None:
        """Delete as the server does: mark an object with finalizers, remove any other.
        A pod bound to a Node with a grace period is marked too, for its kubelet to stop
        and remove (pkg/registry/core/pod/strategy.go, CheckGracefulDelete)."""
        body = self._objects[key]
        meta = body["metadata"]
        grace = _pod_grace_seconds(body) if key[0] == PODS.plural else 0
        if not meta.get("finalizers") and not grace:
            self._remove(key)
            return
        if meta.get("deletionTimestamp"):
            return  # being deleted already: nothing changes
        marked = _json_copy(body)
        marked_meta = marked["metadata"]
        marked_meta["deletionTimestamp"] = rfc3339(
            self.clock.now() + datetime.timedelta(seconds=grace)
        )
        marked_meta["deletionGracePeriodSeconds"] = grace
        # The real server bumps the generation when it sets deletionTimestamp on an object
        # that has finalizers (registry/generic/registry/store.go, markAsDeleting).
        marked_meta["generation"] = marked_meta.get("generation", 0) + 1
        marked_meta["resourceVersion"] = self._next_revision()
        self._objects[key] = marked
        self._publish(key[0], "MODIFIED", marked)

    def _remove(self, key: ObjectKey) -> None:
        """Take an object out of the store, then collect its dependents."""
        body = _json_copy(self._objects.pop(key))  # the caller may hold the stored dict
        body["metadata"]["resourceVersion"] = self._next_revision()
        self._publish(key[0], "DELETED", body)
        self._collect_garbage(body["metadata"].get("uid"))

    def _collect_garbage(self, gone_uid: str | None) -> None:
        """Background propagation, at once: dependents of a removed owner whose every
        owner is gone are deleted; those with another owner lose the dangling reference."""
        if not gone_uid:
            return
        for key in sorted(self._objects):
            body = self._objects.get(key)
            if body is None:  # removed meanwhile, by a cascade of this one
                continue
            references = body["metadata"].get("ownerReferences") or []
            if not any(ref.get("uid") == gone_uid for ref in references):
                continue
            living = self._uids()
            remaining = [ref for ref in references if ref.get("uid") in living]
            if not remaining:
                self._delete_object(key)
                continue
            updated = _json_copy(body)
            updated["metadata"]["ownerReferences"] = remaining
            updated["metadata"]["resourceVersion"] = self._next_revision()
            self._objects[key] = updated
            self._publish(key[0], "MODIFIED", updated)

    def _uids(self) -> set[str]:
        return {body["metadata"].get("uid") for body in self._objects.values()}

    def _publish(self, kind: str, etype: EventType, body: dict[str, Any]) -> None:
        event = WatchEvent(kind, etype, _json_copy(body))
        self.history.append(event)
        try:
            at = asyncio.get_running_loop().time()
        except RuntimeError:  # add() outside a loop: deliverable at once
            at = -math.inf
        for watch in self._watches:
            watch.offer(event, at)

    def _event_body(
        self,
        involved: dict[str, Any],
        etype: str,
        reason: str,
        message: str,
        name: str | None = None,
    ) -> dict[str, Any]:
        """The Event `KubeClient.event` (or, with `name`, `post_event`) posts, with what the
        server adds when storing it."""
        now = rfc3339(self.clock.now())
        if name is not None:
            body = named_event_body(name, involved, etype, reason, message, now)
        else:
            body = event_body(involved, etype, reason, message, now)
            prefix = body["metadata"]["generateName"]
            name = prefix + "".join(self._random.choice(NAME_ALPHABET) for _ in range(5))
        body["metadata"].update(
            {
                "name": name,
                "uid": self._new_uid(),
                "creationTimestamp": body["firstTimestamp"],
                "resourceVersion": self._next_revision(),
            }
        )
        return body


# -- JSON merge patch, selectors, validation: pure functions --------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes a key, anything
    else (lists included) replaces. Returns a new value; neither input is changed."""
    if not isinstance(patch, dict):
        return _json_copy(patch)
    merged = _json_copy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


SelectorOp = Literal["=", "!=", "exists", "!exists"]


@dataclass(frozen=True)
class Requirement:
    """One term of an equality-based label selector."""

    key: str
    op: SelectorOp
    value: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether labels satisfy it (`k!=v` matches objects without `k`, as in Kubernetes)."""
        if self.op == "=":
            return labels.get(self.key) == self.value
        if self.op == "!=":
            return labels.get(self.key) != self.value
        if self.op == "exists":
            return self.key in labels
        return self.key not in labels


def parse_selector(selector: str) -> list[Requirement]:
    """Parse `k=v`, `k==v`, `k!=v`, `k` and `!k`, comma-separated.

    A malformed one is answered 400, as by the real server; a set-based one (`in`,
    `notin`) raises NotImplementedError: the controllers do not send them, and a test
    that does should learn that the fake cannot answer it, not get a made-up answer.
    """
    requirements: list[Requirement] = []
    for raw in selector.split(","):
        term = raw.strip()
        if not term:
            continue
        if "(" in term or re.search(r"\s(in|notin)\s", term):
            raise NotImplementedError(f"set-based selector {term!r}: FakeKube does not answer it")
        if term.startswith("!"):
            requirement = Requirement(term[1:].strip(), "!exists")
        elif "!=" in term:
            key, value = term.split("!=", 1)
            requirement = Requirement(key.strip(), "!=", value.strip())
        elif "=" in term:
            key, value = term.split("==", 1) if "==" in term else term.split("=", 1)
            requirement = Requirement(key.strip(), "=", value.strip())
        else:
            requirement = Requirement(term, "exists")
        if _qualified_name_errors(requirement.key) or _label_value_errors(requirement.value):
            raise kube_error(400, f"unable to parse requirement: {term!r}")
        requirements.append(requirement)
    return requirements


def parse_field_selector(selector: str) -> list[tuple[str, str]]:
    """Parse `a.b=v` (or `==`) terms, comma-separated: what the controllers send."""
    terms: list[tuple[str, str]] = []
    for raw in selector.split(","):
        term = raw.strip()
        if not term:
            continue
        if "!=" in term or "=" not in term:
            raise NotImplementedError(f"field selector {term!r}: FakeKube answers only a=b")
        path, value = term.split("==", 1) if "==" in term else term.split("=", 1)
        terms.append((path.strip(), value.strip()))
    return terms


def _fields_match(body: dict[str, Any], terms: Iterable[tuple[str, str]]) -> bool:
    for path, value in terms:
        current: Any = body
        for part in path.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if str(current if current is not None else "") != value:
            return False
    return True


def _label_selector_matches(selector: Any, labels: Mapping[str, str]) -> bool:
    """Whether a metav1.LabelSelector (matchLabels, matchExpressions) selects `labels`.
    An empty selector selects everything, as a policy/v1 PodDisruptionBudget's does."""
    if not isinstance(selector, dict):
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, op = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def _pod_grace_seconds(pod: Mapping[str, Any]) -> int:
    """The grace period a pod's delete gets: none when it is not bound to a Node or has
    finished (the server deletes those at once), else its terminationGracePeriodSeconds
    (default 30)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
        return 0
    return int(spec.get("terminationGracePeriodSeconds", 30))


def _selected(body: dict[str, Any], requirements: Iterable[Requirement]) -> bool:
    labels = body.get("metadata", {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    """The wording of apimachinery's RegexError, examples and regex included."""
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{message} (e.g. {shown}regex used for validation is '{fmt}')"


def _max_length_error(limit: int) -> str:
    return f"must be no more than {limit} bytes"


def _dns_subdomain_errors(value: str) -> list[str]:
    errors = []
    if len(value) > _DNS_SUBDOMAIN_MAX:
        errors.append(_max_length_error(_DNS_SUBDOMAIN_MAX))
    if not re.fullmatch(_DNS_SUBDOMAIN_FMT, value):
        errors.append(_regex_error(_DNS_SUBDOMAIN_MSG, _DNS_SUBDOMAIN_FMT, "example.com"))
    return errors


def _qualified_name_errors(value: str) -> list[str]:
    """apimachinery's IsQualifiedName: an optional DNS-subdomain prefix and '/', then a
    name of at most 63 alphanumerics, '-', '_' and '.' that starts and ends alphanumeric."""
    parts = value.split("/")
    errors: list[str] = []
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors += ["prefix part " + m for m in _dns_subdomain_errors(prefix)]
    else:
        return [
            "a qualified name "
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > _NAME_PART_MAX:
        errors.append("name part " + _max_length_error(_NAME_PART_MAX))
    if not re.fullmatch(_QUALIFIED_NAME_FMT, name):
        errors.append(
            "name part "
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errors


def _label_value_errors(value: str) -> list[str]:
    errors = []
    if len(value) > _LABEL_VALUE_MAX:
        errors.append(_max_length_error(_LABEL_VALUE_MAX))
    if not re.fullmatch(_LABEL_VALUE_FMT, value):
        errors.append(
            _regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345")
        )
    return errors


def _invalid_value(field: str, value: Any, message: str) -> str:
    """One error as field.Invalid prints it."""
    return f"{field}: Invalid value: {json.dumps(value)}: {message}"


def _metadata_errors(meta: Mapping[str, Any]) -> list[str]:
    """What kube-apiserver's ValidateObjectMetaAccessor refuses in the fields the
    controllers write: name, labels, annotations, owner references and finalizers."""
    errors: list[str] = []
    name = meta.get("name") or ""
    if not name:
        errors.append("metadata.name: Required value: name or generateName is required")
    else:
        errors += [_invalid_value("metadata.name", name, m) for m in _dns_subdomain_errors(name)]
    generate = meta.get("generateName")
    if generate:
        # A trailing '-' is fine in a prefix: the random suffix follows it.
        masked = generate[:-1] + "a" if generate.endswith("-") else generate
        errors += [
            _invalid_value("metadata.generateName", generate, m)
            for m in _dns_subdomain_errors(masked)
        ]
    for key, value in (meta.get("labels") or {}).items():
        errors += [_invalid_value("metadata.labels", key, m) for m in _qualified_name_errors(key)]
        errors += [
            _invalid_value("metadata.labels", value, m) for m in _label_value_errors(str(value))
        ]
    annotations = meta.get("annotations") or {}
    for key in annotations:
        errors += [
            _invalid_value("metadata.annotations", key, m)
            for m in _qualified_name_errors(key.lower())
        ]
    size = sum(len(k) + len(str(v)) for k, v in annotations.items())
    if size > ANNOTATIONS_SIZE_LIMIT:
        errors.append(
            f"metadata.annotations: Too long: must have at most {ANNOTATIONS_SIZE_LIMIT} bytes"
        )
    errors += _owner_reference_errors(list(meta.get("ownerReferences") or []))
    for finalizer in meta.get("finalizers") or []:
        errors += [
            _invalid_value("metadata.finalizers", finalizer, m)
            for m in _qualified_name_errors(finalizer)
        ]
    return errors


def _owner_reference_errors(references: list[Mapping[str, Any]]) -> list[str]:
    """apimachinery's ValidateOwnerReferences: every part named, one controller at most."""
    errors: list[str] = []
    controller = ""
    for index, ref in enumerate(references):
        field = f"metadata.ownerReferences[{index}]"
        version = str(ref.get("apiVersion") or "").rpartition("/")[2]
        parts = {"apiVersion": version, **{p: ref.get(p) for p in ("kind", "name", "uid")}}
        errors += [
            f"{field}.{part}: Required value: must not be empty"
            for part, value in parts.items()
            if not value
        ]
        if ref.get("controller"):
            this = f"{ref.get('kind')}/{ref.get('name')}"
            if controller:
                shown = json.dumps(references, separators=(",", ":"))
                errors.append(
                    f"metadata.ownerReferences: Invalid value: {shown}: Only one reference can "
                    f'have Controller set to true. Found "true" in references for {controller} '
                    f"and {this}"
                )
            else:
                controller = this
    return errors


def _immutable_errors(meta: Mapping[str, Any], old_meta: Mapping[str, Any]) -> list[str]:
    """What the real server refuses to let a patch change (others it silently keeps).

    uid and deletionGracePeriodSeconds may not change at all; deletionTimestamp may not
    be set by a patch, but one given for an object being deleted already is ignored.
    """
    changed = [
        field
        for field in ("uid", "deletionGracePeriodSeconds")
        if meta.get(field) is not None and meta.get(field) != old_meta.get(field)
    ]
    if meta.get("deletionTimestamp") and not old_meta.get("deletionTimestamp"):
        changed.append("deletionTimestamp")
    return [
        f"metadata.{field}: Invalid value: {json.dumps(meta[field])}: field is immutable"
        for field in changed
    ]


def _invalid(body: Mapping[str, Any], name: str, errors: list[str]) -> KubeError:
    """A 422 worded as kube-apiserver words it: `<Kind>.<group> "<name>" is invalid: ...`."""
    group = str(body.get("apiVersion") or GROUP).rpartition("/")[0] or GROUP
    kind = body.get("kind") or "Object"
    detail = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
    return kube_error(422, f'{kind}.{group} "{name}" is invalid: {detail}')


def _resource(kind: Kind) -> str:
    """A resource as the server names it in messages: `clusternodes.nodecluster.io`, and
    a core kind by its plural alone (`nodes`)."""
    return f"{kind.plural}.{kind.group}" if kind.group else kind.plural


def _go_strings(values: Iterable[str]) -> str:
    """A list of strings as Go's %#v prints a []string (how the server quotes them)."""
    return "[]string{" + ", ".join(json.dumps(v) for v in values) + "}"


def _spec_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """What counts for metadata.generation: everything but metadata and status."""
    return {k: v for k, v in body.items() if k not in ("metadata", "status")}


def _json_copy(value: T) -> T:
    """A deep copy through JSON: what a request or a response would carry.

    Going through JSON (not copy.deepcopy) also turns tuples into lists, as the wire does,
    and refuses what is not JSON-ready with a TypeError: the `KubeApi` contract is plain
    JSON-ready dicts, and a body the fake cannot encode is a bug in the caller.
    """
    return cast(T, json.loads(json.dumps(value)))
