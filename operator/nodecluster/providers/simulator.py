"""The simulator driver: a provider whose machines live in a SQLite file.

It is first-class code, not a test double: the demo, the end-to-end suite and the
benchmarks all run on it, so it behaves like a real cloud where it matters:

- create is idempotent on the machine name, and the row is written *before* any
  latency elapses, so a crash mid-call leaves a machine to be found, exactly as a cloud
  leaves an instance behind a timed-out RunInstances;
- calls return at once and machines pass through Provisioning, Deleting, Stopping and
  Starting for the configured latency, as a cloud's asynchronous API does;
- latency, failure rate, timeouts, capacity and quota are configurable and seeded, so a
  fault run is repeatable; capacity also per machine type, zone and capacity type
  (`capacityLimits`), so one choice can be full while the next has room, as a cloud's
  Spot pool in one zone runs dry (the capacity fallback's tests and demo);
- the inventory survives operator restarts and can be audited by anyone with the file
  (`nodecluster-operator simulator inventory`), including a call log.

SQLite calls are blocking, so each runs in a worker thread: the event loop never waits
on the disk.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nodecluster.providers.base import (
    CapacityExceeded,
    InvalidConfig,
    Machine,
    MachineSelection,
    MachineSpec,
    MachineState,
    NotFound,
    ProviderConfig,
    QuotaExceeded,
    Retryable,
)

Rows = list[sqlite3.Row]
Machines = list[Machine]
"""(For methods defined after a method named `list`.)"""

DEFAULT_ZONES = ("zone-a", "zone-b", "zone-c")
DEFAULT_CORES = 2
DEFAULT_CAPACITY_TYPE = "OnDemand"
"""What a machine asked for with no capacity type is sold as (as a cloud's default)."""


@dataclass(frozen=True)
class CapacityLimit:
    """`config.capacityLimits[]`: at most `max` live machines of those it matches (each field
    unset matches any); a create beyond it raises CapacityExceeded. Editing the NodeProvider
    (a limit raised or removed) is the capacity coming back."""

    max: int
    machine_type: str | None = None
    zone: str | None = None
    capacity_type: str | None = None

    def matches(self, machine_type: str, zone: str, capacity_type: str) -> bool:
        """Whether a machine of this type, zone and capacity type counts against it."""
        return (
            self.machine_type in (None, machine_type)
            and self.zone in (None, zone)
            and self.capacity_type in (None, capacity_type)
        )


def default_path(provider_name: str) -> Path:
    """Where a provider's inventory lives when its config names no path."""
    base = os.environ.get("NODECLUSTER_SIMULATOR_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"),
        "nodecluster-operator",
        "simulator",
    )
    return Path(base) / f"{provider_name}.db"


