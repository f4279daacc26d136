"""NodeClusterReceivers on the fake API: the endpoint served on 127.0.0.1:0 inside the test,
requests sent with aiohttp's client, the operations it creates run by the real controllers.

What could go wrong and is checked: a request creating two operations (a resend, a retry
after a failure), a wrong token doing anything or telling a wrong receiver name from a
wrong token, a standby writing, the token showing anywhere, a rotated Secret not taking.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import provider_body
from test_operations import NS, cluster_body, converged, phase, target

from nodecluster.clock import LoopClock
from nodecluster.controllers import handlers
from nodecluster.controllers.kubeapi import NODECLUSTERS, NODEPROVIDERS, OPERATIONS
from nodecluster.controllers.leader import Fence, LeaseElector, LeaseSettings
from nodecluster.controllers.receiver import (
    RECEIVERS,
    RESYNC_SECONDS,
    SECRET_CACHE_SECONDS,
    Receivers,
)
from nodecluster.planning.receiver import CALLER_ANNOTATIONS, MAX_BODY_BYTES
from nodecluster.testing import FakeKube, Harness

TOKEN = "tok-3f9a0c21de-receiver-sentinel"
OTHER = "tok-not-the-one-at-all-sentinel"
COOLDOWN = 300
METRIC = "nodecluster_receiver_requests_total"


def receiver_body(name: str = "scale-out", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "nodecluster.io/v1alpha1",
        "kind": "NodeClusterReceiver",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "clusterName": "web",
            "action": "ScaleOut",
            "count": 1,
            "tokenSecretRef": {"name": "receiver-token", "key": "token"},
        },
    }
    body["spec"].update(spec)
    return body


def firing(status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4",
        "status": status,
        "receiver": "nodecluster",
        "groupKey": '{}:{alertname="QueueBacklog"}',
        "alerts": [{"status": status, "labels": {"alertname": "QueueBacklog"}}],
    }


class Endpoint:
    """The receivers' endpoint of the test, and a client to it."""

    def __init__(self, receivers: Receivers, session: aiohttp.ClientSession) -> None:
        self.receivers = receivers
        self.session = session

    async def post(
        self,
        name: str = "scale-out",
        token: str | None = TOKEN,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        namespace: str = NS,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        url = f"http://{self.receivers.address}/receivers/{namespace}/{name}"
        async with self.session.post(url, data=data, headers=sent) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else {}, dict(response.headers)

    def count(self, outcome: str, name: str = "scale-out", namespace: str = NS) -> float:
        labels = {"namespace": namespace, "receiver": name, "outcome": outcome}
        return self.receivers.world.metrics.sample(METRIC, labels) or 0.0


@contextlib.asynccontextmanager
async def serving(fake: FakeKube, receivers: Receivers) -> AsyncIterator[Endpoint]:
    """`receivers` fed by the fake's watch of receivers (as kopf feeds them), serving."""
    watch = fake.watch(RECEIVERS, initial=True)

    async def pump() -> None:
        for event in watch.drain():
            receivers.observe(None, event.body)
        async for event in watch:
            receivers.observe(event.type, event.body)

    task = asyncio.get_running_loop().create_task(pump())
    await receivers.serve("127.0.0.1:0")
    try:
        async with aiohttp.ClientSession() as session:
            yield Endpoint(receivers, session)
    finally:
        await receivers.close()
        watch.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def endpoint(fake: FakeKube, harness: Harness, inventory: Path) -> AsyncIterator[Endpoint]:
    """An empty cluster `web` (cooldown 300 s: never scaled, so not in it), the Secret,
    receiver `scale-out` (ScaleOut by 1) Ready, and the endpoint of the leader. (Fixtures
    run without looptime: nothing here waits on the clock.)"""
    fake.add(NODEPROVIDERS, provider_body(inventory))
    policies = {"scaling": {"cooldownSeconds": COOLDOWN}}
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=0, policies=policies))
    fake.put_secret(NS, "receiver-token", {"token": f"{TOKEN}\n"})
    await fake.create(RECEIVERS, NS, receiver_body())
    async with serving(fake, Receivers(harness.world)) as running:
        await harness.wait_for(lambda: ready(fake) == ("True", "AsExpected"))
        yield running


