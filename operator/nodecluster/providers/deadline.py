"""A deadline on every provider call, whatever the driver does about its own timeouts.

A cloud API that accepts a connection and never answers would otherwise hold a node's
reconcile forever: reconciles are serialised per object, so that node would stay
Provisioning (or Deleting) with no error anywhere, and a NodeCluster would wait on it
for good. The registry wraps every driver it builds in `with_deadline`, so each call
either returns, raises the driver's own typed error, or raises `Retryable` once the
NodeProvider's `spec.callTimeoutSeconds` have passed. Abandoning a call is safe because
every call is idempotent: the retry of a create that did take effect finds the machine
by its name instead of making a second one.

Being the one place every call passes through, it is also where calls are measured: an
optional `CallObserver` (the controllers' metrics, handed in through the registry) hears of
each call's provider, verb, duration and error. A callback, so providers stay free of the
controllers and of Prometheus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nodecluster.providers.base import (
    Adoption,
    Machine,
    MachineSelection,
    MachineSpec,
    PowerControl,
    ProviderDriver,
    Retryable,
)

T = TypeVar("T")

CallObserver = Callable[[str, str, float, BaseException | None], None]
"""Told of every call that ended: (provider, verb, seconds, the error or None). A call cut
off by its deadline is told with the `TimeoutError`, not the `Retryable` raised for it, so
that it can be counted as a timeout. Must not raise, and must be cheap: it runs inline."""


Guard = Callable[[str], None]
"""Asked before every call (with what the call is), and raises if it may not be made: the
leader election's fence (controllers/leader.py), so a replica that lost its Lease never
reaches a provider. Providers know it only as a callable."""


class DeadlineDriver:
    """A driver whose every call ends within `seconds`."""

    def __init__(
        self,
        inner: ProviderDriver,
        seconds: float,
        provider: str,
        observer: CallObserver | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.inner = inner
        """The driver as its factory built it."""
        self.seconds = seconds
        self._provider = provider
        self._observer = observer
        self._guard = guard

    async def _bounded(self, verb: str, target: str, awaitable: Awaitable[T]) -> T:
        if self._guard is not None:
            try:
                self._guard(f"NodeProvider {self._provider!r}: {verb} {target}".rstrip())
            except BaseException:
                if asyncio.iscoroutine(awaitable):
                    awaitable.close()  # never started: no "never awaited" warning
                raise
        loop = asyncio.get_running_loop()
        start = loop.time()
        error: BaseException | None = None
        ended = True
        try:
            async with asyncio.timeout(self.seconds):
                return await awaitable
        except TimeoutError as err:
            error = err
            call = f"{verb} {target}" if target else verb
            raise Retryable(
                f"NodeProvider {self._provider!r}: {call} did not answer "
                f"within {self.seconds:g}s (spec.callTimeoutSeconds)"
            ) from err
        except asyncio.CancelledError:
            ended = False  # the caller gave up (a shutdown): the call neither did nor failed
            raise
        except Exception as err:
            error = err
            raise
        finally:
            if ended and self._observer is not None:
                self._observer(self._provider, verb, loop.time() - start, error)

    async def create(self, spec: MachineSpec) -> Machine:
        """See ProviderDriver.create."""
        return await self._bounded("create", spec.name, self.inner.create(spec))

    async def delete(self, name: str) -> None:
        """See ProviderDriver.delete."""
        await self._bounded("delete", name, self.inner.delete(name))

    async def get(self, name: str) -> Machine:
        """See ProviderDriver.get."""
        return await self._bounded("get", name, self.inner.get(name))

    async def list(self, cluster: str | None = None) -> list[Machine]:
        """See ProviderDriver.list."""
        return await self._bounded("list", cluster or "all", self.inner.list(cluster))

    async def close(self) -> None:
        """See ProviderDriver.close (bounded too: a stuck close must not block a rebuild)."""
        await self._bounded("close", "", self.inner.close())


class DeadlinePowerDriver(DeadlineDriver):
    """The same, for drivers that can also power machines off, on and reboot them."""

    def __init__(
        self,
        inner: ProviderDriver,
        seconds: float,
        provider: str,
        observer: CallObserver | None = None,
        guard: Guard | None = None,
    ) -> None:
        assert isinstance(inner, PowerControl)
        super().__init__(inner, seconds, provider, observer, guard)
        self._power: PowerControl = inner

    async def start(self, name: str) -> Machine:
        """See PowerControl.start."""
        return await self._bounded("start", name, self._power.start(name))

    async def stop(self, name: str) -> Machine:
        """See PowerControl.stop."""
        return await self._bounded("stop", name, self._power.stop(name))

    async def reboot(self, name: str) -> Machine:
        """See PowerControl.reboot."""
        return await self._bounded("reboot", name, self._power.reboot(name))


class DeadlineAdoptionDriver(DeadlineDriver):
    """The same, for drivers that can adopt machines made without the operator."""

    async def discover(self, selection: MachineSelection) -> list[Machine]:
        """See Adoption.discover."""
        adoption = self.inner
        assert isinstance(adoption, Adoption)
        return await self._bounded("discover", "", adoption.discover(selection))

    async def adopt(self, machine: Machine, spec: MachineSpec) -> Machine:
        """See Adoption.adopt."""
        adoption = self.inner
        assert isinstance(adoption, Adoption)
        return await self._bounded("adopt", spec.name, adoption.adopt(machine, spec))


class DeadlinePowerAdoptionDriver(DeadlinePowerDriver, DeadlineAdoptionDriver):
    """Power control and adoption, both."""


def with_deadline(
    inner: ProviderDriver,
    seconds: float,
    provider: str,
    observer: CallObserver | None = None,
    guard: Guard | None = None,
) -> DeadlineDriver:
    """Wrap a driver so no call outlives `seconds` (`observer` hears of each, and with
    `guard`, none is made that the guard refuses); power control and adoption stay
    optional, so `isinstance(driver, PowerControl)` (or `Adoption`) answers for the wrapper
    as for the driver."""
    power, adoption = isinstance(inner, PowerControl), isinstance(inner, Adoption)
    if power and adoption:
        return DeadlinePowerAdoptionDriver(inner, seconds, provider, observer, guard)
    if power:
        return DeadlinePowerDriver(inner, seconds, provider, observer, guard)
    if adoption:
        return DeadlineAdoptionDriver(inner, seconds, provider, observer, guard)
    return DeadlineDriver(inner, seconds, provider, observer, guard)
