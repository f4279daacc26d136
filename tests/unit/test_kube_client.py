"""KubeClient, the real API client adapter, against a tiny local HTTP server.

The server (aiohttp on 127.0.0.1, a real socket) records every request and answers what
a test told it to, so these tests see exactly what goes over the wire: paths, query,
content type, body, and how HTTP errors come back as the controllers' exceptions.
Real sockets: these tests must not run under looptime (they live outside
tests/unit/controllers for that reason).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.config import kube_config

from nodecluster.controllers import kube
from nodecluster.controllers.kube import KubeClient
from nodecluster.controllers.kubeapi import (
    CLUSTERNODES,
    NODECLUSTERS,
    NODEPROVIDERS,
    NODES,
    PODS,
    KubeConflict,
    KubeDisruptionBlocked,
    KubeError,
    KubeNotFound,
)

GROUP_PATH = "/apis/nodecluster.io/v1alpha1"
NOW = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


@dataclass(frozen=True)
class Request:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    authorization: str | None
    body: Any


@dataclass
class ApiServer:
    """Records requests; answers (status, JSON body or text) per (method, path), else 200 {}."""

    url: str = ""
    requests: list[Request] = field(default_factory=list)
    answers: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    pages: dict[str, list[list[Any]]] = field(default_factory=dict)
    """GET path -> the pages of a paged list (its continue token: the next page's index)."""

    def answer(self, method: str, path: str, status: int = 200, body: Any = None) -> None:
        self.answers[(method, path)] = (status, {} if body is None else body)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.requests.append(
            Request(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                content_type=request.headers.get("Content-Type", ""),
                authorization=request.headers.get("Authorization"),
                body=json.loads(raw) if raw else None,
            )
        )
        if request.method == "GET" and request.path in self.pages:
            pages = self.pages[request.path]
            at = int(request.query.get("continue") or 0)
            token = str(at + 1) if at + 1 < len(pages) else ""
            return web.json_response({"items": pages[at], "metadata": {"continue": token}})
        status, body = self.answers.get((request.method, request.path), (200, {}))
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        return web.json_response(body, status=status)


class FixedClock:
    def now(self) -> datetime:
        return NOW

    def monotonic(self) -> float:
        return 0.0


@pytest.fixture
async def server() -> AsyncIterator[ApiServer]:
    api = ApiServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", api.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    api.url = f"http://{host}:{port}"
    yield api
    await runner.cleanup()


@pytest.fixture
async def client(server: ApiServer) -> AsyncIterator[KubeClient]:
    configuration = k8s.Configuration(host=server.url)
    client = KubeClient(k8s.ApiClient(configuration), clock=FixedClock())
    yield client
    await client.close()


def only(server: ApiServer) -> Request:
    [request] = server.requests
    return request


# -- paths -----------------------------------------------------------------------------------


async def test_get_reads_a_namespaced_object_at_its_path(
    server: ApiServer, client: KubeClient
) -> None:
    path = f"{GROUP_PATH}/namespaces/team-a/nodeclusters/web"
    server.answer("GET", path, body={"metadata": {"name": "web"}, "spec": {"targetNodes": 3}})

    body = await client.get(NODECLUSTERS, "team-a", "web")

    assert body == {"metadata": {"name": "web"}, "spec": {"targetNodes": 3}}
    assert (only(server).method, only(server).path) == ("GET", path)


async def test_a_cluster_scoped_kind_has_no_namespace_in_its_path(
    server: ApiServer, client: KubeClient
) -> None:
    await client.get(NODEPROVIDERS, "team-a", "sim")

    assert only(server).path == f"{GROUP_PATH}/nodeproviders/sim"


async def test_list_selects_by_label_and_returns_the_items(
    server: ApiServer, client: KubeClient
) -> None:
    path = f"{GROUP_PATH}/namespaces/team-a/clusternodes"
    server.answer("GET", path, body={"items": [{"metadata": {"name": "web-x1"}}]})

    items = await client.list(CLUSTERNODES, "team-a", "nodecluster.io/cluster=web")

    assert items == [{"metadata": {"name": "web-x1"}}]
    assert only(server).query == {"labelSelector": "nodecluster.io/cluster=web"}


async def test_pages_follow_the_continue_token_a_page_at_a_time(
    server: ApiServer, client: KubeClient
) -> None:
    path = f"{GROUP_PATH}/clusternodes"
    server.pages[path] = [[{"n": 1}, {"n": 2}], [{"n": 3}, {"n": 4}], [{"n": 5}]]

    got = [page async for page in client.pages(CLUSTERNODES, None, limit=2)]

    assert got == server.pages[path]
    assert [r.query for r in server.requests] == [
        {"limit": "2"},
        {"limit": "2", "continue": "1"},
        {"limit": "2", "continue": "2"},
    ]


async def test_list_of_every_namespace_without_a_selector(
    server: ApiServer, client: KubeClient
) -> None:
    items = await client.list(CLUSTERNODES, None)

    assert items == []
    assert only(server).path == f"{GROUP_PATH}/clusternodes"
    assert only(server).query == {}


async def test_core_kinds_live_under_api_v1(server: ApiServer, client: KubeClient) -> None:
    await client.patch(NODES, None, "node-1", {"spec": {"unschedulable": True}})
    await client.delete(NODES, None, "node-1")

    assert [(r.method, r.path) for r in server.requests] == [
        ("PATCH", "/api/v1/nodes/node-1"),
        ("DELETE", "/api/v1/nodes/node-1"),
    ]
    assert server.requests[0].content_type == "application/merge-patch+json"


async def test_list_selects_by_field(server: ApiServer, client: KubeClient) -> None:
    await client.list(PODS, None, fields="spec.nodeName=node-1")

    assert only(server).path == "/api/v1/pods"
    assert only(server).query == {"fieldSelector": "spec.nodeName=node-1"}


async def test_evict_posts_a_policy_v1_eviction(server: ApiServer, client: KubeClient) -> None:
    await client.evict("apps", "web-1")

    request = only(server)
    assert (request.method, request.path) == ("POST", "/api/v1/namespaces/apps/pods/web-1/eviction")
    assert request.body == {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "web-1", "namespace": "apps"},
    }
    assert client.writes == 1


