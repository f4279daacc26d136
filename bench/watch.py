"""List-then-watch one kind in one namespace, and wait until enough objects are "done".

The benchmark sees the world as any client would, through a watch: a phase ends when the
watch has delivered the last object in its final state, not when a poll happens to look.
Each object is reduced to one boolean as it arrives, so waiting on ten thousand objects
costs a counter, not a scan per event. A tracker given a `measure` also keeps each event as
(time, name, value), from which bench.plot draws the phase over time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from nodecluster import GROUP, VERSION
from nodecluster.controllers.kube import KubeClient

Done = Callable[[dict[str, Any]], bool]
Measure = Callable[[dict[str, Any]], int]


def exists(_: dict[str, Any]) -> bool:
    """Done as soon as the object is seen."""
    return True


def in_state(state: str, ready_nodes: int | None = None) -> Done:
    """Done when a NodeCluster reports `state` for its current generation."""

    def done(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        if status.get("state") != state:
            return False
        if status.get("observedGeneration") != obj.get("metadata", {}).get("generation"):
            return False
        return ready_nodes is None or (
            status.get("readyNodes") == ready_nodes and status.get("currentNodes") == ready_nodes
        )

    return done


def present(_: dict[str, Any]) -> int:
    """One per object that exists: the count a watch has shown."""
    return 1


def ready_reported(obj: dict[str, Any]) -> int:
    """The Ready nodes a NodeCluster reports (`status.readyNodes`)."""
    return int((obj.get("status") or {}).get("readyNodes") or 0)


class Tracker:
    """Which objects of one kind exist in a namespace, and which of them are done."""

    def __init__(
        self,
        client: KubeClient,
        plural: str,
        namespace: str,
        done: Done = exists,
        measure: Measure | None = None,
    ) -> None:
        self._api = client.api
        self._path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
        self._done = done
        self._measure = measure
        self.events: list[tuple[float, str, int]] = []
        """With a `measure`: (monotonic time, name, measure of the object or 0 once deleted)
        of every event, in the order the watch delivered them."""
        self.seen: dict[str, bool] = {}
        self.done_count = 0
        self._changed = asyncio.Event()
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Tracker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.wait(
            [self._task, asyncio.ensure_future(self._synced.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self._task.done():
            self._task.result()  # the first list failed: say why
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait(self, count: int, give_up_after: float = 900.0) -> float:
        """Wait until exactly `count` objects exist and all are done; return monotonic time."""
        deadline = time.monotonic() + give_up_after
        while not (self.done_count == count == len(self.seen)):
            if self._task is not None and self._task.done():
                self._task.result()
                raise RuntimeError("watch ended")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{self._path}: {self.done_count} of {count} done "
                    f"({len(self.seen)} exist) after {give_up_after:.0f}s"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
        return time.monotonic()

    def _update(self, kind: str, obj: dict[str, Any]) -> None:
        name = str(obj.get("metadata", {}).get("name", ""))
        before = self.seen.pop(name, False)
        if before:
            self.done_count -= 1
        if self._measure is not None:
            value = 0 if kind == "DELETED" else self._measure(obj)
            self.events.append((time.monotonic(), name, value))
        if kind != "DELETED":
            now = self._done(obj)
            self.seen[name] = now
            if now:
                self.done_count += 1
        self._changed.set()

    async def _list(self) -> str:
        for attempt in range(60):
            try:
                result = await self._api.call_api(
                    self._path,
                    "GET",
                    header_params={"Accept": "application/json"},
                    response_types_map={200: "object"},
                    auth_settings=["BearerToken"],
                    _return_http_data_only=True,
                )
                break
            except ApiException as err:
                # 429 "storage is (re)initializing": a new CRD's watch cache is not ready.
                if err.status != 429 or attempt == 59:
                    raise
                await asyncio.sleep(1.0)
        self.seen.clear()
        self.done_count = 0
        for obj in result.get("items", []):
            self._update("ADDED", obj)
        self._synced.set()
        return str(result["metadata"]["resourceVersion"])

    async def _run(self) -> None:
        version = await self._list()
        while True:
            query = [
                ("watch", "true"),
                ("resourceVersion", version),
                ("allowWatchBookmarks", "true"),
                ("timeoutSeconds", "240"),
            ]
            try:
                resp = await self._api.call_api(
                    self._path,
                    "GET",
                    query_params=query,
                    header_params={"Accept": "application/json"},
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _return_http_data_only=True,
                )
                async with resp:
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        kind, obj = event["type"], event["object"]
                        if kind == "ERROR":
                            if obj.get("code") == 410:
                                version = await self._list()
                                break
                            raise RuntimeError(f"watch {self._path}: {obj.get('message')}")
                        version = str(obj["metadata"]["resourceVersion"])
                        if kind != "BOOKMARK":
                            self._update(kind, obj)
            except ApiException as err:
                if err.status != 410:
                    raise
                version = await self._list()
