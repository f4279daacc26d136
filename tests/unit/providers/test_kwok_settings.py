"""The kwok driver's config and credentials: checked before any call, every problem named,
nothing of a Secret's content in any message."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from nodecluster.providers.base import InvalidConfig, PowerControl, ProviderConfig
from nodecluster.providers.kwok import KwokDriver
from nodecluster.providers.kwok.settings import KwokSettings, kubeconfig_from_secret
from nodecluster.providers.registry import discover

TOKEN = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXNlcnZpY2UtYWNjb3VudA.EXAMPLE"


def config(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "machineTypes": {"small": {"cores": 2, "memoryMib": 4096}},
        "zones": ["zone-a", "zone-b"],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def settings(**changes: Any) -> KwokSettings:
    return KwokSettings.from_config(ProviderConfig(name="kwok", config=config(**changes)))


def refusal(**changes: Any) -> str:
    with pytest.raises(InvalidConfig) as err:
        settings(**changes)
    assert not err.value.retryable
    return str(err.value)


def kubeconfig(**user: Any) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1:6443"}}],
            "users": [{"name": "u", "user": user or {"token": TOKEN}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )


def test_every_key_in_use() -> None:
    parsed = settings(
        machineTypes={
            "small": {"cores": 2, "memoryMib": 4096},
            "gpu.xl": {"cores": 64, "memoryMib": 524288, "pods": 250},
        },
        kubeconfig="/etc/kwok/kubeconfig",
        context="fleet",
        readyDelaySeconds=2.5,
        capacity=1000,
        quota={"maxNodes": 500, "maxCores": 4000},
    )

    assert parsed.machine_types["gpu.xl"].pods == 250
    assert parsed.machine_types["small"].pods == 110
    assert parsed.zones == ("zone-a", "zone-b")
    assert (parsed.kubeconfig, parsed.context) == ("/etc/kwok/kubeconfig", "fleet")
    assert parsed.ready_delay_seconds == 2.5
    assert (parsed.capacity, parsed.quota.max_nodes, parsed.quota.max_cores) == (1000, 500, 4000)
    assert parsed.limited
    assert not settings().limited
    assert settings().ready_delay_seconds == 0


def test_unknown_keys_are_named_with_the_known_ones() -> None:
    message = refusal(zone=["zone-a"], readyDelay=3)

    assert "config.zone: unknown key" in message
    assert "config.readyDelay: unknown key" in message
    assert "machineTypes" in message and "readyDelaySeconds" in message  # the known ones


def test_snake_case_and_nested_unknown_keys_are_refused() -> None:
    message = refusal(
        ready_delay_seconds=1,
        machineTypes={"small": {"cores": 2, "memory": "4Gi"}},
        quota={"maxnodes": 3},
    )

    assert "config.ready_delay_seconds: unknown key" in message
    assert "config.machineTypes.small.memory: unknown key (known: cores, memoryMib, pods)" in (
        message
    )
    assert "config.machineTypes.small.memoryMib: required" in message
    assert "config.quota.maxnodes: unknown key (known: maxCores, maxNodes)" in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"machineTypes": None}, "config.machineTypes: required"),
        ({"zones": None}, "config.zones: required"),
        ({"zones": []}, "config.zones"),
        ({"machineTypes": {}}, "config.machineTypes"),
        ({"zones": ["zone a"]}, "config.zones.0: not a label value"),
        ({"machineTypes": {"small/1": {"cores": 1, "memoryMib": 1}}}, "not a label value"),
        ({"machineTypes": {"small": {"cores": 0, "memoryMib": 1}}}, "machineTypes.small.cores"),
        ({"zones": ["zone-a", "zone-a"]}, "zones are listed twice: ['zone-a']"),
        ({"readyDelaySeconds": -1}, "config.readyDelaySeconds"),
        ({"capacity": -1}, "config.capacity"),
    ],
    ids=lambda v: None if isinstance(v, dict) else v,
)
def test_bad_values_are_named(changes: dict[str, Any], expected: str) -> None:
    assert expected in refusal(**changes)


def test_the_driver_is_installed_under_its_name_with_power_control() -> None:
    factory = discover()["kwok"]
    driver = factory(ProviderConfig(name="kwok", config=config()))

    assert isinstance(driver, KwokDriver)
    assert isinstance(driver, PowerControl)


def test_a_secrets_kubeconfig_is_read_from_its_one_key() -> None:
    parsed = kubeconfig_from_secret({"kubeconfig": kubeconfig()})

    assert parsed is not None
    assert parsed["users"][0]["user"]["token"] == TOKEN
    assert kubeconfig_from_secret({}) is None


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ({"token": TOKEN}, "keys the kwok driver does not read: ['token']"),
        ({"kubeconfig": TOKEN}, "is not a kubeconfig"),
        ({"kubeconfig": f"{TOKEN}: [unclosed"}, "is not a kubeconfig"),
        (
            {"kubeconfig": kubeconfig(exec={"command": "curl", "args": [TOKEN]})},
            "users[u].exec would run a plugin",
        ),
        (
            {"kubeconfig": kubeconfig(**{"auth-provider": {"name": "oidc"}})},
            "users[u].auth-provider would run a plugin",
        ),
        (
            {"kubeconfig": kubeconfig(tokenFile="/var/run/secrets/token")},
            "users[u].tokenFile names a file (use token)",
        ),
        (
            {"kubeconfig": kubeconfig(**{"client-key": "/etc/key.pem", "token": TOKEN})},
            "users[u].client-key names a file (use client-key-data)",
        ),
    ],
    ids=["unknown-key", "not-yaml-map", "broken-yaml", "exec", "auth-provider", "file", "key"],
)
def test_a_secrets_kubeconfig_that_cannot_stand_alone_is_refused_without_showing_it(
    secret: dict[str, str], expected: str
) -> None:
    with pytest.raises(InvalidConfig) as err:
        KwokDriver(ProviderConfig(name="kwok", config=config(), credentials=secret))

    assert expected in str(err.value)
    assert TOKEN not in str(err.value)


def test_a_kubeconfig_path_and_a_secret_together_are_refused() -> None:
    with pytest.raises(InvalidConfig, match="keep one"):
        KwokDriver(
            ProviderConfig(
                name="kwok",
                config=config(kubeconfig="/etc/kubeconfig"),
                credentials={"kubeconfig": kubeconfig()},
            )
        )


def test_no_credential_shows_in_the_drivers_repr() -> None:
    driver = KwokDriver(
        ProviderConfig(name="kwok", config=config(), credentials={"kubeconfig": kubeconfig()})
    )

    shown = f"{driver!r} {driver.settings!r}"
    assert "Secret" in shown  # it says where the kubeconfig came from
    assert TOKEN not in shown