def receiver_status(fake: FakeKube, name: str = "scale-out") -> dict[str, Any]:
    return (fake.stored(RECEIVERS, NS, name) or {}).get("status", {})


def ready(fake: FakeKube, name: str = "scale-out") -> tuple[str, str] | None:
    for c in receiver_status(fake, name).get("conditions", []):
        if c["type"] == "Ready":
            return c["status"], c["reason"]
    return None


def operations(fake: FakeKube) -> list[dict[str, Any]]:
    return fake.objects(OPERATIONS, NS)


async def test_a_firing_alert_creates_one_operation_that_records_who_asked_and_runs(
    fake: FakeKube, harness: Harness, endpoint: Endpoint
) -> None:
    status, answer, _ = await endpoint.post(
        body=firing(), headers={"User-Agent": "Alertmanager/0.28.1"}
    )

    assert status == 202
    (op,) = operations(fake)
    assert answer["operation"] == op["metadata"]["name"]
    assert op["spec"] == {"clusterName": "web", "action": "ScaleOut", "count": 1}
    annotations = op["metadata"]["annotations"]
    assert annotations[CALLER_ANNOTATIONS["address"]] == "127.0.0.1"
    assert annotations[CALLER_ANNOTATIONS["user_agent"]] == "Alertmanager/0.28.1"
    assert annotations[CALLER_ANNOTATIONS["alertmanager_receiver"]] == "nodecluster"
    assert annotations[CALLER_ANNOTATIONS["group_key"]] == '{}:{alertname="QueueBacklog"}'
    recorded = receiver_status(fake)
    assert recorded["lastTriggered"]["operation"] == op["metadata"]["name"]
    assert recorded["lastTriggered"]["caller"]["userAgent"] == "Alertmanager/0.28.1"
    assert recorded["counts"]["triggered"] == 1
    assert "pendingOperation" not in recorded  # created, so nothing is left to finish
    (event,) = fake.events_about("scale-out", "Triggered")
    assert op["metadata"]["name"] in event["message"]
    assert endpoint.count("triggered") == 1
    await harness.wait_for(lambda: phase(fake, op["metadata"]["name"]) == "Succeeded")
    assert target(fake) == 1


async def test_a_resend_within_the_cooldown_is_429_and_creates_nothing(
    fake: FakeKube, endpoint: Endpoint
) -> None:
    assert (await endpoint.post(body=firing()))[0] == 202
    await asyncio.sleep(100)

    status, answer, headers = await endpoint.post(body=firing())

    assert status == 429
    assert headers["Retry-After"] == str(COOLDOWN - 100)
    assert "cooldown" in answer["message"]
    assert len(operations(fake)) == 1
    limited = receiver_status(fake)
    assert limited["lastRateLimited"]["retryAfterSeconds"] == COOLDOWN - 100
    assert limited["counts"] == {"triggered": 1, "rateLimited": 1, "resolved": 0}
    assert endpoint.count("rate_limited") == 1

    await asyncio.sleep(COOLDOWN - 100)  # the cooldown passes: the next alert acts
    status, answer, _ = await endpoint.post(body=firing())
    assert status == 202
    assert len({op["metadata"]["name"] for op in operations(fake)}) == 2


async def test_a_resolved_alert_creates_nothing_and_is_counted(
    fake: FakeKube, endpoint: Endpoint
) -> None:
    status, answer, _ = await endpoint.post(body=firing("resolved"))

    assert (status, answer["result"]) == (200, "ignored")
    assert operations(fake) == []
    assert receiver_status(fake)["counts"]["resolved"] == 1
    assert endpoint.count("resolved") == 1


async def test_an_empty_post_triggers_and_bodies_neither_empty_nor_json_are_refused(
    fake: FakeKube, endpoint: Endpoint
) -> None:
    assert (await endpoint.post(raw=b"not json"))[0] == 400
    assert (await endpoint.post(raw=b"x" * (MAX_BODY_BYTES + 1)))[0] == 413
    assert operations(fake) == []

    assert (await endpoint.post(raw=b""))[0] == 202
    assert len(operations(fake)) == 1
    assert endpoint.count("bad_request") == endpoint.count("too_large") == 1