async def test_an_eviction_a_budget_refuses_is_kube_disruption_blocked(
    server: ApiServer, client: KubeClient
) -> None:
    # kube-apiserver's answer, as pkg/registry/core/pod/storage/eviction.go builds it.
    refusal = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": "Cannot evict pod as it would violate the pod's disruption budget.",
        "reason": "TooManyRequests",
        "details": {
            "causes": [
                {
                    "reason": "DisruptionBudget",
                    "message": "The disruption budget web needs 1 healthy pods and has 1 currently",
                }
            ]
        },
        "code": 429,
    }
    server.answer("POST", "/api/v1/namespaces/apps/pods/web-1/eviction", 429, refusal)

    with pytest.raises(KubeDisruptionBlocked) as caught:
        await client.evict("apps", "web-1")

    assert caught.value.status == 429
    assert (
        caught.value.message == "The disruption budget web needs 1 healthy pods and has 1 currently"
    )


async def test_a_429_without_a_budget_cause_is_throttling_not_a_budget(
    server: ApiServer, client: KubeClient
) -> None:
    throttled = {"kind": "Status", "code": 429, "reason": "TooManyRequests", "message": "slow down"}
    server.answer("POST", "/api/v1/namespaces/apps/pods/web-1/eviction", 429, throttled)

    with pytest.raises(KubeError) as caught:
        await client.evict("apps", "web-1")

    assert not isinstance(caught.value, KubeDisruptionBlocked)
    assert caught.value.status == 429


async def test_evicting_a_pod_that_is_gone_is_kube_not_found(
    server: ApiServer, client: KubeClient
) -> None:
    server.answer("POST", "/api/v1/namespaces/apps/pods/web-1/eviction", 404, {"code": 404})

    with pytest.raises(KubeNotFound):
        await client.evict("apps", "web-1")


