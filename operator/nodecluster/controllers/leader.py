"""Leader election on a `coordination.k8s.io/v1` Lease, and the fence that makes it safe.

Two replicas of the operator must never act at once: both would create the same
machines' nodes, delete each other's orphans, and write every status twice. kopf's
peering pauses operators that see each other, but it is not an election (replicas of
equal priority all pause) and a replica killed hard leaves the others waiting out the
peering's lifetime. Kubernetes' own answer, used by controller-runtime, Cluster API and
Karpenter, is a Lease: one holder at a time, renewed every few seconds, taken over by a
standby once it has not been renewed for its duration.

How it is used here:

- every replica starts as the leader does: it lists and watches everything, so its
  caches are warm, but its work queues are held (nothing runs, what is woken is
  remembered) until it acquires the Lease (`LeaseElector.acquire`); then it runs what it
  gathered, as a restarted operator would, without listing anything first
  (handlers.lead);
- the holder renews it every `retry_period` seconds (`LeaseElector.keep`); when it has
  not managed to for `renew_deadline` seconds it has lost the Lease, and the process
  exits at once (exiting is the fence: the Deployment restarts it as a standby, and a
  process that no longer runs writes nothing);
- between losing the Lease and noticing it the process may still be running, or even
  frozen (SIGSTOP, a VM paused) and resumed long after another replica took over. So
  every write to the API and every call to a provider first asks the `Fence`, which
  knows until when the last successful renewal holds (monotonic time, which keeps
  running while a process is stopped): a resumed old leader exits before its first
  write, not after it;
- the Lease is judged expired by when *this* process saw it last change, never by the
  timestamps written in it, so clocks that disagree between nodes do no harm (as
  client-go does). The holder's validity ends `renew_deadline` after it *sent* its last
  successful renewal, and every other replica waits at least `duration` after it
  *received* it: the difference (5 s by default) is the margin for the old holder to
  stop;
- a graceful shutdown releases the Lease (the holder emptied), so the standby takes over
  within a retry period instead of a lease duration.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import math
import os
import random
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nodecluster.clock import Clock
from nodecluster.controllers.kubeapi import (
    Kind,
    KubeApi,
    KubeConflict,
    KubeError,
    KubeNotFound,
)

log = logging.getLogger(__name__)

LEASES = Kind("leases", group="coordination.k8s.io", version="v1")


@dataclass(frozen=True)
class LeaseSettings:
    """Which Lease, who is asking, and the timings (client-go's defaults)."""

    name: str
    namespace: str
    identity: str
    duration: float = 15.0
    """How long others wait after they last saw the Lease change before taking it over."""
    renew_deadline: float = 10.0
    """How long the holder keeps acting without a successful renewal; then it stops."""
    retry_period: float = 2.0
    """How often the holder renews, and a standby tries to acquire."""

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration "
                f"(got {self.retry_period:g}, {self.renew_deadline:g}, {self.duration:g})"
            )


def default_identity() -> str:
    """Who this process is in the Lease: the pod's name (the chart sets POD_NAME), else the
    host name, with a random suffix so that a restarted process is never mistaken for the
    one before it (which may still be running somewhere, frozen)."""
    base = os.environ.get("POD_NAME") or socket.gethostname() or "nodecluster-operator"
    return f"{base}_{random.getrandbits(32):08x}"


class LeaseLost(Exception):
    """The process no longer holds the Lease: nothing may be written or called."""


class Fence:
    """Until when this process may act: the last successful renewal's deadline.

    Without leader election the fence is always open. `check` is called before every
    write and every provider call; it costs one clock read and a comparison.
    """

    def __init__(self, clock: Clock, on_lost: Callable[[str], None] | None = None) -> None:
        self._clock = clock
        self._on_lost = on_lost
        self.valid_until = math.inf
        """Monotonic time until which the process may act (inf: no election)."""
        self.lost = False

    def close(self) -> None:
        """Not (or no longer) the leader: every check fails from now on."""
        self.valid_until = -math.inf

    def check(self, what: str) -> None:
        """Raise LeaseLost (after telling `on_lost`, which exits the process in production)
        if the Lease may have been taken over by now."""
        if self._clock.monotonic() < self.valid_until:
            return
        message = f"{what} refused: this replica no longer holds the leader Lease"
        if not self.lost:
            self.lost = True
            if self._on_lost is not None:
                self._on_lost(message)
        raise LeaseLost(message)


