"""What the simulator driver does beyond the shared contract: its config, its seeded
faults, its audit trail and its failure switch."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from nodecluster.providers.base import (
    CapacityExceeded,
    InvalidConfig,
    MachineSpec,
    NotFound,
    ProviderConfig,
    QuotaExceeded,
    Retryable,
)
from nodecluster.providers.simulator import (
    DEFAULT_ZONES,
    Inventory,
    SimulatorDriver,
    SimulatorSettings,
    default_path,
    inventory_rows,
)

Make = Callable[..., SimulatorDriver]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    """Drivers on tmp_path/<db>; all closed at the end."""
    built: list[SimulatorDriver] = []

    def build(
        db: str = "sim.db", provider: ProviderConfig | None = None, **config: Any
    ) -> SimulatorDriver:
        base = provider or ProviderConfig(name="sim", config={})
        driver = SimulatorDriver(
            ProviderConfig(
                name=base.name,
                config={"path": str(tmp_path / db), **config},
                max_nodes=base.max_nodes,
                max_cores=base.max_cores,
                cores_by_type=base.cores_by_type,
            )
        )
        built.append(driver)
        return driver

    yield build
    for driver in built:
        await driver.close()


def machine(name: str, zone: str | None = None, machine_type: str = "small") -> MachineSpec:
    return MachineSpec(name=name, cluster="ns/web", machine_type=machine_type, zone=zone)


def test_defaults(tmp_path: Path) -> None:
    s = SimulatorSettings.from_config(
        ProviderConfig(name="sim", config={"path": str(tmp_path / "x.db")})
    )
    assert s.path == tmp_path / "x.db"
    assert s.zones == DEFAULT_ZONES
    assert (s.create_latency, s.failure_rate, s.timeout_rate) == (0.0, 0.0, 0.0)
    assert (s.capacity, s.max_nodes, s.max_cores, s.seed) == (None, None, None, None)


@pytest.mark.parametrize(
    ("config", "mentions"),
    [
        ({"bogus": 1}, "bogus"),
        ({"createLatency": 1}, "createLatency"),
        ({"failureRate": 1.5}, "failureRate"),
        ({"failureRate": -0.1}, "failureRate"),
        ({"createLatencySeconds": "fast"}, "createLatencySeconds"),
        ({"createLatencySeconds": True}, "createLatencySeconds"),
        ({"latencyJitter": 2}, "latencyJitter"),
        ({"timeoutSeconds": 601}, "timeoutSeconds"),
        ({"capacity": -1}, "capacity"),
        ({"capacity": 1.5}, "capacity"),
        ({"capacity": True}, "capacity"),
        ({"quota": "lots"}, "quota"),
        ({"quota": {"maxNodes": -1}}, "maxNodes"),
        ({"quota": {"maxCores": "8"}}, "maxCores"),
        ({"quota": {"maxNode": 3}}, "maxNode"),
        ({"zones": []}, "zones"),
        ({"zones": "zone-a"}, "zones"),
        ({"zones": [1]}, "zones"),
        ({"seed": "x"}, "seed"),
        ({"seed": True}, "seed"),
        ({"path": 5}, "path"),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else None,
)
def test_bad_config_is_invalid_config_naming_the_key(
    tmp_path: Path, config: dict[str, Any], mentions: str
) -> None:
    full = {"path": str(tmp_path / "sim.db"), **config}
    with pytest.raises(InvalidConfig, match=mentions) as err:
        SimulatorDriver(ProviderConfig(name="sim", config=full))
    assert not err.value.retryable
    assert not (tmp_path / "sim.db").exists()


def test_an_inventory_that_cannot_be_opened_is_invalid_config(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    bad = {"path": str(tmp_path / "a-file" / "sim.db")}
    with pytest.raises(InvalidConfig, match="cannot open simulator inventory"):
        SimulatorDriver(ProviderConfig(name="sim", config=bad))


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"NODECLUSTER_SIMULATOR_DIR": "/sims"}, "/sims/p.db"),
        ({"XDG_STATE_HOME": "/state"}, "/state/nodecluster-operator/simulator/p.db"),
    ],
    ids=["own-dir", "xdg"],
)
def test_default_path(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str) -> None:
    for key in ("NODECLUSTER_SIMULATOR_DIR", "XDG_STATE_HOME"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert default_path("p") == Path(expected)


@pytest.mark.parametrize(
    ("provider_max", "config_max"),
    [(1, None), (None, 1), (1, 5), (5, 1)],
    ids=["provider-only", "config-only", "provider-stricter", "config-stricter"],
)
async def test_the_stricter_of_provider_and_config_quota_wins(
    make: Make, provider_max: int | None, config_max: int | None
) -> None:
    quota = {"quota": {"maxNodes": config_max}} if config_max is not None else {}
    driver = make(provider=ProviderConfig(name="sim", config={}, max_nodes=provider_max), **quota)
    await driver.create(machine("web-1"))
    with pytest.raises(QuotaExceeded):
        await driver.create(machine("web-2"))


async def test_cores_come_from_the_machine_type(make: Make) -> None:
    driver = make(provider=ProviderConfig(name="sim", config={}, cores_by_type={"large": 16}))
    assert (await driver.create(machine("web-1", machine_type="large"))).cores == 16
    assert (await driver.create(machine("web-2", machine_type="other"))).cores == 2


async def test_default_zone_is_stable_per_name(make: Make) -> None:
    one, two = make("one.db"), make("two.db")
    zones = [(await d.create(machine(f"web-{i}"))).zone for d in (one, two) for i in range(5)]
    assert zones[:5] == zones[5:]
    assert set(zones) <= set(DEFAULT_ZONES)


async def test_addresses_are_unique(make: Make) -> None:
    driver = make()
    machines = [await driver.create(machine(f"web-{i}")) for i in range(20)]
    addresses = [m.addresses for m in machines]
    assert all(a[0][0] == "InternalIP" for a in addresses)
    assert len(set(addresses)) == 20


async def outcomes(driver: SimulatorDriver, names: list[str]) -> list[str]:
    result = []
    for name in names:
        try:
            await driver.create(machine(name))
            result.append("ok")
        except Retryable:
            result.append("retry")
    return result


async def test_faults_repeat_for_a_seed(make: Make) -> None:
    names = [f"web-{i}" for i in range(30)]
    a = await outcomes(make("a.db", failureRate=0.5, seed=5), names)
    b = await outcomes(make("b.db", failureRate=0.5, seed=5), names)
    c = await outcomes(make("c.db", failureRate=0.5, seed=6), names)

    assert a == b
    assert a != c
    assert {"ok", "retry"} == set(a)


async def test_some_failures_happen_after_the_machine_was_made(make: Make) -> None:
    driver = make(failureRate=1.0, seed=5)
    names = [f"web-{i}" for i in range(12)]
    assert set(await outcomes(driver, names)) == {"retry"}

    exist = {m.name for m in await driver.list("ns/web")}
    assert exist, "no failure took effect before being reported"
    assert exist != set(names), "every failure took effect"


async def test_timeouts_are_retryable(make: Make) -> None:
    driver = make(timeoutRate=1.0, timeoutSeconds=0, seed=1)
    with pytest.raises(Retryable, match="timeout"):
        await driver.create(machine("web-1"))


async def test_calls_are_logged_for_audit(make: Make, tmp_path: Path) -> None:
    driver = make()
    await driver.create(machine("web-1"))
    await driver.create(machine("web-1"))
    for _ in range(2):
        with pytest.raises(Exception, match="web-1"):
            await driver.delete("web-1")

    db = sqlite3.connect(tmp_path / "sim.db")
    try:
        calls = db.execute("SELECT op, name, outcome FROM calls ORDER BY id").fetchall()
    finally:
        db.close()
    assert calls == [
        ("create", "web-1", "created"),
        ("create", "web-1", "exists"),
        ("delete", "web-1", "gone"),
        ("delete", "web-1", "gone"),
    ]


async def test_inventory_rows_show_every_machine(make: Make, tmp_path: Path) -> None:
    driver = make()
    await driver.create(machine("web-1", zone="zone-b"))
    await driver.stop("web-1")

    rows = inventory_rows(tmp_path / "sim.db")

    assert len(rows) == 1
    assert rows[0]["name"] == "web-1"
    assert rows[0]["state"] == "Stopped"
    assert rows[0]["zone"] == "zone-b"
    assert rows[0]["cluster"] == "ns/web"
    assert rows[0]["providerId"].startswith("sim://zone-b/")


async def test_a_failed_machine_reports_failed_until_rebooted(make: Make, tmp_path: Path) -> None:
    driver = make()
    await driver.create(machine("web-1"))

    inventory = Inventory(tmp_path / "sim.db")
    try:
        assert inventory.set_failed("web-1")
        assert not inventory.set_failed("web-never")
    finally:
        inventory.close()

    assert (await driver.get("web-1")).state == "Failed"
    assert (await driver.reboot("web-1")).state == "Running"


# The machines table as the first release wrote it (before `failed` existed).
FIRST_RELEASE_SCHEMA = """
CREATE TABLE machines (
    name TEXT PRIMARY KEY, provider_id TEXT NOT NULL, cluster TEXT NOT NULL,
    machine_type TEXT NOT NULL, zone TEXT, image TEXT, cores INTEGER NOT NULL,
    labels TEXT NOT NULL, address TEXT NOT NULL, power TEXT NOT NULL,
    created_at REAL NOT NULL, ready_at REAL NOT NULL, power_ready_at REAL NOT NULL,
    deleting_at REAL, gone_at REAL
);
INSERT INTO machines VALUES ('web-1', 'sim://zone-a/i-00000001', 'ns/web', 'small',
    'zone-a', NULL, 2, '{}', '10.0.0.1', 'Running', 0, 0, 0, NULL, NULL);