async def test_create_posts_the_body_with_the_operators_field_manager(
    server: ApiServer, client: KubeClient
) -> None:
    path = f"{GROUP_PATH}/namespaces/team-a/clusternodes"
    server.answer("POST", path, 201, {"metadata": {"name": "web-x1", "uid": "u-1"}})

    created = await client.create(CLUSTERNODES, "team-a", {"metadata": {"name": "web-x1"}})

    assert created == {"metadata": {"name": "web-x1", "uid": "u-1"}}
    request = only(server)
    assert (request.method, request.path) == ("POST", path)
    assert request.query == {"fieldManager": "nodecluster-operator"}
    assert request.content_type == "application/json"
    assert request.body == {"metadata": {"name": "web-x1"}}


async def test_patch_is_a_json_merge_patch_with_the_operators_field_manager(
    server: ApiServer, client: KubeClient
) -> None:
    patch = {"metadata": {"finalizers": None}, "spec": {"powerState": "Stopped"}}

    await client.patch(CLUSTERNODES, "team-a", "web-x1", patch)

    request = only(server)
    assert (request.method, request.path) == (
        "PATCH",
        f"{GROUP_PATH}/namespaces/team-a/clusternodes/web-x1",
    )
    assert request.content_type == "application/merge-patch+json"
    assert request.query == {"fieldManager": "nodecluster-operator"}
    assert request.body == patch


async def test_a_status_patch_goes_to_the_status_subresource(
    server: ApiServer, client: KubeClient
) -> None:
    await client.patch(NODEPROVIDERS, None, "sim", {"status": {"phase": "Ready"}}, status=True)

    request = only(server)
    assert request.path == f"{GROUP_PATH}/nodeproviders/sim/status"
    assert request.content_type == "application/merge-patch+json"
    assert request.body == {"status": {"phase": "Ready"}}


async def test_delete_asks_for_the_objects_path(server: ApiServer, client: KubeClient) -> None:
    await client.delete(CLUSTERNODES, "team-a", "web-x1")

    request = only(server)
    assert (request.method, request.path) == (
        "DELETE",
        f"{GROUP_PATH}/namespaces/team-a/clusternodes/web-x1",
    )


async def test_the_cluster_uid_is_the_kube_system_namespaces(
    server: ApiServer, client: KubeClient
) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace"}
    server.answer(
        "GET",
        "/api/v1/namespaces/kube-system",
        body={**namespace, "metadata": {"name": "kube-system", "uid": "5f0c1c4e-3b1a"}},
    )

    assert await client.cluster_uid() == "5f0c1c4e-3b1a"
    assert only(server).method == "GET"


# -- errors ----------------------------------------------------------------------------------


async def test_a_404_is_kube_not_found(server: ApiServer, client: KubeClient) -> None:
    path = f"{GROUP_PATH}/namespaces/team-a/nodeclusters/web"
    server.answer("GET", path, 404, {"kind": "Status", "reason": "NotFound"})

    with pytest.raises(KubeNotFound) as raised:
        await client.get(NODECLUSTERS, "team-a", "web")

    assert raised.value.status == 404
    assert raised.value.message == "Not Found"


async def test_a_409_is_kube_conflict(server: ApiServer, client: KubeClient) -> None:
    path = f"{GROUP_PATH}/namespaces/team-a/clusternodes/web-x1"
    server.answer("PATCH", path, 409, {"kind": "Status", "reason": "Conflict"})

    with pytest.raises(KubeConflict) as raised:
        await client.patch(CLUSTERNODES, "team-a", "web-x1", {"metadata": {}})

    assert raised.value.status == 409


