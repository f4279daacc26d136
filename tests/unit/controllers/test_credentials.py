"""A NodeProvider's credentials follow its Secret: rotated, refused, created late.

The operator may only `get` Secrets (no watch), so it reads a provider's Secret again when
the credentials it holds are older than `credentials_refresh_seconds`, at once after the
provider refuses them (`Unauthorized`), and each time it looks again at a provider that is
not Ready. Credentials are part of the driver's fingerprint: new ones build a new driver and
close the old. Through all of it, a Secret's values show nowhere: not in a log record, an
Event, a status or a repr.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from clusters import NS, cluster_body, live_nodes, state
from clusters import condition as cluster_condition
from conftest import provider_body

from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import NODECLUSTERS, NODEPROVIDERS
from nodecluster.controllers.world import CREDENTIALS_REREAD_FLOOR_SECONDS, Settings
from nodecluster.providers.base import ProviderConfig, ProviderDriver, Retryable
from nodecluster.providers.registry import ProviderRegistry
from nodecluster.testing import FakeKube, Harness
from nodecluster.testing.drivers import DriverFaults, FaultyPowerDriver, faulty_simulator

SECRET_NS = "nodecluster-system"
SECRET = "sim-creds"
OLD = "old-token-5c1f9e27a0"
NEW = "new-token-b83d44e61f"
"""Secret values, unique enough to be looked for in everything the operator wrote."""


class RecordedDriver(FaultyPowerDriver):
    """The faulty simulator, remembering what it was built from and whether it was closed."""

    def __init__(self, wrapped: FaultyPowerDriver, config: ProviderConfig) -> None:
        super().__init__(wrapped.inner, wrapped.faults, config.credentials)
        self.config = config
        self.closed = False

    async def close(self) -> None:
        self.closed = True
        await super().close()


@pytest.fixture
def built() -> list[RecordedDriver]:
    """Every driver built, in order."""
    return []


@pytest.fixture
def registry(faults: DriverFaults, built: list[RecordedDriver]) -> ProviderRegistry:
    """`faulty` as in conftest, recording each driver it builds."""
    simulator = faulty_simulator(faults)

    def build(config: ProviderConfig) -> ProviderDriver:
        wrapped = simulator(config)
        assert isinstance(wrapped, FaultyPowerDriver)
        driver = RecordedDriver(wrapped, config)
        built.append(driver)
        return driver

    registry = ProviderRegistry()
    registry.register("faulty", build)
    return registry


@pytest.fixture(autouse=True)
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record of the test, down to DEBUG, to look for secret values in."""
    caplog.set_level(logging.DEBUG)
    return caplog


def provider_with_credentials(inventory: Path) -> dict[str, Any]:
    """A NodeProvider whose driver insists on the Secret's `token` key."""
    return provider_body(
        inventory,
        credentialsSecretRef={"name": SECRET, "namespace": SECRET_NS},
        config={"requireCredentials": ["token"]},
    )


def provider(fake: FakeKube) -> dict[str, Any]:
    return fake.stored(NODEPROVIDERS, None, "sim") or {}


def provider_condition(fake: FakeKube, ctype: str) -> dict[str, Any]:
    conditions = provider(fake).get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == ctype), {})


def phase(fake: FakeKube) -> str | None:
    return provider(fake).get("status", {}).get("phase")


def tokens(built: list[RecordedDriver]) -> list[str | None]:
    """The token each driver was built with, in order."""
    return [d.config.credentials.get("token") for d in built]


def assert_never_shown(
    fake: FakeKube, caplog: pytest.LogCaptureFixture, harness: Harness | None, *values: str
) -> None:
    """No Secret value in a log record, an Event, any body ever stored, or a repr."""
    logged = [caplog.text]
    for record in caplog.records:
        logged += [record.getMessage(), repr(record.args), record.exc_text or ""]
    written = [json.dumps(e) for e in fake.events] + [json.dumps(c.body) for c in fake.history]
    shown = [repr(harness.world), repr(harness.world.providers)] if harness else []
    for value in values:
        assert not [text for text in logged if value in text], "a log record shows a secret"
        assert not [text for text in written if value in text], "an object shows a secret"
        assert not [text for text in shown if value in text], "a repr shows a secret"