"""


async def test_an_inventory_from_an_older_release_still_opens(make: Make, tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "sim.db")
    try:
        db.executescript(FIRST_RELEASE_SCHEMA)
    finally:
        db.close()

    driver = make()

    assert (await driver.get("web-1")).state == "Running"
    assert [m.provider_id for m in await driver.list("ns/web")] == ["sim://zone-a/i-00000001"]
    assert driver.inventory.set_failed("web-1")
    assert (await driver.get("web-1")).state == "Failed"


async def test_capacity_limits_refuse_one_choice_and_take_the_next(make: Make) -> None:
    # What the capacity fallback is tested against: Spot `small` in zone-a is full, while
    # OnDemand `small` there, and Spot elsewhere, still have room.
    driver = make(
        capacityLimits=[
            {"machineType": "small", "zone": "zone-a", "capacityType": "Spot", "max": 1}
        ]
    )
    spot = MachineSpec(
        name="m1", cluster="ns/web", machine_type="small", zone="zone-a", capacity_type="Spot"
    )
    await driver.create(spot)
    await driver.create(spot)  # idempotent: the same machine, not a second one

    with pytest.raises(CapacityExceeded, match="small Spot in zone-a: 1 of 1"):
        await driver.create(replace(spot, name="m2"))
    await driver.create(replace(spot, name="m3", capacity_type="OnDemand"))
    await driver.create(replace(spot, name="m4", capacity_type=None))  # OnDemand by default
    await driver.create(replace(spot, name="m5", zone="zone-b"))

    kinds = {m["name"]: m["capacityType"] for m in inventory_rows(driver.settings.path)}
    assert kinds == {"m1": "Spot", "m3": "OnDemand", "m4": "OnDemand", "m5": "Spot"}
    # A machine being deleted no longer holds its place (gone at once: no latency).
    with pytest.raises(NotFound):
        await driver.delete("m1")
    await driver.create(replace(spot, name="m2"))


@pytest.mark.parametrize(
    ("limits", "key"),
    [
        ({"max": 1}, "capacityLimits must be a list"),
        ([{"machineType": "small"}], "capacityLimits[0].max is required"),
        ([{"max": -1}], "config.max must be a non-negative integer"),
        ([{"max": 1, "capacityType": "spot"}], "capacityLimits[0].capacityType"),
        ([{"max": 1, "type": "small"}], "capacityLimits[0] keys ['type']"),
    ],
)
def test_bad_capacity_limits_are_invalid_config(tmp_path: Path, limits: Any, key: str) -> None:
    config = ProviderConfig(
        name="sim", config={"path": str(tmp_path / "x.db"), "capacityLimits": limits}
    )
    with pytest.raises(InvalidConfig) as err:
        SimulatorSettings.from_config(config)
    assert key in str(err.value)