async def test_bad_tokens_and_unknown_receivers_get_the_same_401_do_nothing_and_are_counted(
    fake: FakeKube, endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    writes = fake.writes
    answers = [
        await endpoint.post(token=OTHER),
        await endpoint.post(token=None),
        await endpoint.post(token=None, headers={"Authorization": f"Basic {TOKEN}"}),
        await endpoint.post(token=TOKEN[:-1]),
        await endpoint.post(name="no-such-receiver", token=TOKEN),
        await endpoint.post(namespace="elsewhere", token=TOKEN),
    ]

    assert {(status, json.dumps(body)) for status, body, _ in answers} == {
        (401, json.dumps({"error": "unauthorized"}))
    }
    assert {headers["WWW-Authenticate"] for _, _, headers in answers} == {
        'Bearer realm="receivers"'
    }
    assert fake.writes == writes  # nothing written: no status, no Event, no operation
    assert endpoint.count("unauthorized") == 4
    # Made-up names add no series: they are counted under empty labels.
    assert endpoint.count("unauthorized", name="", namespace="") == 2
    for secret in (TOKEN, OTHER, TOKEN[:-1]):
        assert secret not in caplog.text


async def test_a_rotated_secret_takes_effect_within_the_cache_time(
    fake: FakeKube, endpoint: Endpoint
) -> None:
    assert (await endpoint.post(token=OTHER))[0] == 401  # reads (and caches) the Secret

    fake.put_secret(NS, "receiver-token", {"token": OTHER})
    await asyncio.sleep(SECRET_CACHE_SECONDS)

    assert (await endpoint.post(token=TOKEN))[0] == 401
    assert (await endpoint.post(token=OTHER))[0] == 202


async def test_a_standby_answers_503_and_writes_nothing_until_it_leads(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=1))
    await converged(fake, harness)
    fake.put_secret(NS, "receiver-token", {"token": TOKEN})
    await fake.create(RECEIVERS, NS, receiver_body())
    leading = False
    standby = Receivers(harness.world, can_act=lambda: leading)
    standby.queue.hold()  # as handlers.start_receivers holds it until the Lease is held
    async with serving(fake, standby) as endpoint:
        fake.reset_journal()

        status, _, headers = await endpoint.post(body=firing())
        assert (await endpoint.post(token=OTHER))[0] == 401  # the same 401 as the leader's
        await harness.idle()

        assert (status, headers["Retry-After"]) == (503, "2")
        assert endpoint.count("standby") == 1
        touched = {c.resource for c in fake.calls if c.verb in ("create", "patch_status")}
        assert not touched & {"nodeclusterreceivers", "nodeclusteroperations", "events"}
        assert ready(fake) is None

        leading = True
        standby.queue.release()  # handlers.lead, once the Lease is held
        await harness.wait_for(lambda: ready(fake) == ("True", "AsExpected"))
        assert (await endpoint.post(body=firing()))[0] == 202


