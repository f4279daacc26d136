"""A keyed work queue: at most one reconcile per object at a time, coalesced, with backoff.

The controller-runtime model, in asyncio: an event only *wakes* a key; the handler then
reads the world afresh. Consequences that matter for correctness and cost:

- a burst of events for one key runs the handler once more, not once per event
  (a key added while running is marked dirty and run again after);
- delayed adds keep the earliest deadline, so "debounce" and "resync later" compose;
- a failing handler is retried with capped exponential backoff, never in a tight loop,
  and never crashes the operator;
- an idle queue holds no tasks and only the timers of keys that asked for a resync.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

log = logging.getLogger(__name__)

_NO_CONTEXT = contextvars.Context()
"""The context timers run in: empty, and shared (a timer only wakes a key, which starts its
task in a fresh context of its own)."""

Handler = Callable[[K], Awaitable[float | None]]
"""Reconcile one key; return seconds until it should run again, or None."""


class Backoff(Exception):
    """Raised by a handler that has already reported a failure (status, Event) and
    wants to be retried with exponential backoff, without a traceback in the log."""


class WorkQueue(Generic[K]):
    """Per-key serialised, coalescing work queue."""

    def __init__(
        self,
        name: str,
        handler: Handler[K],
        concurrency: int = 1000,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
    ) -> None:
        self.name = name
        self._handler = handler
        self._sem = asyncio.Semaphore(concurrency)
        self._running: set[K] = set()
        self._dirty: set[K] = set()
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[K, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._closed = False
        self._holding: set[K] | None = None
        """While held (a standby replica): the keys woken, to run once released."""
        self._waiting = 0
        self.runs = 0
        self.adds = 0
        """Keys woken (an add that starts a run or marks a running key to run again; an add
        coalesced into one already due is not counted): `workqueue_adds_total`."""
        self.retries = 0
        """Runs that failed and were scheduled again with backoff: `workqueue_retries_total`."""

    def add(self, key: K, delay: float = 0.0) -> None:
        """Wake `key` now, or after `delay` seconds (the earliest pending deadline wins)."""
        if self._closed:
            return
        if self._holding is not None:
            self._holding.add(key)  # whenever it was due: the first leader look is now
            return
        if delay > 0:
            self._schedule(key, delay)
            return
        self._cancel_timer(key)
        if key in self._running:
            if key not in self._dirty:
                self.adds += 1
                self._dirty.add(key)
            return
        self.adds += 1
        self._running.add(key)
        # A fresh, empty context: the caller's (kopf's, while it handles a watch event)
        # holds that event's body, patch and loggers, and a task or timer would keep them
        # alive for as long as it lives, e.g. for an idle cluster's hour-long resync.
        task = asyncio.get_running_loop().create_task(
            self._run(key), name=f"{self.name}:{key}", context=contextvars.Context()
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def hold(self) -> None:
        """Run nothing until `release`, remembering every key woken meanwhile: a standby
        replica keeps its caches warm, and its queues know what to look at the moment it
        leads."""
        if self._holding is None:
            self._holding = set()

    def release(self) -> None:
        """Run every key woken while held (once each), and from now on as they come."""
        held, self._holding = self._holding, None
        for key in held or ():
            self.add(key)

    def held(self) -> int:
        """Keys woken while held, waiting for `release`."""
        return len(self._holding or ())

    def forget(self, key: K) -> None:
        """Drop timers and failure history of a key whose object is gone."""
        self._cancel_timer(key)
        self._failures.pop(key, None)

    def knows(self, key: K) -> bool:
        """Whether `key` is running or has a timer: whether a retry or resync it asked
        for is still to come in this process (after a restart, none is)."""
        return key in self._running or key in self._timers

    def pending(self) -> int:
        """Keys running or waiting to run again (not counting timers)."""
        return len(self._running)

    def scheduled(self) -> int:
        """Keys with a timer."""
        return len(self._timers)

    def depth(self) -> int:
        """Keys due and not running: waiting for a slot of the queue's concurrency, or to
        run again once their run ends, or held on a standby replica (`workqueue_depth`;
        keys with a timer are not due)."""
        return self._waiting + len(self._dirty) + len(self._holding or ())

    async def close(self) -> None:
        """Stop accepting work, cancel timers and wait for running handlers to finish."""
        self._closed = True
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def abort(self) -> None:
        """Stop at once, as a killed process would: timers cancelled, running handlers
        cancelled wherever they wait (tests use it to play a kill -9 between two awaits)."""
        self._closed = True
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _schedule(self, key: K, delay: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        current = self._timers.get(key)
        if current is not None and current[0] <= due:
            return
        if current is not None:
            current[1].cancel()
        handle = loop.call_at(due, self._fire, key, context=_NO_CONTEXT)
        self._timers[key] = (due, handle)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def _cancel_timer(self, key: K) -> None:
        current = self._timers.pop(key, None)
        if current is not None:
            current[1].cancel()

    def _backoff(self, key: K) -> float:
        n = self._failures.get(key, 0) + 1
        self._failures[key] = n
        delay = min(self._backoff_cap, self._backoff_base * 2 ** (n - 1))
        jittered: float = delay * random.uniform(0.8, 1.2)
        return jittered

    async def _run(self, key: K) -> None:
        try:
            while True:
                self._dirty.discard(key)
                again: float | None
                self._waiting += 1
                try:
                    await self._sem.acquire()
                finally:
                    self._waiting -= 1
                try:
                    self.runs += 1
                    try:
                        again = await self._handler(key)
                        self._failures.pop(key, None)
                    except asyncio.CancelledError:
                        raise
                    except Backoff as soft:
                        again = self._backoff(key)
                        self.retries += 1
                        log.info("%s %s: %s; retrying in %.1fs", self.name, key, soft, again)
                    except Exception:
                        again = self._backoff(key)
                        self.retries += 1
                        log.exception("%s %s failed; retrying in %.1fs", self.name, key, again)
                finally:
                    self._sem.release()
                if key in self._dirty and not self._closed:
                    continue
                if again is not None and not self._closed:
                    self._schedule(key, again)
                break
        finally:
            self._running.discard(key)
            self._dirty.discard(key)