@dataclass(frozen=True)
class SimulatorSettings:
    """The driver's config keys (camelCase in the NodeProvider), validated once."""

    path: Path
    create_latency: float = 0.0
    delete_latency: float = 0.0
    power_latency: float = 0.0
    latency_jitter: float = 0.0
    failure_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_seconds: float = 5.0
    capacity: int | None = None
    max_nodes: int | None = None
    max_cores: int | None = None
    seed: int | None = None
    zones: tuple[str, ...] = DEFAULT_ZONES
    cores_by_type: Mapping[str, int] = field(default_factory=dict)
    capacity_limits: tuple[CapacityLimit, ...] = ()

    KNOWN = frozenset(
        {
            "capacityLimits",
            "path",
            "createLatencySeconds",
            "deleteLatencySeconds",
            "powerLatencySeconds",
            "latencyJitter",
            "failureRate",
            "timeoutRate",
            "timeoutSeconds",
            "capacity",
            "quota",
            "seed",
            "zones",
            "requireCredentials",
        }
    )

    @classmethod
    def from_config(cls, config: ProviderConfig) -> SimulatorSettings:
        """Parse and check the NodeProvider's `spec.config`; InvalidConfig says what is wrong."""
        raw = dict(config.config)
        unknown = sorted(set(raw) - cls.KNOWN)
        if unknown:
            raise InvalidConfig(
                f"unknown simulator config keys {unknown}; known: {sorted(cls.KNOWN)}"
            )

        def number(key: str, default: float, lo: float = 0.0, hi: float | None = None) -> float:
            value = raw.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidConfig(f"config.{key} must be a number, got {value!r}")
            if value < lo or (hi is not None and value > hi):
                bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
                raise InvalidConfig(f"config.{key} must be {bound}, got {value}")
            return float(value)

        def count(key: str, source: Mapping[str, Any]) -> int | None:
            value = source.get(key)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidConfig(f"config.{key} must be a non-negative integer, got {value!r}")
            return value

        quota = raw.get("quota") or {}
        if not isinstance(quota, dict):
            raise InvalidConfig("config.quota must be a map with maxNodes and/or maxCores")
        # A misspelt quota key would otherwise mean "no quota", silently.
        unknown_quota = sorted(set(quota) - {"maxNodes", "maxCores"})
        if unknown_quota:
            raise InvalidConfig(
                f"unknown config.quota keys {unknown_quota}; known: ['maxCores', 'maxNodes']"
            )
        zones = raw.get("zones", list(DEFAULT_ZONES))
        if not isinstance(zones, list) or not zones or not all(isinstance(z, str) for z in zones):
            raise InvalidConfig("config.zones must be a non-empty list of zone names")
        seed = raw.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InvalidConfig(f"config.seed must be an integer, got {seed!r}")
        required = raw.get("requireCredentials", [])
        if not isinstance(required, list) or not all(isinstance(k, str) for k in required):
            raise InvalidConfig("config.requireCredentials must be a list of Secret key names")
        missing = sorted(set(required) - set(config.credentials))
        if missing:
            # Name the keys, never the values.
            raise InvalidConfig(f"the credentials Secret lacks the keys {missing}")
        limits = raw.get("capacityLimits", [])
        if not isinstance(limits, list) or not all(isinstance(lim, dict) for lim in limits):
            raise InvalidConfig(
                "config.capacityLimits must be a list of {max, machineType?, zone?, capacityType?}"
            )
        capacity_limits = []
        for i, lim in enumerate(limits):
            unknown_keys = sorted(set(lim) - {"max", "machineType", "zone", "capacityType"})
            if unknown_keys:
                raise InvalidConfig(f"unknown config.capacityLimits[{i}] keys {unknown_keys}")
            top = count("max", lim)
            if top is None:
                raise InvalidConfig(f"config.capacityLimits[{i}].max is required")
            if lim.get("capacityType") not in (None, "OnDemand", "Spot"):
                raise InvalidConfig(f"config.capacityLimits[{i}].capacityType: OnDemand or Spot")
            capacity_limits.append(
                CapacityLimit(top, lim.get("machineType"), lim.get("zone"), lim.get("capacityType"))
            )
        path = raw.get("path")
        if path is not None and not isinstance(path, str):
            raise InvalidConfig("config.path must be a file path")
        return cls(
            path=Path(path) if path else default_path(config.name),
            create_latency=number("createLatencySeconds", 0.0, hi=3600),
            delete_latency=number("deleteLatencySeconds", 0.0, hi=3600),
            power_latency=number("powerLatencySeconds", 0.0, hi=3600),
            latency_jitter=number("latencyJitter", 0.0, hi=1.0),
            failure_rate=number("failureRate", 0.0, hi=1.0),
            timeout_rate=number("timeoutRate", 0.0, hi=1.0),
            timeout_seconds=number("timeoutSeconds", 5.0, hi=600),
            capacity=count("capacity", raw),
            max_nodes=count("maxNodes", quota),
            max_cores=count("maxCores", quota),
            seed=seed,
            zones=tuple(zones),
            cores_by_type=dict(config.cores_by_type),
            capacity_limits=tuple(capacity_limits),
        )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS machines (
    name TEXT PRIMARY KEY,
    provider_id TEXT NOT NULL,
    cluster TEXT NOT NULL,
    machine_type TEXT NOT NULL,
    zone TEXT,
    image TEXT,
    cores INTEGER NOT NULL,
    labels TEXT NOT NULL,
    address TEXT NOT NULL,
    power TEXT NOT NULL,            -- Running | Stopped (what the owner asked for)
    created_at REAL NOT NULL,
    ready_at REAL NOT NULL,         -- provisioning ends at this time
    power_ready_at REAL NOT NULL,   -- a stop/start/reboot ends at this time
    deleting_at REAL,               -- set once delete was called
    gone_at REAL,                   -- the machine disappears at this time
    failed INTEGER NOT NULL DEFAULT 0, -- set by `simulator fail`: a broken machine
    tags TEXT NOT NULL DEFAULT '{}',   -- the identity tags (JSON), as a cloud keeps tags
    capacity_type TEXT NOT NULL DEFAULT 'OnDemand'  -- OnDemand | Spot
);
CREATE INDEX IF NOT EXISTS machines_cluster ON machines(cluster);
-- The purge before every read finds the machines gone by this index, not by reading the
-- whole table: without it each get was a scan, and 100,000 machines a quadratic converge.
CREATE INDEX IF NOT EXISTS machines_gone ON machines(gone_at) WHERE gone_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    op TEXT NOT NULL,
    name TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class Inventory:
    """The SQLite file: blocking, thread-safe, shared by every call of one driver.

    Separate from the driver so tests and the audit command read the same truth
    the operator writes, without an event loop.
    """

    def __init__(self, path: Path, now: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.now = now
        """Seconds since the epoch: the operator's clock (moved by tests), else the real one."""
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=30
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        # Files written before a column existed must still open: the inventory is
        # meant to outlive operator upgrades, not only restarts.
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(machines)")}
        if "failed" not in columns:
            self._db.execute("ALTER TABLE machines ADD COLUMN failed INTEGER NOT NULL DEFAULT 0")
        if "tags" not in columns:
            # Machines of earlier versions carry no identity tags: '{}' (see identity.py).
            self._db.execute("ALTER TABLE machines ADD COLUMN tags TEXT NOT NULL DEFAULT '{}'")
        if "capacity_type" not in columns:
            self._db.execute(
                "ALTER TABLE machines ADD COLUMN capacity_type TEXT NOT NULL DEFAULT 'OnDemand'"
            )

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    def _purge(self, now: float) -> None:
        self._db.execute("DELETE FROM machines WHERE gone_at IS NOT NULL AND gone_at <= ?", (now,))

    def log(self, op: str, name: str, outcome: str) -> None:
        """Append to the call log."""
        with self._lock:
            self._db.execute(
                "INSERT INTO calls(at, op, name, outcome) VALUES (?,?,?,?)",
                (self.now(), op, name, outcome),
            )

    def create(
        self,
        spec: MachineSpec,
        cores: int,
        zone: str,
        latency: float,
        limits: tuple[int | None, int | None, int | None],
        pools: tuple[CapacityLimit, ...] = (),
    ) -> tuple[sqlite3.Row, bool]:
        """Insert the machine unless it exists; return (row, created). Checks limits atomically."""
        capacity, max_nodes, max_cores = limits
        now = self.now()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._purge(now)
                row = self._db.execute(
                    "SELECT * FROM machines WHERE name=?", (spec.name,)
                ).fetchone()
                if row is not None:
                    self._db.execute(
                        "INSERT INTO calls(at, op, name, outcome) VALUES (?,?,?,?)",
                        (now, "create", spec.name, "exists"),
                    )
                    self._db.execute("COMMIT")
                    return row, False
                nodes = used_cores = 0
                if (capacity, max_nodes, max_cores) != (None, None, None):
                    # (A scan: only when a limit asks for the count, or a fleet of 100,000
                    # machines would make every create read them all.)
                    live = self._db.execute(
                        "SELECT COUNT(*), COALESCE(SUM(cores),0) FROM machines"
                        " WHERE deleting_at IS NULL"
                    ).fetchone()
                    nodes, used_cores = int(live[0]), int(live[1])
                if capacity is not None and nodes + 1 > capacity:
                    raise CapacityExceeded(
                        f"simulated cloud is full: {nodes} of {capacity} machines in use"
                    )
                kind = spec.capacity_type or DEFAULT_CAPACITY_TYPE
                for pool in pools:
                    if not pool.matches(spec.machine_type, zone, kind):
                        continue
                    held = self._db.execute(
                        "SELECT COUNT(*) FROM machines WHERE deleting_at IS NULL"
                        " AND (? IS NULL OR machine_type = ?) AND (? IS NULL OR zone = ?)"
                        " AND (? IS NULL OR capacity_type = ?)",
                        (pool.machine_type,) * 2 + (pool.zone,) * 2 + (pool.capacity_type,) * 2,
                    ).fetchone()[0]
                    if held + 1 > pool.max:
                        raise CapacityExceeded(
                            f"no capacity for {spec.machine_type} {kind} in {zone}: "
                            f"{held} of {pool.max} machines in use"
                        )
                if max_nodes is not None and nodes + 1 > max_nodes:
                    raise QuotaExceeded(f"machine quota reached: {nodes} of {max_nodes} in use")
                if max_cores is not None and used_cores + cores > max_cores:
                    raise QuotaExceeded(
                        f"core quota reached: {used_cores} of {max_cores} cores in use, "
                        f"{cores} more requested"
                    )
                seq = self._db.execute(
                    "INSERT INTO counters(name, value) VALUES('machine', 1) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value"
                ).fetchone()[0]
                self._db.execute(
                    "INSERT INTO machines(name, provider_id, cluster, machine_type, zone, image,"
                    " cores,"
                    " labels, address, power, created_at, ready_at, power_ready_at, tags,"
                    " capacity_type)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        spec.name,
                        f"sim://{zone}/i-{seq:08x}",
                        spec.cluster,
                        spec.machine_type,
                        zone,
                        spec.image,
                        cores,
                        json.dumps(dict(spec.labels), sort_keys=True),
                        f"10.{(seq >> 16) & 255}.{(seq >> 8) & 255}.{seq & 255}",
                        "Running",
                        now,
                        now + latency,
                        now,
                        json.dumps(dict(spec.tags), sort_keys=True),
                        spec.capacity_type or DEFAULT_CAPACITY_TYPE,
                    ),
                )
                row = self._db.execute(
                    "SELECT * FROM machines WHERE name=?", (spec.name,)
                ).fetchone()
                self._db.execute(
                    "INSERT INTO calls(at, op, name, outcome) VALUES (?,?,?,?)",
                    (now, "create", spec.name, "created"),
                )
                self._db.execute("COMMIT")
                return row, True
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def get(self, name: str) -> sqlite3.Row | None:
        """One machine, or None once it is gone."""
        with self._lock:
            self._purge(self.now())
            row: sqlite3.Row | None = self._db.execute(
                "SELECT * FROM machines WHERE name=?", (name,)
            ).fetchone()
            return row

    def list(self, cluster: str | None = None) -> list[sqlite3.Row]:
        """Machines of one cluster, or all."""
        with self._lock:
            self._purge(self.now())
            if cluster is None:
                return list(self._db.execute("SELECT * FROM machines ORDER BY name"))
            return list(
                self._db.execute("SELECT * FROM machines WHERE cluster=? ORDER BY name", (cluster,))
            )

    def discover(self, provider_ids: tuple[str, ...], tags: Mapping[str, str]) -> Rows:
        """Live machines with one of `provider_ids`, or (none given) whose labels and tags
        together carry every one of `tags`; by provider id."""
        with self._lock:
            self._purge(self.now())
            if provider_ids:
                marks = ",".join("?" * len(provider_ids))
                return list(
                    self._db.execute(
                        f"SELECT * FROM machines WHERE provider_id IN ({marks})"
                        " ORDER BY provider_id",
                        provider_ids,
                    )
                )
            rows = self._db.execute("SELECT * FROM machines ORDER BY provider_id")
            return [
                row
                for row in rows
                if all(
                    {**json.loads(row["labels"]), **json.loads(row["tags"])}.get(key) == value
                    for key, value in tags.items()
                )
            ]

    def adopt(self, provider_id: str, spec: MachineSpec) -> sqlite3.Row | None:
        """Give the machine `provider_id` the name, cluster and tags of `spec` (idempotent);
        None if it is gone."""
        now = self.now()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._purge(now)
                self._db.execute(
                    "UPDATE machines SET name=?, cluster=?, tags=? WHERE provider_id=?",
                    (
                        spec.name,
                        spec.cluster,
                        json.dumps(dict(spec.tags), sort_keys=True),
                        provider_id,
                    ),
                )
                row: sqlite3.Row | None = self._db.execute(
                    "SELECT * FROM machines WHERE provider_id=?", (provider_id,)
                ).fetchone()
                self._db.execute(
                    "INSERT INTO calls(at, op, name, outcome) VALUES (?,?,?,?)",
                    (now, "adopt", spec.name, provider_id if row is not None else "missing"),
                )
                self._db.execute("COMMIT")
                return row
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def set_failed(self, name: str) -> bool:
        """Break a machine (for people and tests playing out failures); False if unknown.

        `name` is the machine's name, or the name of the ClusterNode it belongs to (its
        node tag): what a person knows (every namespace's node of that name breaks)."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE machines SET failed=1 WHERE name=?"
                " OR json_extract(tags, '$.\"nodecluster.io/node\"')=?",
                (name, name),
            )
            return cur.rowcount > 0

    def mark_deleting(self, name: str, latency: float) -> sqlite3.Row | None:
        """Start deleting (idempotent): the machine disappears after `latency`."""
        now = self.now()
        with self._lock:
            self._purge(now)
            self._db.execute(
                "UPDATE machines SET deleting_at=?, gone_at=? WHERE name=? AND deleting_at IS NULL",
                (now, now + latency, name),
            )
            self._purge(now)
            row: sqlite3.Row | None = self._db.execute(
                "SELECT * FROM machines WHERE name=?", (name,)
            ).fetchone()
            return row

    def set_power(
        self, name: str, power: str, latency: float, force: bool = False
    ) -> sqlite3.Row | None:
        """Ask for a power state (idempotent unless force, used by reboot)."""
        now = self.now()
        with self._lock:
            self._purge(now)
            cond = "" if force else " AND power != ?"
            args: tuple[Any, ...] = (power, now + latency, name) + (() if force else (power,))
            self._db.execute(
                "UPDATE machines SET power=?, power_ready_at=?"
                + (", failed=0" if force else "")
                + f" WHERE name=? AND deleting_at IS NULL{cond}",
                args,
            )
            row: sqlite3.Row | None = self._db.execute(
                "SELECT * FROM machines WHERE name=?", (name,)
            ).fetchone()
            return row


def _state(row: sqlite3.Row, now: float) -> MachineState:
    if row["deleting_at"] is not None:
        return "Deleting"
    if row["failed"]:
        return "Failed"
    if now < row["ready_at"]:
        return "Provisioning"
    if now < row["power_ready_at"]:
        return "Stopping" if row["power"] == "Stopped" else "Starting"
    return "Stopped" if row["power"] == "Stopped" else "Running"


def _machine(row: sqlite3.Row, now: float) -> Machine:
    return Machine(
        name=row["name"],
        provider_id=row["provider_id"],
        cluster=row["cluster"],
        state=_state(row, now),
        machine_type=row["machine_type"],
        zone=row["zone"],
        cores=row["cores"],
        created_at=datetime.fromtimestamp(row["created_at"], tz=UTC),
        addresses=(("InternalIP", row["address"]),),
        tags=json.loads(row["tags"]),
    )


class SimulatorDriver:
    """The `simulator` driver. Also implements PowerControl and Adoption."""

    def __init__(self, config: ProviderConfig) -> None:
        self.settings = SimulatorSettings.from_config(config)
        self._rng = random.Random(self.settings.seed)
        self._limits = (
            self.settings.capacity,
            _min(self.settings.max_nodes, config.max_nodes),
            _min(self.settings.max_cores, config.max_cores),
        )
        try:
            self.inventory = Inventory(self.settings.path, lambda: config.clock.now().timestamp())
        except (OSError, sqlite3.Error) as err:
            raise InvalidConfig(
                f"cannot open simulator inventory {self.settings.path}: {err}"
            ) from err

    def _latency(self, base: float) -> float:
        if base <= 0:
            return 0.0
        jitter = self.settings.latency_jitter
        return max(0.0, base * (1 + self._rng.uniform(-jitter, jitter)))

    async def _faults(self, op: str, name: str) -> bool:
        """Inject the configured faults.

        Returns True when the fault should strike after the effect took place.
        """
        s = self.settings
        if s.timeout_rate and self._rng.random() < s.timeout_rate:
            # Logged first: the operator's call deadline may abandon the call mid-sleep,
            # which is the point when timeoutSeconds exceeds the NodeProvider's
            # callTimeoutSeconds (a provider that hangs).
            await asyncio.to_thread(self.inventory.log, op, name, "timeout")
            await asyncio.sleep(s.timeout_seconds)
            raise Retryable(f"simulated timeout of {op} {name} after {s.timeout_seconds}s")
        if s.failure_rate and self._rng.random() < s.failure_rate:
            # Half the failures happen after the call took effect: the ambiguous kind
            # (the cloud did it, the answer was lost) that idempotency must survive.
            if self._rng.random() < 0.5:
                return True
            await asyncio.to_thread(self.inventory.log, op, name, "failed")
            raise Retryable(f"simulated failure of {op} {name}")
        return False

    async def create(self, spec: MachineSpec) -> Machine:
        """Create or return the machine named spec.name."""
        fail_after = await self._faults("create", spec.name)
        zone = spec.zone or self.settings.zones[_stable_index(spec.name, len(self.settings.zones))]
        if spec.zone is not None and spec.zone not in self.settings.zones:
            raise InvalidConfig(
                f"zone {spec.zone!r} does not exist at this provider "
                f"(zones: {list(self.settings.zones)})"
            )
        cores = self.settings.cores_by_type.get(spec.machine_type, DEFAULT_CORES)
        latency = self._latency(self.settings.create_latency)
        row, _ = await asyncio.to_thread(
            self.inventory.create,
            spec,
            cores,
            zone,
            latency,
            self._limits,
            self.settings.capacity_limits,
        )
        # The call log row is written in the machine's own transaction: a crash can
        # never leave a machine without its "created" record (the audits rely on it).
        if fail_after:
            raise Retryable(f"simulated failure of create {spec.name} (after it took effect)")
        # Like a cloud's create: accepted at once, Provisioning until the latency elapsed.
        return _machine(row, self.inventory.now())

    async def delete(self, name: str) -> None:
        """Delete; NotFound once gone."""
        fail_after = await self._faults("delete", name)
        row = await asyncio.to_thread(
            self.inventory.mark_deleting, name, self._latency(self.settings.delete_latency)
        )
        await asyncio.to_thread(
            self.inventory.log, "delete", name, "gone" if row is None else "deleting"
        )
        if fail_after:
            raise Retryable(f"simulated failure of delete {name} (after it took effect)")
        if row is None:
            raise NotFound(f"machine {name} does not exist")
        # Still Deleting: the caller asks again until NotFound.

    async def get(self, name: str) -> Machine:
        """Current state; NotFound when gone."""
        row = await asyncio.to_thread(self.inventory.get, name)
        if row is None:
            raise NotFound(f"machine {name} does not exist")
        return _machine(row, self.inventory.now())

    async def list(self, cluster: str | None = None) -> list[Machine]:
        """Every machine of a cluster, or all of them."""
        rows = await asyncio.to_thread(self.inventory.list, cluster)
        return [_machine(r, self.inventory.now()) for r in rows]

    async def discover(self, selection: MachineSelection) -> Machines:
        """Adoption: every live machine of the file the selection matches (by provider id,
        or by labels and tags together), whoever made it."""
        rows = await asyncio.to_thread(
            self.inventory.discover, tuple(selection.provider_ids), dict(selection.tags)
        )
        now = self.inventory.now()
        return [_machine(r, now) for r in rows if r["deleting_at"] is None]

    async def adopt(self, machine: Machine, spec: MachineSpec) -> Machine:
        """Adoption: rename the machine to `spec.name` and give it `spec`'s cluster and
        tags (the row is the machine: the provider id, address, type and zone stay)."""
        fail_after = await self._faults("adopt", spec.name)
        row = await asyncio.to_thread(self.inventory.adopt, machine.provider_id, spec)
        if row is None:
            raise NotFound(f"machine {machine.provider_id} does not exist")
        if fail_after:
            raise Retryable(f"simulated failure of adopt {spec.name} (after it took effect)")
        return _machine(row, self.inventory.now())

    async def _power(self, op: str, name: str, power: str, force: bool = False) -> Machine:
        fail_after = await self._faults(op, name)
        latency = self._latency(self.settings.power_latency)
        row = await asyncio.to_thread(self.inventory.set_power, name, power, latency, force)
        await asyncio.to_thread(
            self.inventory.log, op, name, "ok" if row is not None else "missing"
        )
        if row is None:
            raise NotFound(f"machine {name} does not exist")
        if fail_after:
            raise Retryable(f"simulated failure of {op} {name} (after it took effect)")
        return _machine(row, self.inventory.now())

    async def start(self, name: str) -> Machine:
        """Power on."""
        return await self._power("start", name, "Running")

    async def stop(self, name: str) -> Machine:
        """Power off."""
        return await self._power("stop", name, "Stopped")

    async def reboot(self, name: str) -> Machine:
        """Restart: running again after the power latency."""
        return await self._power("reboot", name, "Running", force=True)

    async def close(self) -> None:
        """Close the file."""
        await asyncio.to_thread(self.inventory.close)


def _min(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _stable_index(name: str, n: int) -> int:
    return sum(name.encode()) % n


def inventory_rows(path: Path, now: float | None = None) -> list[dict[str, Any]]:
    """The whole inventory as plain dicts (for audits and the CLI), as of `now` (seconds
    since the epoch on the operator's clock; default: the real time)."""
    at = time.time() if now is None else now
    inv = Inventory(path, now=lambda: at)
    try:
        now = at
        return [
            {
                "name": r["name"],
                "providerId": r["provider_id"],
                "cluster": r["cluster"],
                "state": _state(r, now),
                "zone": r["zone"],
                "machineType": r["machine_type"],
                "capacityType": r["capacity_type"],
                "cores": r["cores"],
                "createdAt": r["created_at"],
                "tags": json.loads(r["tags"]),
                # The ClusterNode it belongs to: its node tag, or (an earlier version's) its name.
                "node": json.loads(r["tags"]).get("nodecluster.io/node") or r["name"],
            }
            for r in inv.list()
        ]
    finally:
        inv.close()