async def test_ready_says_why_a_receiver_cannot_be_used_until_it_can(
    fake: FakeKube, harness: Harness, inventory: Path
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory))
    await fake.create(RECEIVERS, NS, receiver_body())
    async with serving(fake, Receivers(harness.world)) as endpoint:
        await harness.wait_for(lambda: ready(fake) == ("False", "SecretNotFound"))
        assert (await endpoint.post())[0] == 401

        fake.put_secret(NS, "receiver-token", {"other-key": TOKEN})
        await asyncio.sleep(RESYNC_SECONDS)  # Secrets are not watched: the resync sees it
        await harness.wait_for(lambda: ready(fake) == ("False", "SecretKeyNotFound"))

        fake.put_secret(NS, "receiver-token", {"token": TOKEN})
        await asyncio.sleep(RESYNC_SECONDS)
        await harness.wait_for(lambda: ready(fake) == ("False", "ClusterNotFound"))
        status, answer, _ = await endpoint.post()
        assert status == 409 and "NodeCluster team-a/web does not exist" in answer["message"]
        assert operations(fake) == []

        await fake.create(NODECLUSTERS, NS, cluster_body(targetNodes=1))
        fake.fail("read_secret", "secrets", 403)
        await asyncio.sleep(RESYNC_SECONDS)
        await harness.wait_for(lambda: ready(fake) == ("False", "SecretNotReadable"))
        await asyncio.sleep(RESYNC_SECONDS)
        await harness.wait_for(lambda: ready(fake) == ("True", "AsExpected"))
        for c in receiver_status(fake)["conditions"]:
            assert TOKEN not in c["message"]
        warned = [e["reason"] for e in fake.events_about("scale-out") if e["type"] == "Warning"]
        assert warned == [
            "SecretNotFound",
            "SecretKeyNotFound",
            "ClusterNotFound",
            "SecretNotReadable",
        ]


@pytest.mark.parametrize("after_effect", [False, True], ids=["refused", "answer-lost"])
async def test_a_trigger_whose_operation_create_failed_is_finished_by_the_retry_once(
    fake: FakeKube, endpoint: Endpoint, after_effect: bool
) -> None:
    endpoint.receivers.queue.hold()  # no reconcile finishes it first: the retry does
    fake.fail("create", "nodeclusteroperations", 500, after_effect=after_effect)

    status, _, headers = await endpoint.post(body=firing())
    assert (status, headers["Retry-After"]) == (503, "5")
    pending = receiver_status(fake)["pendingOperation"]  # the intent, recorded first

    status, answer, _ = await endpoint.post(body=firing())  # Alertmanager retries a 5xx

    assert (status, answer["operation"]) == (202, pending)
    assert [op["metadata"]["name"] for op in operations(fake)] == [pending]
    assert "pendingOperation" not in receiver_status(fake)
    assert receiver_status(fake)["counts"]["triggered"] == 1
    assert len(fake.events_about("scale-out", "Triggered")) == 1
    assert (await endpoint.post(body=firing()))[0] == 429  # and the cooldown holds


async def test_a_trigger_left_half_done_is_finished_by_the_reconcile(
    fake: FakeKube, harness: Harness, endpoint: Endpoint
) -> None:
    fake.fail("create", "nodeclusteroperations", 500)
    assert (await endpoint.post(body=firing()))[0] == 503
    # No retry comes (a caller that gives up): the receiver's reconcile, woken by the
    # intent its status records, creates the operation recorded.
    await harness.wait_for(lambda: "pendingOperation" not in receiver_status(fake))
    recorded = receiver_status(fake)["lastTriggered"]["operation"]
    assert [op["metadata"]["name"] for op in operations(fake)] == [recorded]
    assert len(fake.events_about("scale-out", "Triggered")) == 1


async def test_with_leader_election_only_the_lease_holder_acts_on_requests(
    fake: FakeKube, harness: Harness, clock: LoopClock
) -> None:
    """handlers.start_receivers: a standby's endpoint answers (503) and its reconciles wait;
    the replica acts once it holds the Lease, and stops acting the moment its renewal is
    overdue, before the fence would have to stop the process at a write."""
    lost: list[str] = []
    settings = LeaseSettings(name="nodecluster-operator", namespace="ops", identity="a")
    elector = LeaseElector(fake, clock, settings, Fence(clock, on_lost=lost.append))
    elector.fence.close()

    receivers = await handlers.start_receivers(harness.world, "127.0.0.1:0", elector, clock)
    assert receivers is not None
    try:
        assert receivers.address is not None
        assert not receivers.can_act() and receivers.queue.held() == 0
        receivers.observe(None, receiver_body())
        assert receivers.queue.held() == 1  # remembered, not run

        await elector.acquire()
        assert receivers.can_act()
        await asyncio.sleep(settings.renew_deadline)  # no renewal meanwhile
        assert not receivers.can_act()
        assert lost == []  # it stopped asking; it never wrote while not leading
    finally:
        await receivers.close()