def micro_time(when: datetime) -> str:
    """A Lease's MicroTime: RFC 3339 with microseconds."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    """Acquires, renews and releases one Lease for this process."""

    def __init__(self, api: KubeApi, clock: Clock, settings: LeaseSettings, fence: Fence) -> None:
        self.api = api
        self.clock = clock
        self.settings = settings
        self.fence = fence
        self.holder: str | None = None
        """Who held the Lease when it was last read (for logs and tests)."""
        self._seen: tuple[Any, ...] | None = None
        self._seen_at = -math.inf
        self._held = False

    @property
    def leading(self) -> bool:
        """Whether the last attempt left this process holding the Lease."""
        return self._held

    async def attempt(self) -> bool:
        """One try to acquire the Lease, or to renew it when held. Never raises for the
        API's answers: a failed try is a False, and the callers' timing decides."""
        s = self.settings
        sent = self.clock.monotonic()
        try:
            lease = await self.api.get(LEASES, s.namespace, s.name)
        except KubeNotFound:
            return await self._create(sent)
        except KubeError as err:
            log.warning("Leader Lease %s/%s: cannot read it: %s", s.namespace, s.name, err)
            return False
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        self.holder = holder or None
        record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        if record != self._seen:
            self._seen, self._seen_at = record, sent
        if holder and holder != s.identity:
            duration = float(spec.get("leaseDurationSeconds") or s.duration)
            if sent < self._seen_at + duration:
                self._held = False
                return False  # held by another, renewed within its duration as we saw it
        return await self._take(lease, holder, sent)

    async def _create(self, sent: float) -> bool:
        s = self.settings
        now = micro_time(self.clock.now())
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": s.name, "namespace": s.namespace},
            "spec": {
                "holderIdentity": s.identity,
                "leaseDurationSeconds": math.ceil(s.duration),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        try:
            await self.api.create(LEASES, s.namespace, body)
        except KubeConflict:
            return False  # another replica created it first
        except KubeError as err:
            log.warning("Leader Lease %s/%s: cannot create it: %s", s.namespace, s.name, err)
            return False
        return self._won(sent, fresh=True)

    async def _take(self, lease: dict[str, Any], holder: str, sent: float) -> bool:
        s = self.settings
        spec = lease.get("spec") or {}
        now = micro_time(self.clock.now())
        renewing = holder == s.identity
        patch: dict[str, Any] = {
            "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
            "spec": {
                "holderIdentity": s.identity,
                "leaseDurationSeconds": math.ceil(s.duration),
                "renewTime": now,
            },
        }
        if not renewing:
            patch["spec"]["acquireTime"] = now
            patch["spec"]["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        try:
            await self.api.patch(LEASES, s.namespace, s.name, patch)
        except KubeConflict:
            return False  # someone else wrote it since it was read: read again next time
        except KubeError as err:
            log.warning("Leader Lease %s/%s: cannot write it: %s", s.namespace, s.name, err)
            return False
        return self._won(sent, fresh=not renewing)

    def _won(self, sent: float, fresh: bool) -> bool:
        s = self.settings
        self.fence.valid_until = sent + s.renew_deadline
        self.holder = s.identity
        if fresh or not self._held:
            log.info(
                "Leader Lease %s/%s acquired by %s: this replica is the leader",
                s.namespace,
                s.name,
                s.identity,
            )
        self._held = True
        return True

    async def acquire(self) -> None:
        """Return once this process holds the Lease, trying every retry period (with a
        little jitter, so standbys do not all ask at once)."""
        s = self.settings
        told: str | None = None
        while not await self.attempt():
            if self.holder != told and self.holder is not None:
                told = self.holder
                log.info("Leader Lease %s/%s is held by %s: standing by", s.namespace, s.name, told)
            await asyncio.sleep(s.retry_period * (1.0 + 0.2 * random.random()))

    async def keep(self) -> None:
        """Renew the Lease every retry period until a renewal deadline passes without
        one; then return (the caller stops the process). A renewal failing now and then
        is not a loss: only the deadline is."""
        s = self.settings
        while True:
            await asyncio.sleep(s.retry_period)
            if await self.attempt():
                continue
            if self.clock.monotonic() >= self.fence.valid_until:
                self._held = False
                log.error(
                    "Leader Lease %s/%s not renewed for %gs: this replica is no longer the leader",
                    s.namespace,
                    s.name,
                    s.renew_deadline,
                )
                return

    async def release(self) -> None:
        """Give the Lease up (a graceful shutdown, after the last write): the standby takes
        over at its next try instead of after a lease duration."""
        s = self.settings
        if not self._held:
            return
        self._held = False
        self.fence.close()
        try:
            lease = await self.api.get(LEASES, s.namespace, s.name)
            if (lease.get("spec") or {}).get("holderIdentity") != s.identity:
                return
            await self.api.patch(
                LEASES,
                s.namespace,
                s.name,
                {
                    "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                    "spec": {
                        "holderIdentity": None,
                        "leaseDurationSeconds": 1,
                        "renewTime": micro_time(self.clock.now()),
                    },
                },
            )
            log.info("Leader Lease %s/%s released", s.namespace, s.name)
        except KubeError as err:
            # It expires on its own then; the standby waits one lease duration.
            log.warning("Leader Lease %s/%s: cannot release it: %s", s.namespace, s.name, err)


class FencedKubeApi:
    """A KubeApi whose every write first asks the fence (reads pass through): the one place
    where a replica that lost the Lease is stopped before it writes."""

    def __init__(self, inner: KubeApi, fence: Fence) -> None:
        self.inner = inner
        self.fence = fence

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        """See KubeApi.get."""
        return await self.inner.get(kind, namespace, name)

    async def list(
        self, kind: Kind, namespace: str | None, selector: str = "", fields: str = ""
    ) -> list[dict[str, Any]]:
        """See KubeApi.list."""
        return await self.inner.list(kind, namespace, selector, fields)

    def pages(
        self, kind: Kind, namespace: str | None, limit: int = 1000
    ) -> AsyncIterator[builtins.list[dict[str, Any]]]:
        """See KubeApi.pages."""
        return self.inner.pages(kind, namespace, limit)

    async def create(self, kind: Kind, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """See KubeApi.create."""
        self.fence.check(f"create {kind.plural}")
        return await self.inner.create(kind, namespace, body)

    async def patch(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        status: bool = False,
    ) -> dict[str, Any]:
        """See KubeApi.patch."""
        self.fence.check(f"patch {kind.plural} {name}")
        return await self.inner.patch(kind, namespace, name, patch, status)

    async def delete(self, kind: Kind, namespace: str | None, name: str) -> None:
        """See KubeApi.delete."""
        self.fence.check(f"delete {kind.plural} {name}")
        await self.inner.delete(kind, namespace, name)

    async def evict(self, namespace: str, name: str) -> None:
        """See KubeApi.evict."""
        self.fence.check(f"evict pod {name}")
        await self.inner.evict(namespace, name)

    async def cluster_uid(self) -> str:
        """See KubeApi.cluster_uid."""
        return await self.inner.cluster_uid()

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """See KubeApi.read_secret."""
        return await self.inner.read_secret(namespace, name)

    async def event(self, involved: dict[str, Any], etype: str, reason: str, message: str) -> None:
        """See KubeApi.event."""
        self.fence.check(f"event {reason}")
        await self.inner.event(involved, etype, reason, message)

    async def post_event(
        self, name: str, involved: dict[str, Any], etype: str, reason: str, message: str
    ) -> bool:
        """See KubeApi.post_event."""
        self.fence.check(f"event {reason}")
        return await self.inner.post_event(name, involved, etype, reason, message)

    async def read_event(self, namespace: str, name: str) -> dict[str, Any]:
        """See KubeApi.read_event."""
        return await self.inner.read_event(namespace, name)

    async def close(self) -> None:
        """See KubeApi.close."""
        await self.inner.close()
