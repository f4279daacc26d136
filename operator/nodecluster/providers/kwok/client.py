"""The driver's own small client of the Nodes API, on kubernetes_asyncio.

Providers must not import the controllers (the import-linter contract keeps drivers free of
the operator's internals), so the controllers' client is not used; this one needs five calls
on one resource. Bodies stay plain dicts, as the API server sends them (the generated
models would cost a conversion per Node and say nothing more). Every call has its own
timeouts, shorter than the NodeProvider's call deadline, so a stuck connection fails as
itself (Retryable) before the whole call is cut off.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import ConfigException

from nodecluster.providers.base import ProviderError
from nodecluster.providers.kwok.errors import translate

log = logging.getLogger(__name__)

NODES = "/api/v1/nodes"
MERGE_PATCH = "application/merge-patch+json"
FIELD_MANAGER = "nodecluster-operator-kwok"
"""Who wrote the driver's fields, in the Nodes' managedFields."""

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
"""Seconds; shorter than the default call deadline (120 s)."""
TIMEOUT = aiohttp.ClientTimeout(
    connect=CONNECT_TIMEOUT, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
)
PAGE_SIZE = 500
"""Nodes per list page: a fleet of thousands is read in a few requests, none huge."""

API_FAILURES = (ApiException, ConfigException, aiohttp.ClientError, OSError)
"""What a call raises when the API server, the network or the kubeconfig fail (TimeoutError
is an OSError): translated into the typed errors. Anything else is a bug."""


@contextmanager
def calling(action: str) -> Iterator[None]:
    """Raise the typed error for whatever an API call inside fails with."""
    try:
        yield
    except API_FAILURES as err:
        raise translate(err, action) from err


class NodesClient:
    """get, list, create, patch and delete of Nodes on one API server, opened on first use.

    `kubeconfig`: a parsed kubeconfig (from a Secret); else `kubeconfig_path`; else the
    operator's own API server (in-cluster config, else KUBECONFIG or ~/.kube/config)."""

    def __init__(
        self,
        *,
        kubeconfig: Mapping[str, Any] | None = None,
        kubeconfig_path: str | None = None,
        context: str | None = None,
    ) -> None:
        self._kubeconfig = kubeconfig
        self._kubeconfig_path = kubeconfig_path
        self._context = context
        self._api: k8s.ApiClient | None = None
        self._opening = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        source = (
            "Secret"
            if self._kubeconfig is not None
            else self._kubeconfig_path or "the operator's API server"
        )
        return f"NodesClient(kubeconfig={source!r}, context={self._context!r})"

    async def _client(self) -> k8s.ApiClient:
        if self._closed:
            raise ProviderError("the kwok driver's client was closed")
        if self._api is None:
            async with self._opening:
                if self._api is None:
                    self._api = k8s.ApiClient(await self._configuration())
        return self._api

    async def _configuration(self) -> k8s.Configuration:
        configuration = k8s.Configuration()
        with calling("load the kubeconfig"):
            if self._kubeconfig is not None:
                await k8s_config.load_kube_config_from_dict(
                    dict(self._kubeconfig),
                    context=self._context,
                    client_configuration=configuration,
                )
            elif self._kubeconfig_path is not None:
                await k8s_config.load_kube_config(
                    config_file=self._kubeconfig_path,
                    context=self._context,
                    client_configuration=configuration,
                )
            else:
                try:
                    k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                except ConfigException:
                    # KUBECONFIG read now, not when kubernetes_asyncio was imported.
                    await k8s_config.load_kube_config(
                        config_file=os.environ.get("KUBECONFIG", "~/.kube/config"),
                        context=self._context,
                        client_configuration=configuration,
                    )
        return configuration

    async def close(self) -> None:
        """Close the connection pool; later calls fail."""
        self._closed = True
        if self._api is not None:
            await self._api.close()

    async def _call(
        self,
        action: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        api = await self._client()
        with calling(action):
            result = await api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _request_timeout=TIMEOUT,
            )
        return cast(dict[str, Any], result or {})

    async def get(self, name: str) -> dict[str, Any] | None:
        """The Node, or None when there is none."""
        try:
            return await self._call(f"get Node {name}", "GET", f"{NODES}/{name}")
        except ProviderError as err:
            if status_of(err) == 404:
                return None
            raise

    async def list(self, selector: str) -> list[dict[str, Any]]:
        """Every Node matching a label selector, page by page."""
        nodes: list[dict[str, Any]] = []
        token = ""
        while True:
            query = [("labelSelector", selector), ("limit", str(PAGE_SIZE))]
            if token:
                query.append(("continue", token))
            page = await self._call(f"list Nodes {selector}", "GET", NODES, query=query)
            nodes.extend(page.get("items") or [])
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                return nodes

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create a Node; None when one of its name exists already."""
        name = body["metadata"]["name"]
        try:
            return await self._call(
                f"create Node {name}",
                "POST",
                NODES,
                body=dict(body),
                query=[("fieldManager", FIELD_MANAGER)],
            )
        except ProviderError as err:
            if status_of(err) == 409:
                return None
            raise

    async def patch(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """JSON-merge-patch a Node (a `metadata.resourceVersion` in it makes it
        conditional: a 409, Retryable, if the Node changed since)."""
        return await self._call(
            f"patch Node {name}",
            "PATCH",
            f"{NODES}/{name}",
            body=dict(patch),
            query=[("fieldManager", FIELD_MANAGER)],
            content_type=MERGE_PATCH,
        )

    async def delete(self, name: str, uid: str) -> bool:
        """Delete the Node of this uid (never another made since under its name); False
        when it is gone already."""
        try:
            await self._call(
                f"delete Node {name}",
                "DELETE",
                f"{NODES}/{name}",
                body={"preconditions": {"uid": uid}},
            )
        except ProviderError as err:
            if status_of(err) == 404:
                return False
            raise
        return True


def status_of(err: ProviderError) -> int:
    """The HTTP status behind a typed error (0: none, e.g. no connection)."""
    cause = err.__cause__
    return int(cause.status or 0) if isinstance(cause, ApiException) else 0