async def test_a_422_is_a_kube_error_with_the_status_and_the_servers_words(
    server: ApiServer, client: KubeClient
) -> None:
    path = f"{GROUP_PATH}/namespaces/team-a/clusternodes"
    refusal = "ClusterNode.nodecluster.io Web is invalid: metadata.name: Invalid value"
    server.answer("POST", path, 422, {"kind": "Status", "message": refusal})

    with pytest.raises(KubeError) as raised:
        await client.create(CLUSTERNODES, "team-a", {"metadata": {"name": "Web"}})

    assert type(raised.value) is KubeError
    assert raised.value.status == 422
    assert refusal in raised.value.message
    assert str(raised.value).startswith("422: ")


async def test_deleting_a_missing_object_is_not_an_error(
    server: ApiServer, client: KubeClient
) -> None:
    path = f"{GROUP_PATH}/namespaces/team-a/clusternodes/web-x1"
    server.answer("DELETE", path, 404, {"kind": "Status", "reason": "NotFound"})

    await client.delete(CLUSTERNODES, "team-a", "web-x1")

    assert only(server).method == "DELETE"


async def test_a_failed_delete_is_raised(server: ApiServer, client: KubeClient) -> None:
    path = f"{GROUP_PATH}/namespaces/team-a/clusternodes/web-x1"
    server.answer("DELETE", path, 500, "etcdserver: request timed out")

    with pytest.raises(KubeError) as raised:
        await client.delete(CLUSTERNODES, "team-a", "web-x1")

    assert raised.value.status == 500
    assert "etcdserver: request timed out" in raised.value.message


# -- Secrets ---------------------------------------------------------------------------------


async def test_read_secret_decodes_the_data(server: ApiServer, client: KubeClient) -> None:
    encoded = {
        k: base64.b64encode(v.encode()).decode() for k, v in {"token": "s3cr\u00e9t"}.items()
    }
    server.answer(
        "GET",
        "/api/v1/namespaces/nodecluster-system/secrets/sim-creds",
        body={"apiVersion": "v1", "kind": "Secret", "data": encoded},
    )

    data = await client.read_secret("nodecluster-system", "sim-creds")

    assert data == {"token": "s3cr\u00e9t"}


async def test_a_secret_without_data_reads_as_empty(server: ApiServer, client: KubeClient) -> None:
    server.answer(
        "GET",
        "/api/v1/namespaces/team-a/secrets/empty",
        body={"apiVersion": "v1", "kind": "Secret"},
    )

    assert await client.read_secret("team-a", "empty") == {}


@pytest.mark.parametrize(("status", "error"), [(403, KubeError), (404, KubeNotFound)])
async def test_a_secret_that_cannot_be_read_raises_by_status(
    server: ApiServer, client: KubeClient, status: int, error: type[KubeError]
) -> None:
    server.answer("GET", "/api/v1/namespaces/team-a/secrets/boot", status, {"kind": "Status"})

    with pytest.raises(error) as raised:
        await client.read_secret("team-a", "boot")

    assert raised.value.status == status


# -- Events ----------------------------------------------------------------------------------


async def test_an_event_is_a_core_v1_event_about_the_object(
    server: ApiServer, client: KubeClient
) -> None:
    involved = {
        "apiVersion": "nodecluster.io/v1alpha1",
        "kind": "NodeCluster",
        "metadata": {"name": "web", "namespace": "team-a", "uid": "u-1", "resourceVersion": "9"},
    }

    await client.event(involved, "Normal", "Scaling", "scaling from 3 to 5 nodes")

    request = only(server)
    assert (request.method, request.path) == ("POST", "/api/v1/namespaces/team-a/events")
    assert request.body == {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "web.", "namespace": "team-a"},
        "involvedObject": {
            "apiVersion": "nodecluster.io/v1alpha1",
            "kind": "NodeCluster",
            "name": "web",
            "namespace": "team-a",
            "uid": "u-1",
            "resourceVersion": "9",
        },
        "type": "Normal",
        "reason": "Scaling",
        "message": "scaling from 3 to 5 nodes",
        "source": {"component": "nodecluster-operator"},
        "reportingComponent": "nodecluster-operator",
        "reportingInstance": "nodecluster-operator",
        "firstTimestamp": "2030-01-02T03:04:05Z",
        "lastTimestamp": "2030-01-02T03:04:05Z",
        "count": 1,
    }


