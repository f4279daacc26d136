"""A stand-in for the Nodes API of a kube-apiserver, in process, for the kwok driver's unit
tests.

The kwok driver's contract runs against the real kube-apiserver and a real kwok (tests/e2e);
this stand-in is for what the unit tests need to arrange and the real server does not do on
demand: a Node changed between a read and a write (409 on a stale resourceVersion), a Node
of that name made by someone else, an answer of any status, and the credentials a request
carried (the secrets sentinel checks the token was sent, and never shown). The driver's real
client talks to it over HTTP, so its paging, conditional patches and error handling run.

It keeps only what the driver uses: create, get, list (equality label selectors, paging),
JSON merge patch (conditional on `metadata.resourceVersion`) and delete (preconditions on the
uid) of Nodes. Nothing plays kwok: a test sets a Node's status itself (`boot`).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from nodecluster.testing.fakekube import merge_patch
from nodecluster.testing.faultykube import status_body


def _matches(node: Mapping[str, Any], selector: str) -> bool:
    labels = node["metadata"].get("labels") or {}
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class NodesApi:
    """The stand-in. `await NodesApi(token).start()`, then `close()`."""

    def __init__(self, token: str = "test-token") -> None:
        self.token = token
        self.nodes: dict[str, dict[str, Any]] = {}
        """Every Node by name, as the server holds it."""
        self.tokens_seen: list[str] = []
        """The bearer token of every request."""
        self.answers: list[tuple[str, int]] = []
        """(method, status): the next request of that method ("*": any) is answered with
        that status instead of being served; one entry per request, in order."""
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every request served."""
        self._versions = itertools.count(1)
        self._uids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> NodesApi:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_route("*", "/api/v1/nodes", self._collection)
        app.router.add_route("*", "/api/v1/nodes/{name}", self._member)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    def kubeconfig(self) -> dict[str, Any]:
        """A kubeconfig with the stand-in's server and token (what a Secret would hold)."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "stub", "user": {"token": self.token}}],
            "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
            "current-context": "stub",
        }

    def boot(self, name: str, ready: str = "True", reason: str = "KubeletReady") -> None:
        """Do what kwok's boot stage does: Ready, with the boot id asked for."""
        node = self.nodes[name]
        status = node.setdefault("status", {})
        status["conditions"] = [{"type": "Ready", "status": ready, "reason": reason}]
        boot_id = node["metadata"]["annotations"].get("nodecluster.io/boot-id")
        status["nodeInfo"] = {"bootID": boot_id}
        self._bump(node)

    def _bump(self, node: dict[str, Any]) -> None:
        node["metadata"]["resourceVersion"] = str(next(self._versions))

    def _gate(self, request: web.Request) -> web.Response | None:
        self.requests.append((request.method, request.path))
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.tokens_seen.append(token)
        if self.answers and self.answers[0][0] in ("*", request.method):
            _, code = self.answers.pop(0)
            return web.json_response(status_body(code), status=code)
        if token != self.token:
            return web.json_response(status_body(401), status=401)
        return None

    async def _collection(self, request: web.Request) -> web.Response:
        refused = self._gate(request)
        if refused is not None:
            return refused
        if request.method == "POST":
            body = await request.json()
            name = body["metadata"]["name"]
            if name in self.nodes:
                return web.json_response(status_body(409), status=409)
            node = copy.deepcopy(body)
            node["metadata"]["uid"] = f"uid-{next(self._uids)}"
            node["metadata"]["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._bump(node)
            self.nodes[name] = node
            return web.json_response(node, status=201)
        selector = request.query.get("labelSelector", "")
        matching = [n for _, n in sorted(self.nodes.items()) if _matches(n, selector)]
        start = int(request.query.get("continue") or 0)
        limit = int(request.query.get("limit") or len(matching) or 1)
        page = matching[start : start + limit]
        more = start + limit < len(matching)
        metadata = {"continue": str(start + limit)} if more else {}
        return web.json_response({"kind": "NodeList", "metadata": metadata, "items": page})

    async def _member(self, request: web.Request) -> web.Response:
        refused = self._gate(request)
        if refused is not None:
            return refused
        node = self.nodes.get(request.match_info["name"])
        if node is None:
            return web.json_response(status_body(404), status=404)
        if request.method == "GET":
            return web.json_response(node)
        if request.method == "PATCH":
            patch = await request.json()
            wanted = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and wanted != node["metadata"]["resourceVersion"]:
                return web.json_response(status_body(409), status=409)
            patched = merge_patch(node, patch)
            self._bump(patched)
            self.nodes[node["metadata"]["name"]] = patched
            return web.json_response(patched)
        if request.method == "DELETE":
            options = await request.json() if request.can_read_body else {}
            uid = (options.get("preconditions") or {}).get("uid")
            if uid is not None and uid != node["metadata"]["uid"]:
                return web.json_response(status_body(409), status=409)
            del self.nodes[node["metadata"]["name"]]
            return web.json_response({"kind": "Status", "status": "Success"})
        return web.json_response(status_body(405), status=405)
