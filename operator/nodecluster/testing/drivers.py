"""A programmable provider for controller tests: any driver, with faults injected per call.

The simulator fails at random when asked to (`failureRate`); a test of one behaviour
needs one fault at one call: "the next create of web-x answers CapacityExceeded", "the
delete takes effect and then times out", "get hangs". `DriverFaults` holds such faults
and a log of every call; `FaultyDriver` wraps a real driver and consults it before and
after each call. `faulty_simulator(faults)` is a driver factory to register in a
`ProviderRegistry`: the simulator, wrapped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from nodecluster.providers.base import (
    DriverFactory,
    Machine,
    MachineSpec,
    PowerControl,
    ProviderConfig,
    ProviderDriver,
    ProviderError,
)
from nodecluster.providers.simulator import SimulatorDriver

T = TypeVar("T")

DriverCall = Literal["create", "delete", "get", "list", "start", "stop", "reboot"]


@dataclass
class DriverFault:
    """A misbehaviour of the provider for calls of `call` (about machine `name`)."""

    call: DriverCall
    error: ProviderError | None = None
    """What the call raises; None with `hang`."""
    name: str | None = None
    """Only calls about this machine (or, for list, this cluster); None: any."""
    times: int | None = 1
    """How often it fires; None: until removed."""
    after_effect: bool = False
    """Raise (or hang) only after the call took effect: the answer was lost."""
    hang: bool = False
    """Never answer (the operator's call deadline cuts it off)."""
    fired: int = 0

    @property
    def active(self) -> bool:
        """Whether it will fire again."""
        return self.times is None or self.fired < self.times


@dataclass
class DriverFaults:
    """Faults to inject, and the log of calls the driver received."""

    faults: list[DriverFault] = field(default_factory=list)
    calls: list[tuple[DriverCall, str | None]] = field(default_factory=list)
    """(call, machine or cluster) in the order they came."""

    def fail(
        self,
        call: DriverCall,
        error: ProviderError,
        *,
        name: str | None = None,
        times: int | None = 1,
        after_effect: bool = False,
    ) -> DriverFault:
        """Make matching calls raise `error` (after taking effect, with `after_effect`)."""
        fault = DriverFault(call, error, name, times, after_effect)
        self.faults.append(fault)
        return fault

    def hang(
        self, call: DriverCall, *, name: str | None = None, times: int | None = 1
    ) -> DriverFault:
        """Make matching calls never answer."""
        fault = DriverFault(call, None, name, times, hang=True)
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every fault."""
        self.faults.clear()

    def count(self, call: DriverCall, name: str | None = None) -> int:
        """How often `call` was made (about `name`)."""
        return sum(1 for c, n in self.calls if c == call and (name is None or n == name))

    async def around(
        self, call: DriverCall, name: str | None, effect: Callable[[], Awaitable[T]]
    ) -> T:
        """Run one driver call with whatever fault applies to it."""
        self.calls.append((call, name))
        fault = next(
            (
                f
                for f in self.faults
                if f.active and f.call == call and (f.name is None or f.name == name)
            ),
            None,
        )
        if fault is None:
            return await effect()
        fault.fired += 1
        if fault.after_effect:
            await effect()
        if fault.hang:
            await asyncio.Event().wait()
        assert fault.error is not None
        raise fault.error


class FaultyDriver:
    """A driver whose every call goes through `DriverFaults`."""

    def __init__(self, inner: ProviderDriver, faults: DriverFaults) -> None:
        self.inner = inner
        self.faults = faults

    async def create(self, spec: MachineSpec) -> Machine:
        """See ProviderDriver.create."""
        return await self.faults.around("create", spec.name, lambda: self.inner.create(spec))

    async def delete(self, name: str) -> None:
        """See ProviderDriver.delete."""
        await self.faults.around("delete", name, lambda: self.inner.delete(name))

    async def get(self, name: str) -> Machine:
        """See ProviderDriver.get."""
        return await self.faults.around("get", name, lambda: self.inner.get(name))

    async def list(self, cluster: str | None = None) -> list[Machine]:
        """See ProviderDriver.list."""
        return await self.faults.around("list", cluster, lambda: self.inner.list(cluster))

    async def close(self) -> None:
        """See ProviderDriver.close."""
        await self.inner.close()


class FaultyPowerDriver(FaultyDriver):
    """The same, for a driver with power control."""

    def __init__(self, inner: ProviderDriver, faults: DriverFaults) -> None:
        assert isinstance(inner, PowerControl)
        super().__init__(inner, faults)
        self._power: PowerControl = inner

    async def start(self, name: str) -> Machine:
        """See PowerControl.start."""
        return await self.faults.around("start", name, lambda: self._power.start(name))

    async def stop(self, name: str) -> Machine:
        """See PowerControl.stop."""
        return await self.faults.around("stop", name, lambda: self._power.stop(name))

    async def reboot(self, name: str) -> Machine:
        """See PowerControl.reboot."""
        return await self.faults.around("reboot", name, lambda: self._power.reboot(name))


def faulty_simulator(faults: DriverFaults, power: bool = True) -> DriverFactory:
    """A driver factory: the simulator, with `faults` injected (and without power
    control unless `power`, to play a provider that cannot stop machines)."""

    def build(config: ProviderConfig) -> ProviderDriver:
        inner = SimulatorDriver(config)
        return FaultyPowerDriver(inner, faults) if power else FaultyDriver(inner, faults)

    return build