async def test_an_event_about_a_cluster_scoped_object_goes_to_default_cut_to_1024(
    server: ApiServer, client: KubeClient
) -> None:
    involved = {"kind": "NodeProvider", "metadata": {"name": "sim"}}

    await client.event(involved, "Warning", "InvalidProviderConfig", "x" * 5000)

    request = only(server)
    assert request.path == "/api/v1/namespaces/default/events"
    assert request.body["metadata"]["namespace"] == "default"
    assert request.body["involvedObject"]["namespace"] is None
    assert request.body["message"] == "x" * 1024


async def test_a_failed_event_is_logged_never_raised(
    server: ApiServer, client: KubeClient, caplog: pytest.LogCaptureFixture
) -> None:
    server.answer("POST", "/api/v1/namespaces/team-a/events", 403, "events is forbidden")
    involved = {"kind": "NodeCluster", "metadata": {"name": "web", "namespace": "team-a"}}

    with caplog.at_level(logging.WARNING, logger=kube.__name__):
        await client.event(involved, "Normal", "Deployed", "3 nodes ready")

    assert "could not post event Deployed on web" in caplog.text
    assert client.writes == 1


async def test_a_named_event_is_created_under_its_name(
    server: ApiServer, client: KubeClient
) -> None:
    involved = {"kind": "NodeClusterOperation", "metadata": {"name": "op", "namespace": "team-a"}}

    posted = await client.post_event("op.0123abcd", involved, "Normal", "OperationSucceeded", "x")

    assert posted is True
    request = only(server)
    assert (request.method, request.path) == ("POST", "/api/v1/namespaces/team-a/events")
    assert request.body["metadata"] == {"name": "op.0123abcd", "namespace": "team-a"}
    assert request.body["reason"] == "OperationSucceeded"
    assert client.writes == 1


async def test_a_named_event_posted_before_is_left_as_it_is(
    server: ApiServer, client: KubeClient
) -> None:
    server.answer("POST", "/api/v1/namespaces/team-a/events", 409, {"reason": "AlreadyExists"})
    involved = {"kind": "NodeClusterOperation", "metadata": {"name": "op", "namespace": "team-a"}}

    posted = await client.post_event("op.0123abcd", involved, "Normal", "OperationSucceeded", "x")

    assert posted is False, "it says the Event existed"
    assert len(server.requests) == 1


async def test_a_named_event_is_read_back_by_its_name(
    server: ApiServer, client: KubeClient
) -> None:
    path = "/api/v1/namespaces/team-a/events/op.0123abcd"
    server.answer("GET", path, body={"reason": "OperationSucceeded", "message": "Check: done"})

    event = await client.read_event("team-a", "op.0123abcd")

    assert (only(server).method, only(server).path) == ("GET", path)
    assert event["reason"] == "OperationSucceeded"
    assert client.writes == 0


async def test_a_named_event_that_is_gone_reads_as_not_found(
    server: ApiServer, client: KubeClient
) -> None:
    path = "/api/v1/namespaces/team-a/events/op.0123abcd"
    server.answer("GET", path, 404, {"kind": "Status", "reason": "NotFound"})

    with pytest.raises(KubeNotFound):
        await client.read_event("team-a", "op.0123abcd")


@pytest.mark.parametrize("status", [403, 503])
async def test_a_named_event_that_fails_raises_for_its_caller_to_decide(
    server: ApiServer, client: KubeClient, status: int
) -> None:
    server.answer("POST", "/api/v1/namespaces/team-a/events", status, "no")
    involved = {"kind": "NodeClusterOperation", "metadata": {"name": "op", "namespace": "team-a"}}

    with pytest.raises(KubeError) as failed:
        await client.post_event("op.0123abcd", involved, "Normal", "OperationSucceeded", "done")

    assert failed.value.status == status


# -- the writes counter, closing -------------------------------------------------------------


