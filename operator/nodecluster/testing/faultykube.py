"""An API server that fails: a proxy in front of a real one, for the kwok driver's tests.

The provider contract's "failing" scenario asks for a provider whose every call fails with
a passing fault, some after they took effect (the answer lost on the way back: what an
idempotent create exists for). A real API server does not fail on demand, so `FaultyKube`
stands in front of it, on a loopback port, and answers every request with a 503 and the
API server's own `Status` body: one request in two is first forwarded (it takes effect),
the other not. The driver reaches it through a kubeconfig of its own (`kubeconfig()`,
plain HTTP, no credentials); the proxy forwards with the real kubeconfig's.

`status` (default 503) picks the answer, so the driver's reading of 401, 403, 429 and the
like can be tried over HTTP too.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class FaultyKube:
    """The proxy. `await FaultyKube(kubeconfig).start()`, then `close()`."""

    def __init__(self, kubeconfig: str | Path, status: int = 503) -> None:
        self._kubeconfig = str(kubeconfig)
        self.status = status
        """What every request is answered with."""
        self.requests = 0
        """How many requests came."""
        self.forwarded = 0
        """How many of them reached the API server (and took effect)."""
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._server = ""
        self._headers: dict[str, str] = {}
        self.port = 0

    async def start(self) -> FaultyKube:
        """Load the real kubeconfig and listen on a free loopback port."""
        configuration = k8s.Configuration()
        await k8s_config.load_kube_config(
            config_file=self._kubeconfig, client_configuration=configuration
        )
        self._server = str(configuration.host)
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, keyfile=configuration.key_file)
        token = configuration.api_key.get("BearerToken") or configuration.api_key.get(
            "authorization"
        )
        if token:
            self._headers["Authorization"] = (
                token if token.startswith("Bearer ") else f"Bearer {token}"
            )
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    def kubeconfig(self) -> dict[str, Any]:
        """A kubeconfig that reaches the API server through the proxy."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "faulty", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}
            ],
            "users": [{"name": "faulty", "user": {"token": "unused"}}],
            "contexts": [{"name": "faulty", "context": {"cluster": "faulty", "user": "faulty"}}],
            "current-context": "faulty",
        }

    async def _answer(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.requests % 2 == 1:
            await self._forward(request)
        return web.json_response(status_body(self.status), status=self.status)

    async def _forward(self, request: web.Request) -> None:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        headers.pop("Authorization", None)
        headers.update(self._headers)
        async with self._session.request(
            request.method,
            f"{self._server}{request.rel_url}",
            headers=headers,
            data=await request.read(),
        ) as answer:
            await answer.read()
        self.forwarded += 1

    async def close(self) -> None:
        """Stop listening and close the connections."""
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


REASONS: Mapping[int, str] = {
    401: "Unauthorized",
    403: "Forbidden",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def status_body(code: int) -> dict[str, Any]:
    """The API server's `Status` of a failure with this HTTP status."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"injected by FaultyKube: {REASONS.get(code, 'Failure')}",
        "reason": REASONS.get(code, "Unknown"),
        "code": code,
    }
