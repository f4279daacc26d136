"""The operator's own Kubernetes client: `KubeApi` (kubeapi.py) on the real API server.

kopf watches; this module writes. It wraps `kubernetes_asyncio` so that no call blocks
the event loop, every PATCH is a JSON merge patch (the generated client would otherwise
pick JSON Patch for custom objects), every write carries the operator's field manager,
and API failures arrive as three exceptions the controllers can act on.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import ssl
import urllib.request
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

from nodecluster.clock import Clock, SystemClock, rfc3339
from nodecluster.controllers.kubeapi import (
    FIELD_MANAGER,
    Kind,
    KubeConflict,
    KubeDisruptionBlocked,
    KubeError,
    KubeNotFound,
    event_body,
    kube_error,
    named_event_body,
)

MERGE = "application/merge-patch+json"

log = logging.getLogger(__name__)


def _raise(err: ApiException) -> None:
    message = err.reason or ""
    if err.status not in (404, 409):
        body = err.body.decode() if isinstance(err.body, bytes) else str(err.body or "")
        message = f"{message} {body}".strip()
    raise kube_error(err.status or 0, message) from err


async def _read_environment_once(
    api: k8s.ApiClient, configuration: k8s.Configuration, max_connections: int
) -> None:
    """Give the client an HTTP session that does not consult the environment per request.

    kubernetes_asyncio opens its aiohttp session with trust_env=True, and aiohttp then
    looks up proxy variables and ~/.netrc on every request, each time in a worker thread:
    two thread round trips per API call, about a fifth of the operator's CPU while a fleet
    converges. The proxy variables are read here, once, instead; ~/.netrc is not used
    (the API server authenticates with tokens or client certificates).
    """
    rest = api.rest_client
    await rest.pool_manager.close()
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, keyfile=configuration.key_file)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.disable_strict_ssl_verification:
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    rest.pool_manager = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, ssl=context),
        trust_env=False,
        read_bufsize=2**21,  # as kubernetes_asyncio: watch events can be large
    )
    if rest.proxy is None:
        url = urlsplit(configuration.host)
        proxy = urllib.request.getproxies().get(url.scheme)
        if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
            rest.proxy = proxy


def disruption_cause(body: Any) -> str | None:
    """The message of the `DisruptionBudget` cause of an eviction's 429 Status, if it has
    one (kube-apiserver's pkg/registry/core/pod/storage/eviction.go)."""
    try:
        status = json.loads(body.decode() if isinstance(body, bytes) else str(body or ""))
    except ValueError:
        return None
    if not isinstance(status, dict):
        return None
    causes = (status.get("details") or {}).get("causes") or []
    for cause in causes:
        if isinstance(cause, dict) and cause.get("reason") == "DisruptionBudget":
            return str(cause.get("message") or status.get("message") or "")
    return None


class KubeClient:
    """All API writes and the few reads the operator does outside kopf's watches."""

    def __init__(self, api: k8s.ApiClient, clock: Clock | None = None) -> None:
        self._api = api
        self._clock: Clock = clock or SystemClock()
        self._core = k8s.CoreV1Api(api)
        self.writes = 0
        """Count of write calls, for debugging and benchmarks."""

    @classmethod
    async def connect(
        cls, max_connections: int = 100, kubeconfig: str | None = None, clock: Clock | None = None
    ) -> KubeClient:
        """Load in-cluster config, else the kubeconfig (`kubeconfig`, KUBECONFIG or
        ~/.kube/config); with `kubeconfig` given, only that file."""
        configuration = k8s.Configuration()
        try:
            if kubeconfig is not None:
                raise k8s_config.ConfigException("a kubeconfig was named")
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            await k8s_config.load_kube_config(
                config_file=kubeconfig, client_configuration=configuration
            )
        configuration.connection_pool_maxsize = max_connections
        api = k8s.ApiClient(configuration)
        await _read_environment_once(api, configuration, max_connections)
        return cls(api, clock)

    @property
    def api(self) -> k8s.ApiClient:
        """The underlying kubernetes_asyncio client (for watches outside kopf)."""
        return self._api

    async def close(self) -> None:
        """Close the connection pool."""
        await self._api.close()

    @staticmethod
    def _path(
        kind: Kind, namespace: str | None, name: str | None = None, sub: str | None = None
    ) -> str:
        parts = [kind.prefix]
        if kind.namespaced and namespace is not None:
            parts.append(f"/namespaces/{namespace}")
        parts.append(f"/{kind.plural}")
        if name is not None:
            parts.append(f"/{name}")
        if sub is not None:
            parts.append(f"/{sub}")
        return "".join(parts)

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        try:
            result = await self._api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
            )
        except ApiException as err:
            _raise(err)
        return cast(dict[str, Any], result or {})

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        """Read one object."""
        return await self._call("GET", self._path(kind, namespace, name))

    async def list(
        self, kind: Kind, namespace: str | None, selector: str = "", fields: str = ""
    ) -> list[dict[str, Any]]:
        """List objects (by label and field selector)."""
        query = [("labelSelector", selector)] if selector else []
        if fields:
            query.append(("fieldSelector", fields))
        res = await self._call("GET", self._path(kind, namespace), query=query)
        return cast(list[dict[str, Any]], res.get("items", []))

    async def pages(
        self, kind: Kind, namespace: str | None, limit: int = 1000
    ) -> AsyncIterator[builtins.list[dict[str, Any]]]:
        """See KubeApi.pages."""
        token = ""
        while True:
            query = [("limit", str(limit))] + ([("continue", token)] if token else [])
            res = await self._call("GET", self._path(kind, namespace), query=query)
            yield cast(builtins.list[dict[str, Any]], res.get("items", []))
            token = str((res.get("metadata") or {}).get("continue") or "")
            if not token:
                return

    async def create(self, kind: Kind, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create an object; KubeConflict when it exists already."""
        self.writes += 1
        return await self._call(
            "POST", self._path(kind, namespace), body, [("fieldManager", FIELD_MANAGER)]
        )

    async def patch(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        status: bool = False,
    ) -> dict[str, Any]:
        """JSON-merge-patch the object or (status=True) its status subresource."""
        self.writes += 1
        path = self._path(kind, namespace, name, "status" if status else None)
        return await self._call("PATCH", path, patch, [("fieldManager", FIELD_MANAGER)], MERGE)

    async def delete(self, kind: Kind, namespace: str | None, name: str) -> None:
        """Delete; a missing object is not an error (delete until NotFound)."""
        self.writes += 1
        with contextlib.suppress(KubeNotFound):
            await self._call("DELETE", self._path(kind, namespace, name))

    async def evict(self, namespace: str, name: str) -> None:
        """Evict a pod through the Eviction API (policy/v1), which honours its
        PodDisruptionBudget. The server answers 429 with a `DisruptionBudget` cause when the
        budget forbids it now: KubeDisruptionBlocked with the cause's words. Other 429s are
        the server shedding load (API Priority and Fairness): a plain KubeError."""
        self.writes += 1
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        path = f"/api/v1/namespaces/{namespace}/pods/{name}/eviction"
        try:
            await self._api.call_api(
                path,
                "POST",
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                body=body,
                response_types_map={200: "object", 201: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
            )
        except ApiException as err:
            if err.status == 429:
                blocked = disruption_cause(err.body)
                if blocked is not None:
                    raise KubeDisruptionBlocked(429, blocked) from err
            _raise(err)

    async def cluster_uid(self) -> str:
        """The uid of the kube-system Namespace: made with the Kubernetes cluster and never
        changed, so it tells clusters apart (the default installation id)."""
        try:
            namespace = await self._core.read_namespace("kube-system")
        except ApiException as err:
            _raise(err)
        uid: str = namespace.metadata.uid
        return uid

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's data, base64-decoded. The values are never logged."""
        import base64

        try:
            secret = await self._core.read_namespaced_secret(name, namespace)
        except ApiException as err:
            _raise(err)
        data = secret.data or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    async def event(
        self,
        involved: dict[str, Any],
        etype: str,
        reason: str,
        message: str,
    ) -> None:
        """Post a core/v1 Event about an object. Failures are logged, never raised:
        an Event is a courtesy to people, not part of reconciliation."""
        meta = involved.get("metadata", {})
        body = event_body(involved, etype, reason, message, rfc3339(self._clock.now()))
        namespace = body["metadata"]["namespace"]
        self.writes += 1
        try:
            await self._call("POST", f"/api/v1/namespaces/{namespace}/events", body)
        except KubeError as err:
            log.warning("could not post event %s on %s: %s", reason, meta.get("name"), err)

    async def post_event(
        self, name: str, involved: dict[str, Any], etype: str, reason: str, message: str
    ) -> bool:
        """See KubeApi.post_event: the server's 409 (AlreadyExists) says it was posted."""
        body = named_event_body(name, involved, etype, reason, message, rfc3339(self._clock.now()))
        namespace = body["metadata"]["namespace"]
        self.writes += 1
        try:
            await self._call("POST", f"/api/v1/namespaces/{namespace}/events", body)
        except KubeConflict:
            return False
        return True

    async def read_event(self, namespace: str, name: str) -> dict[str, Any]:
        """See KubeApi.read_event."""
        return await self._call("GET", f"/api/v1/namespaces/{namespace}/events/{name}")