async def test_a_rotated_secret_reaches_the_driver_within_the_refresh_interval(
    fake: FakeKube,
    harness: Harness,
    inventory: Path,
    settings: Settings,
    built: list[RecordedDriver],
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    fake.put_secret(SECRET_NS, SECRET, {"token": OLD})
    fake.add(NODEPROVIDERS, provider_with_credentials(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=2))
    await harness.wait_for(lambda: state(fake) == "Deployed")
    await asyncio.sleep(120)  # the provider's status (its node count) is written and settles
    assert tokens(built) == [OLD]
    version = provider(fake)["metadata"]["resourceVersion"]

    fake.put_secret(SECRET_NS, SECRET, {"token": NEW})  # no event: Secrets are not watched

    await harness.wait_for(
        lambda: tokens(built)[-1] == NEW, within=settings.credentials_refresh_seconds
    )
    assert tokens(built) == [OLD, NEW]
    assert built[0].closed  # the old driver's connections are let go
    cached = harness.registry.cached("sim")
    assert cached is not None and getattr(cached, "inner", None) is built[-1]
    # Nothing wrote to the NodeProvider (not even its status), and the new driver serves.
    assert provider(fake)["metadata"]["resourceVersion"] == version
    assert phase(fake) == "Ready"
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 3}})
    await harness.wait_for(lambda: state(fake) == "Deployed" and len(live_nodes(fake)) == 3)
    assert tokens(built) == [OLD, NEW]
    assert_never_shown(fake, debug_logs, harness, OLD, NEW)


async def test_a_node_call_refused_for_its_credentials_makes_the_next_call_read_them_again(
    fake: FakeKube,
    harness: Harness,
    inventory: Path,
    faults: DriverFaults,
    built: list[RecordedDriver],
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    fake.put_secret(SECRET_NS, SECRET, {"token": OLD})
    fake.add(NODEPROVIDERS, provider_with_credentials(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=1))
    await harness.wait_for(lambda: state(fake) == "Deployed")
    await asyncio.sleep(120)  # the provider's status settles; its credentials were read

    # The key is rotated: the provider takes only the new one, the Secret holds it.
    faults.accepted_credentials = {"token": NEW}
    fake.put_secret(SECRET_NS, SECRET, {"token": NEW})
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 2}})

    # Long before the next health poll (60 s) or the credentials' expiry (300 s).
    await harness.wait_for(lambda: state(fake) == "Deployed" and len(live_nodes(fake)) == 2, 10)
    [(call, _)] = faults.refused  # one refusal; the next call used the Secret read again
    assert call == "create"
    assert tokens(built) == [OLD, NEW]
    assert built[0].closed
    assert_never_shown(fake, debug_logs, harness, OLD, NEW)


