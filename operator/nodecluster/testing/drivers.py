"""A programmable provider for controller tests: any driver, with faults injected per call.

The simulator fails at random when asked to (`failureRate`); a test of one behaviour
needs one fault at one call: "the next create of web-x answers CapacityExceeded", "the
delete takes effect and then times out", "get hangs". `DriverFaults` holds such faults
and a log of every call; `FaultyDriver` wraps a real driver and consults it before and
after each call. `faulty_simulator(faults)` is a driver factory to register in a
`ProviderRegistry`: the simulator, wrapped. `DriverFaults.accepted_credentials` plays a
provider account whose key was rotated: every call of a driver built from any other
credentials is refused (`Unauthorized`), as a cloud refuses a revoked key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from nodecluster.providers.base import (
    Adoption,
    DriverFactory,
    Machine,
    MachineSelection,
    MachineSpec,
    PowerControl,
    ProviderConfig,
    ProviderDriver,
    ProviderError,
    Unauthorized,
)
from nodecluster.providers.identity import NODE_TAG
from nodecluster.providers.simulator import SimulatorDriver

T = TypeVar("T")

DriverCall = Literal[
    "create", "delete", "get", "list", "start", "stop", "reboot", "discover", "adopt"
]


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
    """(call, node or cluster) in the order they came: a machine is named by its node (its
    `nodecluster.io/node` tag), since its own name is derived from the node's identity."""
    node_names: dict[str, str] = field(default_factory=dict)
    """Machine name -> node name, for every machine created through a `FaultyDriver`: faults
    and the log name nodes, as tests do."""
    accepted_credentials: Mapping[str, str] | None = field(default=None, repr=False)
    """The only credentials the provider takes (None: any). Calls of a driver built from
    others are refused with `Unauthorized` and take no effect (a matching injected fault
    still fires first)."""
    refused: list[tuple[DriverCall, str | None]] = field(default_factory=list)
    """The calls refused for their credentials, in order (they are in `calls` too)."""

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

    def check_credentials(
        self, call: DriverCall, name: str | None, credentials: Mapping[str, str]
    ) -> None:
        """Refuse a call made with credentials other than `accepted_credentials`."""
        if self.accepted_credentials is None:
            return
        if dict(credentials) != dict(self.accepted_credentials):
            self.refused.append((call, name))
            raise Unauthorized("the provider refused the credentials (expired or revoked)")

    def count(self, call: DriverCall, name: str | None = None) -> int:
        """How often `call` was made (about `name`)."""
        return sum(1 for c, n in self.calls if c == call and (name is None or n == name))

    async def around(
        self, call: DriverCall, name: str | None, effect: Callable[[], Awaitable[T]]
    ) -> T:
        """Run one driver call with whatever fault applies to it."""
        name = self.node_names.get(name, name) if name is not None else None
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
    """A driver whose every call goes through `DriverFaults`, made with `credentials`
    (those of the ProviderConfig it was built from)."""

    def __init__(
        self,
        inner: ProviderDriver,
        faults: DriverFaults,
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        self.inner = inner
        self.faults = faults
        self._credentials: Mapping[str, str] = dict(credentials or {})

    async def _call(
        self, call: DriverCall, name: str | None, effect: Callable[[], Awaitable[T]]
    ) -> T:
        async def authorised() -> T:
            self.faults.check_credentials(call, name, self._credentials)
            return await effect()

        return await self.faults.around(call, name, authorised)

    async def create(self, spec: MachineSpec) -> Machine:
        """See ProviderDriver.create."""
        self.faults.node_names[spec.name] = spec.tags.get(NODE_TAG, spec.name)
        return await self._call("create", spec.name, lambda: self.inner.create(spec))

    async def delete(self, name: str) -> None:
        """See ProviderDriver.delete."""
        await self._call("delete", name, lambda: self.inner.delete(name))

    async def get(self, name: str) -> Machine:
        """See ProviderDriver.get."""
        return await self._call("get", name, lambda: self.inner.get(name))

    async def list(self, cluster: str | None = None) -> list[Machine]:
        """See ProviderDriver.list."""
        return await self._call("list", cluster, lambda: self.inner.list(cluster))

    async def close(self) -> None:
        """See ProviderDriver.close."""
        await self.inner.close()


class FaultyPowerDriver(FaultyDriver):
    """The same, for a driver with power control."""

    def __init__(
        self,
        inner: ProviderDriver,
        faults: DriverFaults,
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        assert isinstance(inner, PowerControl)
        super().__init__(inner, faults, credentials)
        self._power: PowerControl = inner

    async def start(self, name: str) -> Machine:
        """See PowerControl.start."""
        return await self._call("start", name, lambda: self._power.start(name))

    async def stop(self, name: str) -> Machine:
        """See PowerControl.stop."""
        return await self._call("stop", name, lambda: self._power.stop(name))

    async def reboot(self, name: str) -> Machine:
        """See PowerControl.reboot."""
        return await self._call("reboot", name, lambda: self._power.reboot(name))


class FaultyAdoptionDriver(FaultyPowerDriver):
    """The same, for a driver with power control and adoption (the simulator). A machine
    is named in the log by the node it is adopted for."""

    async def discover(self, selection: MachineSelection) -> list[Machine]:
        """See Adoption.discover."""
        assert isinstance(self.inner, Adoption)
        adoption = self.inner
        return await self._call("discover", None, lambda: adoption.discover(selection))

    async def adopt(self, machine: Machine, spec: MachineSpec) -> Machine:
        """See Adoption.adopt."""
        assert isinstance(self.inner, Adoption)
        adoption = self.inner
        self.faults.node_names[spec.name] = spec.tags.get(NODE_TAG, spec.name)
        return await self._call("adopt", spec.name, lambda: adoption.adopt(machine, spec))


def faulty_simulator(
    faults: DriverFaults, power: bool = True, adoption: bool = True
) -> DriverFactory:
    """A driver factory: the simulator, with `faults` injected (and without power
    control unless `power`, to play a provider that cannot stop machines; without
    adoption unless `adoption` and `power`)."""

    def build(config: ProviderConfig) -> ProviderDriver:
        inner = SimulatorDriver(config)
        if not power:
            return FaultyDriver(inner, faults, config.credentials)
        wrapper = FaultyAdoptionDriver if adoption else FaultyPowerDriver
        return wrapper(inner, faults, config.credentials)

    return build
