"""Leader election on a Lease (controllers/leader.py), on the fake API under looptime.

What must hold: one holder at a time; a standby waits while the leader renews and takes
over only after the Lease went unrenewed for its duration *as the standby saw it*; a
leader that cannot renew stops within its renew deadline; a leader frozen past that
point (SIGSTOP) and resumed writes nothing, to the API or to a provider; a released Lease
is taken over at the standby's next try.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import CLUSTERNODES
from nodecluster.controllers.leader import (
    LEASES,
    Fence,
    FencedKubeApi,
    LeaseElector,
    LeaseLost,
    LeaseSettings,
)
from nodecluster.providers.base import Machine, MachineSpec
from nodecluster.providers.deadline import with_deadline
from nodecluster.testing import FakeKube

NS = "nodecluster-system"


def elector(fake: FakeKube, clock: LoopClock, who: str, lost: list[str]) -> LeaseElector:
    settings = LeaseSettings(name="nodecluster-operator", namespace=NS, identity=who)
    fence = Fence(clock, on_lost=lost.append)
    fence.close()
    return LeaseElector(fake, clock, settings, fence)


def lease(fake: FakeKube) -> dict[str, Any]:
    stored = fake.stored(LEASES, NS, "nodecluster-operator")
    assert stored is not None
    return stored


async def test_the_first_replica_creates_the_lease_and_leads(
    fake: FakeKube, clock: LoopClock
) -> None:
    a = elector(fake, clock, "a", [])
    await a.acquire()
    spec = lease(fake)["spec"]
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    assert a.leading
    a.fence.check("a write")  # open


async def test_a_standby_waits_as_long_as_the_leader_renews(
    fake: FakeKube, clock: LoopClock
) -> None:
    a, b = elector(fake, clock, "a", []), elector(fake, clock, "b", [])
    await a.acquire()
    keeping = asyncio.create_task(a.keep())
    standing_by = asyncio.create_task(b.acquire())
    await asyncio.sleep(120)
    assert not standing_by.done()
    assert lease(fake)["spec"]["holderIdentity"] == "a"
    assert b.holder == "a"
    with pytest.raises(LeaseLost):
        b.fence.check("a write by the standby")
    keeping.cancel()
    standing_by.cancel()


async def test_a_standby_takes_over_a_lease_left_unrenewed_for_its_duration(
    fake: FakeKube, clock: LoopClock
) -> None:
    a, b = elector(fake, clock, "a", []), elector(fake, clock, "b", [])
    await a.acquire()  # and never renews: killed
    start = asyncio.get_running_loop().time()
    await b.acquire()
    waited = asyncio.get_running_loop().time() - start
    # Not before the duration since b first saw it, and within a (jittered) retry after.
    assert 15.0 <= waited <= 15.0 + 2.0 * 1.2 + 0.1
    spec = lease(fake)["spec"]
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1


async def test_expiry_is_judged_by_when_the_standby_saw_it_not_by_the_written_time(
    fake: FakeKube, clock: LoopClock
) -> None:
    a, b = elector(fake, clock, "a", []), elector(fake, clock, "b", [])
    await a.acquire()
    # The leader's clock is an hour behind: its renewTime looks long expired. A standby
    # trusting it would take over a Lease being renewed.
    stored = lease(fake)
    await fake.patch(
        LEASES,
        NS,
        "nodecluster-operator",
        {"spec": {"renewTime": "2000-01-01T00:00:00.000000Z"}},
    )
    assert stored["spec"]["holderIdentity"] == "a"
    assert not await b.attempt()
    await asyncio.sleep(14)
    assert not await b.attempt()
    await asyncio.sleep(2)
    assert await b.attempt()


async def test_a_leader_that_cannot_renew_stops_within_its_renew_deadline(
    fake: FakeKube, clock: LoopClock
) -> None:
    lost: list[str] = []
    a = elector(fake, clock, "a", lost)
    await a.acquire()
    fake.fail("patch", "leases", status=500, times=None)
    start = asyncio.get_running_loop().time()
    await a.keep()
    stopped = asyncio.get_running_loop().time() - start
    assert 10.0 <= stopped <= 10.0 + 2.0
    assert not a.leading
    with pytest.raises(LeaseLost):
        a.fence.check("patch clusternodes x")
    assert lost == ["patch clusternodes x refused: this replica no longer holds the leader Lease"]


async def test_a_renewal_failing_now_and_then_is_not_a_loss(
    fake: FakeKube, clock: LoopClock
) -> None:
    a = elector(fake, clock, "a", [])
    await a.acquire()
    fake.fail("patch", "leases", status=500, times=3)  # 6 s of failures, deadline 10 s
    keeping = asyncio.create_task(a.keep())
    await asyncio.sleep(60)
    assert not keeping.done()
    assert a.leading
    a.fence.check("a write")
    keeping.cancel()


async def test_a_frozen_leader_resumed_after_a_takeover_writes_nothing(
    fake: FakeKube, clock: LoopClock
) -> None:
    lost: list[str] = []
    a, b = elector(fake, clock, "a", lost), elector(fake, clock, "b", [])
    await a.acquire()
    api = FencedKubeApi(fake, a.fence)
    body = {"metadata": {"name": "n1", "namespace": "team"}, "spec": {}}
    await api.create(CLUSTERNODES, "team", body)  # while it leads
    # SIGSTOP: its renewals stop, monotonic time goes on. The standby takes over.
    await b.acquire()
    writes = fake.writes
    # SIGCONT: the old leader's next write is refused before it is sent.
    with pytest.raises(LeaseLost):
        await api.patch(CLUSTERNODES, "team", "n1", {"metadata": {"labels": {"x": "y"}}})
    with pytest.raises(LeaseLost):
        await api.delete(CLUSTERNODES, "team", "n1")
    assert fake.writes == writes
    assert len(lost) == 1  # told once: in production, the process is gone after this

    class Driver:
        calls = 0

        async def create(self, spec: MachineSpec) -> Machine:
            Driver.calls += 1
            raise AssertionError("a provider call after the Lease was lost")

        async def delete(self, name: str) -> None: ...
        async def get(self, name: str) -> Machine: ...
        async def list(self, cluster: str | None = None) -> list[Machine]:
            return []

        async def close(self) -> None: ...

    driver = with_deadline(Driver(), 10, "p", guard=a.fence.check)  # type: ignore[arg-type]
    with pytest.raises(LeaseLost):
        await driver.list()
    assert Driver.calls == 0


async def test_a_released_lease_is_taken_over_at_the_next_try(
    fake: FakeKube, clock: LoopClock
) -> None:
    a, b = elector(fake, clock, "a", []), elector(fake, clock, "b", [])
    await a.acquire()
    assert not await b.attempt()
    await a.release()
    with pytest.raises(LeaseLost):
        a.fence.check("a write after the release")
    start = asyncio.get_running_loop().time()
    await b.acquire()
    assert asyncio.get_running_loop().time() - start <= 2.0 * 1.2 + 0.1
    assert lease(fake)["spec"]["holderIdentity"] == "b"


async def test_two_replicas_racing_for_a_new_lease_one_wins(
    fake: FakeKube, clock: LoopClock
) -> None:
    a, b = elector(fake, clock, "a", []), elector(fake, clock, "b", [])
    won = await asyncio.gather(a.attempt(), b.attempt())
    assert sorted(won) == [False, True]
    assert lease(fake)["spec"]["holderIdentity"] == ("a" if won[0] else "b")


async def test_two_replicas_racing_for_an_expired_lease_one_wins(
    fake: FakeKube, clock: LoopClock
) -> None:
    a, b, c = (elector(fake, clock, who, []) for who in "abc")
    await a.acquire()
    assert not await b.attempt() and not await c.attempt()
    await asyncio.sleep(16)
    won = await asyncio.gather(b.attempt(), c.attempt())
    assert sorted(won) == [False, True]


def test_the_timings_must_leave_the_old_leader_time_to_stop() -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        LeaseSettings(name="x", namespace=NS, identity="a", duration=10, renew_deadline=10)
