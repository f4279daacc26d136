"""The one clock of the operator: wall time for what is written, monotonic time for waits.

Every controller reads time through a `Clock` handed down from `build_world`, never from
`datetime.now()` or `time.monotonic()`, so a test can move time instead of sleeping.

Monotonic time *is* the event loop's time: the work queues schedule retries with
`loop.call_at`, and provider deadlines (`providers/deadline.py`) use `asyncio.timeout`,
both on the loop's clock. `SystemClock.monotonic` is `time.monotonic`, which is what the
default loop uses, so the three agree. In tests `LoopClock` derives wall time from the
loop's time as well; with a loop whose time is fast-forwarded (`looptime`), one move of
time moves everything: timers, deadlines, timestamps and timeouts in status.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Where the controllers read time."""

    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC: for timestamps written to the API."""
        ...

    def monotonic(self) -> float:
        """Seconds on the event loop's clock: for intervals and deadlines."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """See Clock.now."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """See Clock.monotonic (the default event loop's clock)."""
        return time.monotonic()


class LoopClock:
    """A clock that follows the running event loop's time, starting at `epoch`.

    With a loop whose time is fake (e.g. pytest's `looptime`), waiting an hour in a test
    takes no real time and every timestamp written moves by the same hour.
    """

    def __init__(self, epoch: datetime = datetime(2030, 1, 1, tzinfo=UTC)) -> None:
        self.epoch = epoch
        self._loop: asyncio.AbstractEventLoop | None = None

    def monotonic(self) -> float:
        """See Clock.monotonic. The loop is the one running at the first call (which must
        be made on it), so a worker thread of it (a driver's blocking file access) reads
        the same time afterwards."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop.time()

    def now(self) -> datetime:
        """See Clock.now: `epoch` plus the loop's time."""
        return self.epoch + timedelta(seconds=self.monotonic())


def rfc3339(when: datetime) -> str:
    """A timestamp as Kubernetes writes it: UTC, whole seconds, `Z`."""
    return when.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
