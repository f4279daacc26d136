"""Every provider call ends: a driver that never answers is cut off by the NodeProvider's
callTimeoutSeconds and reported as a passing fault, which the controllers retry."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from nodecluster.providers.base import (
    CapacityExceeded,
    Machine,
    MachineSpec,
    PowerControl,
    ProviderDriver,
    Retryable,
)
from nodecluster.providers.deadline import with_deadline

DEADLINE = 0.05
"""Seconds: short, because every hanging call below costs the test this long."""

MACHINE = Machine(
    name="n1",
    provider_id="fake://n1",
    cluster="ns/c",
    state="Running",
    machine_type="small",
    zone="z",
    cores=1,
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
)


@dataclass
class HangingDriver:
    """Answers the calls named in `answers`; every other call waits forever."""

    answers: set[str] = field(default_factory=set)
    cancelled: list[str] = field(default_factory=list)

    async def _maybe_hang(self, call: str) -> None:
        if call in self.answers:
            return
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(call)
            raise

    async def create(self, spec: MachineSpec) -> Machine:
        await self._maybe_hang("create")
        return MACHINE

    async def delete(self, name: str) -> None:
        await self._maybe_hang("delete")

    async def get(self, name: str) -> Machine:
        await self._maybe_hang("get")
        if "get-capacity" in self.answers:
            raise CapacityExceeded("no room")
        return MACHINE

    async def list(self, cluster: str | None = None) -> list[Machine]:
        await self._maybe_hang("list")
        return [MACHINE]

    async def close(self) -> None:
        await self._maybe_hang("close")


@dataclass
class HangingPowerDriver(HangingDriver):
    async def start(self, name: str) -> Machine:
        await self._maybe_hang("start")
        return MACHINE

    async def stop(self, name: str) -> Machine:
        await self._maybe_hang("stop")
        return MACHINE

    async def reboot(self, name: str) -> Machine:
        await self._maybe_hang("reboot")
        return MACHINE


SPEC = MachineSpec(name="n1", cluster="ns/c", machine_type="small")


@pytest.mark.parametrize("call", ["create", "delete", "get", "list", "close"])
async def test_a_call_that_never_answers_becomes_retryable_and_is_cancelled(call: str) -> None:
    inner = HangingDriver()
    driver = with_deadline(inner, DEADLINE, "cloud")
    calls = {
        "create": lambda: driver.create(SPEC),
        "delete": lambda: driver.delete("n1"),
        "get": lambda: driver.get("n1"),
        "list": lambda: driver.list("ns/c"),
        "close": driver.close,
    }
    with pytest.raises(Retryable, match=rf"'cloud': {call}\b.*within 0.05s") as err:
        await calls[call]()
    assert err.value.retryable
    assert inner.cancelled == [call]  # abandoned, not left running in the background


@pytest.mark.parametrize("call", ["start", "stop", "reboot"])
async def test_power_calls_are_bounded_too(call: str) -> None:
    driver = with_deadline(HangingPowerDriver(), DEADLINE, "cloud")
    assert isinstance(driver, PowerControl)
    with pytest.raises(Retryable, match=rf"{call} n1 did not answer"):
        await getattr(driver, call)("n1")


async def test_answers_and_typed_errors_pass_through_unchanged() -> None:
    inner = HangingDriver(answers={"create", "get", "list", "delete", "close", "get-capacity"})
    driver = with_deadline(inner, 5.0, "cloud")
    assert await driver.create(SPEC) is MACHINE
    assert await driver.list() == [MACHINE]
    await driver.delete("n1")
    with pytest.raises(CapacityExceeded):
        await driver.get("n1")
    await driver.close()
    assert inner.cancelled == []


def test_power_control_stays_optional() -> None:
    plain = with_deadline(HangingDriver(), DEADLINE, "cloud")
    assert isinstance(plain, ProviderDriver)
    assert not isinstance(plain, PowerControl)
    assert isinstance(with_deadline(HangingPowerDriver(), DEADLINE, "cloud"), PowerControl)
