"""Find provider drivers through the entry-point group `nodecluster.providers`.

Third parties ship a package whose `pyproject.toml` declares
`[project.entry-points."nodecluster.providers"] mycloud = "pkg.module:Factory"`, and a
NodeProvider with `driver: mycloud` uses it: no fork, no registration code.

Drivers are cached per NodeProvider and rebuilt when its spec or credentials change, so
a long-lived connection pool (or SQLite handle) is shared by every cluster using it.
Every driver is handed out wrapped in a deadline (`deadline.py`), so no call can hang,
and every call is told to the registry's call observer (the operator's metrics).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from nodecluster.providers.base import (
    DriverFactory,
    InvalidConfig,
    ProviderConfig,
    ProviderDriver,
    ProviderError,
)
from nodecluster.providers.deadline import CallObserver, Guard, with_deadline

GROUP = "nodecluster.providers"

log = logging.getLogger(__name__)


def discover() -> dict[str, Callable[[ProviderConfig], ProviderDriver]]:
    """Every installed driver factory by name."""
    found: dict[str, Callable[[ProviderConfig], ProviderDriver]] = {}
    for ep in entry_points(group=GROUP):
        found[ep.name] = ep.load()
    return found


class ProviderRegistry:
    """Builds and caches one driver per NodeProvider."""

    def __init__(
        self, factories: Mapping[str, DriverFactory] | None = None, guard: Guard | None = None
    ) -> None:
        self._factories: dict[str, DriverFactory] = dict(
            factories if factories is not None else discover()
        )
        self.guard = guard
        """Asked before every call of every driver built (see deadline.Guard)."""
        self._drivers: dict[str, tuple[str, ProviderDriver]] = {}
        self._observer: CallObserver | None = None

    def observe_calls(self, observer: CallObserver | None) -> None:
        """Tell `observer` of every driver call from now on, through drivers built before
        too (each asks the registry). `build_world` points it at the world's metrics; the
        registry is built before the world (tests hand in their own), hence a setter."""
        self._observer = observer

    def _observe(
        self, provider: str, call: str, seconds: float, error: BaseException | None
    ) -> None:
        if self._observer is not None:
            self._observer(provider, call, seconds, error)

    @property
    def names(self) -> list[str]:
        """Installed driver names, for error messages."""
        return sorted(self._factories)

    def register(self, name: str, factory: DriverFactory) -> None:
        """Add a driver without an entry point (tests, embedding)."""
        self._factories[name] = factory

    async def driver_for(self, driver: str, config: ProviderConfig) -> ProviderDriver:
        """The driver for a NodeProvider, built on first use or after its spec changed."""
        fingerprint = _fingerprint(driver, config)
        cached = self._drivers.get(config.name)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        factory = self._factories.get(driver)
        if factory is None:
            raise InvalidConfig(
                f"no driver named {driver!r} is installed (installed: {', '.join(self.names)})"
            )
        built = with_deadline(
            factory(config), config.call_timeout_seconds, config.name, self._observe, self.guard
        )
        self._drivers[config.name] = (fingerprint, built)
        if cached is not None:
            await _close(config.name, cached[1])
        log.info("Provider %s: driver %s ready", config.name, driver)
        return built

    def cached(self, provider_name: str) -> ProviderDriver | None:
        """The driver already built for a provider, if any."""
        entry = self._drivers.get(provider_name)
        return entry[1] if entry else None

    async def close(self) -> None:
        """Close every driver."""
        for name, (_, drv) in self._drivers.items():
            await _close(name, drv)
        self._drivers.clear()


async def _close(provider: str, driver: ProviderDriver) -> None:
    """Close a driver that is no longer used. A close that fails or hangs (cut off by the
    call deadline) is logged, never raised: the new driver is already in place, and the
    other drivers must still be closed."""
    try:
        await driver.close()
    except ProviderError as err:
        log.warning("Provider %s: closing its old driver failed: %s", provider, err)


def _fingerprint(driver: str, config: ProviderConfig) -> str:
    payload: dict[str, Any] = {
        "driver": driver,
        "config": config.config,
        "credentials": dict(config.credentials),
        "max_nodes": config.max_nodes,
        "max_cores": config.max_cores,
        "cores": dict(config.cores_by_type),
        "call_timeout_seconds": config.call_timeout_seconds,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