async def test_a_health_poll_refused_for_its_credentials_makes_the_next_poll_read_them_again(
    fake: FakeKube,
    harness: Harness,
    inventory: Path,
    faults: DriverFaults,
    built: list[RecordedDriver],
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    fake.put_secret(SECRET_NS, SECRET, {"token": OLD})
    fake.add(NODEPROVIDERS, provider_with_credentials(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=1))
    await harness.wait_for(lambda: state(fake) == "Deployed")
    await harness.idle()

    faults.accepted_credentials = {"token": NEW}
    fake.put_secret(SECRET_NS, SECRET, {"token": NEW})
    await harness.wait_for(lambda: len(faults.refused) == 1, within=60)  # the next poll
    assert faults.refused == [("list", None)]
    lists = faults.count("list")

    # The provider is looked at again soon (not at its next poll, 60 s on) with the
    # credentials read again, and its poll is answered.
    await harness.wait_for(lambda: faults.count("list") > lists, within=15)
    assert faults.refused == [("list", None)]
    assert tokens(built) == [OLD, NEW]
    assert phase(fake) == "Ready"
    assert_never_shown(fake, debug_logs, harness, OLD, NEW)


async def test_a_secret_created_after_its_provider_makes_it_ready_and_its_cluster_deploy(
    fake: FakeKube,
    harness: Harness,
    inventory: Path,
    settings: Settings,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    fake.add(NODEPROVIDERS, provider_with_credentials(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=2))
    await harness.wait_for(lambda: phase(fake) == "NotReady")
    stalled = provider_condition(fake, "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidProviderConfig")
    assert stalled["message"] == (
        f"NodeProvider 'sim': credentials Secret {SECRET_NS}/{SECRET} does not exist"
    )
    await harness.wait_for(
        lambda: cluster_condition(fake, "Stalled").get("reason") == "InvalidProviderConfig"
    )
    await asyncio.sleep(3600)  # nobody creates the Secret for an hour
    # Looked at again 30 s on, then about as long again as it has been waiting, at most
    # every 5 minutes (the refresh interval): 16 reads in the hour, not one per retry.
    assert len(fake.calls_of("read_secret")) <= 20

    fake.put_secret(SECRET_NS, SECRET, {"token": NEW})  # no event: Secrets are not watched

    await harness.wait_for(
        lambda: phase(fake) == "Ready", within=settings.credentials_refresh_seconds
    )
    await harness.wait_for(lambda: state(fake) == "Deployed", within=120)
    assert cluster_condition(fake, "Stalled")["status"] == "False"
    events = fake.events_about("sim")
    assert [(e["type"], e["reason"]) for e in events] == [
        ("Warning", "InvalidProviderConfig"),
        ("Normal", "DriverReady"),
    ]
    assert_never_shown(fake, debug_logs, harness, NEW)


async def test_a_passing_driver_build_failure_is_not_stalled_and_clears_by_itself(
    fake: FakeKube,
    faults: DriverFaults,
    clock: LoopClock,
    inventory: Path,
    settings: Settings,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    simulator = faulty_simulator(faults)
    outage_ends = 240.0  # the token endpoint times out for the first 4 minutes

    def build(config: ProviderConfig) -> ProviderDriver:
        if clock.monotonic() < outage_ends:
            raise Retryable("token endpoint timed out")
        return simulator(config)

    registry = ProviderRegistry()
    registry.register("faulty", build)
    fake.put_secret(SECRET_NS, SECRET, {"token": OLD})
    fake.add(NODEPROVIDERS, provider_with_credentials(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=2))

    async with Harness(fake, registry=registry, clock=clock, settings=settings) as harness:
        await harness.wait_for(lambda: phase(fake) == "NotReady")
        ready = provider_condition(fake, "Ready")
        stalled = provider_condition(fake, "Stalled")
        assert (ready["status"], ready["reason"]) == ("False", "ProviderUnavailable")
        assert ready["message"] == "NodeProvider 'sim': token endpoint timed out"
        assert (stalled["status"], stalled["message"]) == ("False", "")

        # Nothing is touched: it is looked at again, and clears when the fault passes.
        await harness.wait_for(lambda: phase(fake) == "Ready", within=outage_ends + 300)
        await harness.wait_for(lambda: state(fake) == "Deployed", within=300)
        assert_never_shown(fake, debug_logs, harness, OLD)

    stalled_ever = [
        c
        for change in fake.history
        for c in change.body.get("status", {}).get("conditions", [])
        if c["type"] == "Stalled" and c["status"] == "True"
    ]
    assert stalled_ever == []  # neither the provider nor its cluster nor a node said Stalled
    events = fake.events_about("sim")
    assert [(e["type"], e["reason"]) for e in events] == [
        ("Warning", "ProviderUnavailable"),
        ("Normal", "DriverReady"),
    ]


async def test_a_secret_that_cannot_be_read_again_for_a_while_keeps_the_provider_working(
    fake: FakeKube,
    harness: Harness,
    inventory: Path,
    built: list[RecordedDriver],
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    fake.put_secret(SECRET_NS, SECRET, {"token": OLD})
    fake.add(NODEPROVIDERS, provider_with_credentials(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=1))
    await harness.wait_for(lambda: state(fake) == "Deployed")

    outage = fake.fail("read_secret", "secrets", 503, times=None)  # the API server struggles
    await asyncio.sleep(1800)
    await fake.patch(NODECLUSTERS, NS, "web", {"spec": {"targetNodes": 2}})
    await harness.wait_for(lambda: state(fake) == "Deployed" and len(live_nodes(fake)) == 2)
    assert phase(fake) == "Ready"
    assert "reading credentials Secret nodecluster-system/sim-creds failed" in debug_logs.text
    failed_reads = len(fake.calls_of("read_secret"))
    assert failed_reads < 1800 / CREDENTIALS_REREAD_FLOOR_SECONDS  # not once per call

    fake.remove(outage)
    fake.put_secret(SECRET_NS, SECRET, {"token": NEW})
    await harness.wait_for(lambda: tokens(built)[-1] == NEW, within=300)
    assert tokens(built) == [OLD, NEW]
    assert_never_shown(fake, debug_logs, harness, OLD, NEW)
