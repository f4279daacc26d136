"""The provider driver protocol: the narrow, async interface every driver implements.

Modelled on Karpenter's CloudProvider: a handful of idempotent calls and a typed error
vocabulary. Controllers decide between retrying and reporting from the *type* of an
error, never from its message, so drivers must raise these classes.

Idempotency is the contract that makes crashes harmless: `create` is keyed by the
machine name the operator chose and recorded before calling, so calling it twice returns
the same machine; `delete` of a machine already gone raises `NotFound`, which callers
treat as success ("delete until NotFound").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from nodecluster.api.fallback import CapacityType
from nodecluster.api.reasons import Reason
from nodecluster.clock import Clock, SystemClock

MachineState = Literal[
    "Provisioning", "Running", "Stopping", "Stopped", "Starting", "Rebooting", "Deleting", "Failed"
]


class ProviderError(Exception):
    """Base of every error a driver raises on purpose."""

    retryable: bool = False
    reason: Reason = Reason.PROVIDER_ERROR


class NotFound(ProviderError):
    """The machine does not exist (any more). For delete this means done."""

    reason = Reason.NOT_FOUND


class Retryable(ProviderError):
    """A passing fault (timeout, throttling, 5xx): try again later with backoff."""

    retryable = True
    reason = Reason.PROVIDER_UNAVAILABLE


class CapacityExceeded(ProviderError):
    """The provider has no room for this machine type/zone right now; may clear later."""

    retryable = True
    reason = Reason.CAPACITY_EXCEEDED


class QuotaExceeded(ProviderError):
    """An account or NodeProvider quota forbids more machines or cores."""

    retryable = True
    reason = Reason.QUOTA_EXCEEDED


class CostLimitExceeded(ProviderError):
    """The NodeProvider's quotas.maxHourlyCost forbids another machine (raised by the
    operator before it asks the provider, never by a driver)."""

    retryable = True
    reason = Reason.COST_LIMIT_EXCEEDED


class InvalidConfig(ProviderError):
    """The driver config, credentials or profile are wrong; retrying will not help."""

    reason = Reason.INVALID_PROVIDER_CONFIG


class Unauthorized(ProviderError):
    """The provider refused the credentials: expired, revoked, or not valid yet.

    Raise it for an authentication failure (HTTP 401, an expired token), not `InvalidConfig`:
    the operator then reads the credentials Secret again before the next call, so a
    rotation clears by itself, and keeps retrying with backoff, naming it, while a person
    fixes credentials that stay refused. It is retryable because the operator cannot tell
    a rotation still propagating at the provider from a revoked key by one refusal.
    """

    retryable = True
    reason = Reason.PROVIDER_UNAUTHORIZED


def is_not_found(err: BaseException) -> bool:
    """Whether err means the machine is gone."""
    return isinstance(err, NotFound)


@dataclass(frozen=True)
class MachineSpec:
    """What the operator asks a driver to create. `name` is the idempotency key: unique
    across namespaces and installations (see providers/identity.py)."""

    name: str
    cluster: str
    """`<namespace>/<cluster>`: the driver records it on the machine (a tag, a label, a
    column), so that `list(cluster)` finds the machine again, orphans included."""
    machine_type: str
    zone: str | None = None
    image: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    properties: Mapping[str, str] = field(default_factory=dict)
    user_data: str | None = field(default=None, repr=False)
    """Read from the profile's Secret; usually holds a boot token. `repr=False` keeps it
    out of every log line and traceback that shows a spec."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """The machine's identity (providers/identity.py: installation, namespace, cluster,
    node, node uid). The driver stores them on the machine and returns them on every
    `Machine`: the operator decides from them whose a machine is."""
    capacity_type: CapacityType | None = None
    """The profile's capacityType (OnDemand or Spot, an alternative's with a capacity
    fallback); None: the driver's default, as before the field existed. A driver without
    Spot ignores it; one that has run out of the kind asked for raises CapacityExceeded."""


@dataclass(frozen=True)
class Machine:
    """What a driver reports about one machine."""

    name: str
    provider_id: str
    cluster: str
    state: MachineState
    machine_type: str
    zone: str | None
    cores: int
    created_at: datetime
    addresses: tuple[tuple[str, str], ...] = ()
    """(type, address) pairs, e.g. ("InternalIP", "10.0.0.4")."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """The tags it was created with (`MachineSpec.tags`); empty for a machine made by an
    earlier version, which only carried its `cluster`."""


@dataclass(frozen=True)
class ProviderConfig:
    """Everything a driver is built from: the NodeProvider's spec plus resolved credentials."""

    name: str
    config: Mapping[str, Any]
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Secret values; `repr=False` keeps them out of logs and tracebacks."""
    max_nodes: int | None = None
    max_cores: int | None = None
    cores_by_type: Mapping[str, int] = field(default_factory=dict)
    call_timeout_seconds: float = 120.0
    """The NodeProvider's spec.callTimeoutSeconds: the registry bounds every call by it."""
    clock: Clock = field(default_factory=SystemClock, repr=False, compare=False)
    """The operator's clock, for drivers that model time themselves (the simulator's
    latencies): a test that moves the operator's time moves theirs too."""


