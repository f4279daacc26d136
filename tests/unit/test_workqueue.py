"""The work queue remembers which keys will run again, so that a watch event can tell
"a retry is coming" (nothing to do) from "nobody will look at this again" (a restart)."""

from __future__ import annotations

import asyncio

from nodecluster.controllers.workqueue import Backoff, WorkQueue


async def _settle(queue: WorkQueue[str]) -> None:
    """Let the queue's tasks run to completion (they await nothing slow)."""
    for _ in range(100):
        if queue.pending() == 0:
            return
        await asyncio.sleep(0)
    raise AssertionError("the queue did not settle")


async def test_a_key_is_known_while_it_runs_and_while_a_retry_or_resync_is_due() -> None:
    outcomes: dict[str, float | Exception | None] = {
        "failing": Backoff("provider said no"),
        "settling": 15.0,
        "done": None,
    }
    seen_running: list[bool] = []
    queue: WorkQueue[str]

    async def handler(key: str) -> float | None:
        seen_running.append(queue.knows(key))
        outcome = outcomes[key]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    queue = WorkQueue("test", handler)
    try:
        assert not queue.knows("failing")  # a fresh process knows nothing: after a restart
        for key in outcomes:
            queue.add(key)
        await _settle(queue)

        assert seen_running == [True, True, True]
        assert queue.knows("failing")  # its backoff timer
        assert queue.knows("settling")  # its look-again timer
        assert not queue.knows("done")

        queue.forget("failing")
        assert not queue.knows("failing")
    finally:
        await queue.close()


async def test_a_held_queue_runs_nothing_and_runs_each_woken_key_once_when_released() -> None:
    """A standby replica's queues: the watches wake keys, nothing runs before the Lease
    is held, and then every key woken runs once, whatever its delay was."""
    ran: list[str] = []

    async def handler(key: str) -> float | None:
        ran.append(key)
        return None

    queue: WorkQueue[str] = WorkQueue("test", handler)
    try:
        queue.hold()
        for key in ("a", "b", "a"):
            queue.add(key)
        queue.add("c", delay=3600.0)  # an idle cluster's resync
        await asyncio.sleep(0.01)
        assert ran == []
        assert queue.held() == 3
        assert queue.scheduled() == 0 and queue.pending() == 0

        queue.release()
        await _settle(queue)
        assert sorted(ran) == ["a", "b", "c"]
        assert queue.held() == 0

        queue.add("d")  # released: as usual from now on
        await _settle(queue)
        assert ran[-1] == "d"
    finally:
        await queue.close()
