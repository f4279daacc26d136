"""The kwok driver's behaviours the real API server and kwok do not show on demand, on the
Nodes API stand-in (nodecluster.testing.nodesapi) over HTTP: Nodes made by others, writes
racing other writers, every kind of refusal, paging, limits, where the kubeconfig comes
from. The provider contract on the real ones is tests/e2e/test_kwok_contract.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodecluster.providers.base import (
    CapacityExceeded,
    InvalidConfig,
    MachineSpec,
    NotFound,
    ProviderConfig,
    ProviderError,
    QuotaExceeded,
    Retryable,
    Unauthorized,
)
from nodecluster.providers.kwok import KwokDriver
from nodecluster.providers.kwok import nodes as kn
from nodecluster.providers.kwok.client import PAGE_SIZE
from nodecluster.testing.contract import machine_spec
from nodecluster.testing.nodesapi import NodesApi

MakeKwok = Callable[..., KwokDriver]


def config(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "machineTypes": {"small": {"cores": 2, "memoryMib": 4096}},
        "zones": ["zone-a", "zone-b"],
    }
    base.update(changes)
    return base


@pytest.fixture
async def make(nodes_api: NodesApi) -> AsyncIterator[MakeKwok]:
    built: list[KwokDriver] = []

    def build(name: str = "kwok", **changes: Any) -> KwokDriver:
        secret = {"kubeconfig": yaml.safe_dump(nodes_api.kubeconfig())}
        built.append(
            KwokDriver(ProviderConfig(name=name, config=config(**changes), credentials=secret))
        )
        return built[-1]

    yield build
    for driver in built:
        await driver.close()


async def test_create_posts_the_node_and_never_the_user_data(
    make: MakeKwok, nodes_api: NodesApi
) -> None:
    driver = make(readyDelaySeconds=0.25)
    spec = MachineSpec(
        name="web-1",
        cluster="team-a/web",
        machine_type="small",
        zone="zone-b",
        image="ubuntu-24.04",
        user_data="#cloud-config\nsecret: s3cr3t",
        tags={"nodecluster.io/node": "web-1"},
    )

    machine = await driver.create(spec)
    node = nodes_api.nodes["web-1"]

    assert (machine.name, machine.state, machine.zone) == ("web-1", "Provisioning", "zone-b")
    assert node["metadata"]["annotations"][kn.READY_DELAY] == "250ms"
    assert node["metadata"]["annotations"][kn.IMAGE] == "ubuntu-24.04"
    assert node["metadata"]["labels"][kn.PROVIDER] == "kwok"
    assert "s3cr3t" not in json.dumps(node)


async def test_a_node_of_that_name_made_by_someone_else_is_never_taken(
    make: MakeKwok, nodes_api: NodesApi
) -> None:
    await make(name="other").create(machine_spec("web-1"))
    before = json.dumps(nodes_api.nodes["web-1"], sort_keys=True)
    driver = make()

    with pytest.raises(ProviderError, match="was not made by NodeProvider 'kwok'") as err:
        await driver.create(machine_spec("web-1"))
    with pytest.raises(NotFound):
        await driver.get("web-1")
    with pytest.raises(NotFound):
        await driver.delete("web-1")
    with pytest.raises(NotFound):
        await driver.stop("web-1")

    assert not err.value.retryable
    assert await driver.list() == []
    assert json.dumps(nodes_api.nodes["web-1"], sort_keys=True) == before


async def test_list_checks_the_exact_annotations_behind_a_shortened_label(
    make: MakeKwok, nodes_api: NodesApi
) -> None:
    long = "p" * 70
    driver = make(name=long)
    await driver.create(machine_spec("web-1"))
    # A Node whose labels match (as a hash collision would) but whose annotation does not.
    impostor = json.loads(json.dumps(nodes_api.nodes["web-1"]))
    impostor["metadata"]["name"] = "web-2"
    impostor["metadata"]["annotations"][kn.PROVIDER] = long + "-other"
    nodes_api.nodes["web-2"] = impostor

    assert nodes_api.nodes["web-1"]["metadata"]["labels"][kn.PROVIDER] != long
    assert [m.name for m in await driver.list()] == ["web-1"]
    assert [m.name for m in await driver.list("team-a/web")] == ["web-1"]


async def test_stop_and_start_keep_the_taints_of_others_and_start_boots_afresh(
    make: MakeKwok, nodes_api: NodesApi
) -> None:
    driver = make()
    await driver.create(machine_spec("web-1"))
    nodes_api.boot("web-1")
    theirs = {"key": "example.com/dedicated", "value": "gpu", "effect": "NoSchedule"}
    nodes_api.nodes["web-1"]["spec"]["taints"] = [theirs]
    first_boot = nodes_api.nodes["web-1"]["metadata"]["annotations"][kn.BOOT_ID]

    stopping = await driver.stop("web-1")
    stopped = nodes_api.nodes["web-1"]
    assert stopping.state == "Stopping"  # kwok has not turned it NotReady yet
    assert stopped["metadata"]["annotations"][kn.POWER] == "Off"
    assert stopped["spec"]["taints"] == [theirs, kn.stopped_taint()]

    nodes_api.boot("web-1", "False", kn.STOPPED_REASON)
    starting = await driver.start("web-1")
    started = nodes_api.nodes["web-1"]
    assert starting.state == "Starting"
    assert started["metadata"]["annotations"][kn.POWER] == "On"
    assert started["metadata"]["annotations"][kn.BOOT_ID] != first_boot
    assert started["spec"]["taints"] == [theirs]
    assert not started["spec"].get("unschedulable")  # never cordoned: that is a person's


async def test_power_calls_are_idempotent_and_write_nothing_when_already_so(
    make: MakeKwok, nodes_api: NodesApi
) -> None:
    driver = make()
    await driver.create(machine_spec("web-1"))
    nodes_api.boot("web-1")

    await driver.start("web-1")
    await driver.stop("web-1")
    await driver.stop("web-1")

    patches = [path for method, path in nodes_api.requests if method == "PATCH"]
    assert patches == ["/api/v1/nodes/web-1"]


async def test_reboot_asks_for_a_new_boot_and_starts_a_stopped_machine(
    make: MakeKwok, nodes_api: NodesApi
) -> None:
    driver = make()
    await driver.create(machine_spec("web-1"))
    nodes_api.boot("web-1")
    boot = nodes_api.nodes["web-1"]["metadata"]["annotations"][kn.BOOT_ID]

    rebooting = await driver.reboot("web-1")
    assert rebooting.state == "Rebooting"
    assert nodes_api.nodes["web-1"]["metadata"]["annotations"][kn.BOOT_ID] != boot

    await driver.stop("web-1")
    nodes_api.boot("web-1", "False", kn.STOPPED_REASON)
    assert (await driver.reboot("web-1")).state == "Starting"
    assert nodes_api.nodes["web-1"]["metadata"]["annotations"][kn.POWER] == "On"


async def test_a_power_change_that_meets_a_changed_node_reads_it_again(
    make: MakeKwok, nodes_api: NodesApi
) -> None:
    driver = make()
    await driver.create(machine_spec("web-1"))
    nodes_api.answers = [("PATCH", 409)]

    assert (await driver.stop("web-1")).state in ("Stopping", "Stopped")
    assert [m for m, _ in nodes_api.requests].count("PATCH") == 2

    nodes_api.answers = [("PATCH", 409)] * 3
    with pytest.raises(Retryable, match="kept changing"):
        await driver.start("web-1")


async def test_delete_until_not_found_and_a_node_held_by_a_finalizer_is_deleting(
    make: MakeKwok, nodes_api: NodesApi
) -> None:
    driver = make()
    await driver.create(machine_spec("web-1"))
    await driver.create(machine_spec("web-2"))
    nodes_api.nodes["web-2"]["metadata"]["deletionTimestamp"] = "2026-12-02T10:00:00Z"

    await driver.delete("web-1")
    with pytest.raises(NotFound):
        await driver.delete("web-1")
    await driver.delete("web-2")  # held: nothing to do but wait

    assert (await driver.get("web-2")).state == "Deleting"
    assert [p for m, p in nodes_api.requests if m == "DELETE"] == ["/api/v1/nodes/web-1"]


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, Unauthorized), (403, InvalidConfig), (429, Retryable), (503, Retryable)],
)
async def test_refusals_over_http(
    make: MakeKwok, nodes_api: NodesApi, status: int, kind: type[ProviderError]
) -> None:
    driver = make()
    nodes_api.answers = [("*", status)]

    with pytest.raises(kind) as err:
        await driver.create(machine_spec("web-1"))
    assert f"create Node web-1: {status}" in str(err.value)


async def test_a_token_the_server_refuses_is_unauthorized(
    make: MakeKwok, nodes_api: NodesApi
) -> None:
    driver = make()
    nodes_api.token = "rotated"

    with pytest.raises(Unauthorized):
        await driver.list()


async def test_an_api_server_that_does_not_answer_is_retryable(nodes_api: NodesApi) -> None:
    kubeconfig = nodes_api.kubeconfig()
    kubeconfig["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:9"  # discard: closed
    driver = KwokDriver(
        ProviderConfig(
            name="kwok", config=config(), credentials={"kubeconfig": yaml.safe_dump(kubeconfig)}
        )
    )
    try:
        with pytest.raises(Retryable, match="the API server did not answer"):
            await driver.get("web-1")
    finally:
        await driver.close()


async def test_list_reads_every_page(make: MakeKwok, nodes_api: NodesApi) -> None:
    driver = make()
    template = await driver.create(machine_spec("web-0"))
    node = nodes_api.nodes[template.name]
    for i in range(1, PAGE_SIZE * 2 + 1):
        copy = json.loads(json.dumps(node))
        copy["metadata"]["name"] = f"web-{i}"
        nodes_api.nodes[f"web-{i}"] = copy
    nodes_api.requests.clear()

    listed = await driver.list()

    assert len(listed) == PAGE_SIZE * 2 + 1
    assert len(nodes_api.requests) == 3


async def test_capacity_and_quotas_count_this_providers_live_nodes(make: MakeKwok) -> None:
    full = make(capacity=2)
    await full.create(machine_spec("web-1"))
    await full.create(machine_spec("web-2"))
    await make(name="other").create(machine_spec("db-1", cluster="team-b/db"))  # not counted

    with pytest.raises(CapacityExceeded, match="2 of 2 Nodes"):
        await full.create(machine_spec("web-3"))
    assert (await full.create(machine_spec("web-2"))).name == "web-2"  # an existing one answers

    limited = make(quota={"maxCores": 5})
    with pytest.raises(QuotaExceeded, match="4 of 5 cores in use, 2 more"):
        await limited.create(machine_spec("web-3"))


async def test_a_node_being_deleted_leaves_room(make: MakeKwok, nodes_api: NodesApi) -> None:
    driver = make(quota={"maxNodes": 1})
    await driver.create(machine_spec("web-1"))
    nodes_api.nodes["web-1"]["metadata"]["deletionTimestamp"] = "2026-12-02T10:00:00Z"

    assert (await driver.create(machine_spec("web-2"))).name == "web-2"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (MachineSpec(name="w", cluster="a/b", machine_type="huge"), "machine type 'huge'"),
        (MachineSpec(name="w", cluster="a/b", machine_type="small", zone="z"), "zone 'z'"),
        (
            MachineSpec(name="w", cluster="a/b", machine_type="small", properties={"x": "1"}),
            "profile.properties ['x']",
        ),
    ],
    ids=["machine-type", "zone", "properties"],
)
async def test_what_the_provider_does_not_offer_is_refused_before_any_call(
    make: MakeKwok, nodes_api: NodesApi, spec: MachineSpec, expected: str
) -> None:
    with pytest.raises(InvalidConfig, match=expected.replace("[", r"\[").replace("]", r"\]")):
        await make().create(spec)
    assert nodes_api.requests == []


async def test_a_zone_is_chosen_for_a_node_placed_nowhere_the_same_every_time(
    make: MakeKwok,
) -> None:
    driver = make(zones=["zone-a", "zone-b", "zone-c"])
    zones = [(await driver.create(machine_spec(f"web-{i}", zone=None))).zone for i in range(12)]

    assert set(zones) <= {"zone-a", "zone-b", "zone-c"}
    assert len(set(zones)) > 1
    assert (await driver.get("web-0")).zone == zones[0]


async def test_the_kubeconfig_comes_from_the_config_path_or_the_operators_own(
    nodes_api: NodesApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(nodes_api.kubeconfig()))
    monkeypatch.setenv("KUBECONFIG", str(path))
    named = KwokDriver(ProviderConfig(name="kwok", config=config(kubeconfig=str(path))))
    default = KwokDriver(ProviderConfig(name="kwok", config=config()))
    try:
        await named.create(machine_spec("web-1"))
        assert [m.name for m in await default.list()] == ["web-1"]
    finally:
        await named.close()
        await default.close()


async def test_a_closed_driver_refuses_calls(make: MakeKwok) -> None:
    driver = make()
    await driver.list()
    await driver.close()

    with pytest.raises(ProviderError, match="closed"):
        await driver.list()