@runtime_checkable
class ProviderDriver(Protocol):
    """The interface every driver implements. Each call is idempotent."""

    async def create(self, spec: MachineSpec) -> Machine:
        """Create the machine named spec.name, or return it if it already exists."""
        ...

    async def delete(self, name: str) -> None:
        """Begin or finish deleting; raise NotFound once the machine is gone."""
        ...

    async def get(self, name: str) -> Machine:
        """The machine's current state; NotFound if it does not exist."""
        ...

    async def list(self, cluster: str | None = None) -> list[Machine]:
        """Every machine tagged with this cluster (`<namespace>/<cluster>`), or with no
        argument every machine this provider holds for the operator (any cluster tag).

        The operator polls health with one unfiltered call per provider, not one per
        cluster, so a fleet of thousands of clusters costs one request per interval."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...


@runtime_checkable
class PowerControl(Protocol):
    """Optional: drivers that can stop, start and reboot machines implement this too."""

    async def start(self, name: str) -> Machine:
        """Power the machine on; idempotent."""
        ...

    async def stop(self, name: str) -> Machine:
        """Power the machine off, keeping it; idempotent."""
        ...

    async def reboot(self, name: str) -> Machine:
        """Restart the machine."""
        ...


@dataclass(frozen=True)
class MachineSelection:
    """Which machines `Adoption.discover` looks for: those with any of `provider_ids`, or
    (when none is given) those carrying every one of `tags`. One of the two is given."""

    provider_ids: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Adoption(Protocol):
    """Optional: drivers that can take over machines made without the operator (by hand,
    by another tool) implement this too; an Adopt operation on a driver without it fails,
    changing nothing.

    The driver finds and tags; it does not judge. `discover` returns every live machine the
    selection matches, whoever made it, with the tags it carries; the operator decides from
    those tags (providers/identity.py) whether a machine is anyone's already, and never
    asks to adopt one that is."""

    async def discover(self, selection: MachineSelection) -> list[Machine]:
        """The live machines (not terminated, not gone) matching `selection`, of any owner
        or none, in a stable order. A provider id that matches nothing is left out."""
        ...

    async def adopt(self, machine: Machine, spec: MachineSpec) -> Machine:
        """Make `machine` (as `discover` returned it) the machine `spec` describes: record
        `spec.name`, `spec.cluster` and `spec.tags` on it, so that `get(spec.name)` and
        `list(spec.cluster)` find it from then on, exactly as a machine `create` made.
        Its type, zone, image and state stay as they are. Idempotent: adopting it again
        for the same spec returns it. NotFound if it is gone."""
        ...


class DriverFactory(Protocol):
    """What the entry point `nodecluster.providers:<name>` must resolve to."""

    def __call__(self, config: ProviderConfig) -> ProviderDriver:
        """Build a driver; raise InvalidConfig for bad settings."""
        ...