async def test_writes_counts_creates_patches_deletes_and_events_not_reads(
    server: ApiServer, client: KubeClient
) -> None:
    await client.get(NODECLUSTERS, "team-a", "web")
    await client.list(CLUSTERNODES, "team-a")
    await client.read_secret("team-a", "boot")
    assert client.writes == 0

    await client.create(CLUSTERNODES, "team-a", {"metadata": {"name": "web-x1"}})
    await client.patch(CLUSTERNODES, "team-a", "web-x1", {"spec": {}})
    await client.patch(CLUSTERNODES, "team-a", "web-x1", {"status": {}}, status=True)
    await client.delete(CLUSTERNODES, "team-a", "web-x1")
    await client.event({"metadata": {"name": "web-x1"}}, "Normal", "Test", "counted")

    assert client.writes == 5


async def test_close_closes_the_connection_pool(server: ApiServer) -> None:
    api = k8s.ApiClient(k8s.Configuration(host=server.url))
    client = KubeClient(api)
    await client.get(NODECLUSTERS, "team-a", "web")

    await client.close()

    assert client.api is api
    assert api.rest_client.pool_manager.closed


# -- connecting ------------------------------------------------------------------------------


def kubeconfig(path: Path, server: str, token: str = "t0ken") -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": {"server": server}}],
                "users": [{"name": "op", "user": {"token": token}}],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": "op"}}],
                "current-context": "local",
            }
        )
    )
    return path


@pytest.fixture
def outside_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """No in-cluster service account and no proxy in the environment."""
    for name in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


async def test_connect_with_a_kubeconfig_talks_to_its_server_with_its_token(
    server: ApiServer, tmp_path: Path, outside_a_cluster: None
) -> None:
    path = kubeconfig(tmp_path / "config", server.url)

    client = await KubeClient.connect(max_connections=7, kubeconfig=str(path))
    try:
        await client.get(NODECLUSTERS, "team-a", "web")
        session = client.api.rest_client.pool_manager
        assert session.connector.limit == 7
        assert session.trust_env is False
    finally:
        await client.close()

    assert only(server).authorization == "Bearer t0ken"


async def test_connect_outside_a_cluster_uses_the_default_kubeconfig(
    server: ApiServer, tmp_path: Path, outside_a_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kubernetes_asyncio reads $KUBECONFIG (else ~/.kube/config) once, when imported.
    path = kubeconfig(tmp_path / "config", server.url, "env")
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))

    client = await KubeClient.connect()
    try:
        await client.get(NODECLUSTERS, "team-a", "web")
    finally:
        await client.close()

    assert only(server).authorization == "Bearer env"


async def test_connect_inside_a_cluster_uses_its_service_account(
    server: ApiServer, outside_a_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def in_cluster(client_configuration: k8s.Configuration) -> None:
        client_configuration.host = server.url
        client_configuration.api_key = {"BearerToken": "Bearer sa-token"}

    monkeypatch.setattr(kube.k8s_config, "load_incluster_config", in_cluster)

    client = await KubeClient.connect()
    try:
        await client.get(NODECLUSTERS, "team-a", "web")
    finally:
        await client.close()

    assert only(server).authorization == "Bearer sa-token"


async def test_connect_reads_the_proxy_of_the_environment_once(
    server: ApiServer, tmp_path: Path, outside_a_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    path = kubeconfig(tmp_path / "config", server.url)

    client = await KubeClient.connect(kubeconfig=str(path))
    try:
        assert client.api.rest_client.proxy == "http://proxy.example:3128"
    finally:
        await client.close()


async def test_connect_bypasses_the_proxy_for_a_server_in_no_proxy(
    server: ApiServer, tmp_path: Path, outside_a_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    path = kubeconfig(tmp_path / "config", server.url)

    client = await KubeClient.connect(kubeconfig=str(path))
    try:
        await client.get(NODECLUSTERS, "team-a", "web")
        assert client.api.rest_client.proxy is None
    finally:
        await client.close()
    assert len(server.requests) == 1
