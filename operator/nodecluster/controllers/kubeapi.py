"""The port to the Kubernetes API: exactly the calls the controllers make, and their errors.

Two things implement `KubeApi`: `kube.KubeClient` (the real API server, through
kubernetes_asyncio) and `nodecluster.testing.FakeKube` (an in-memory API server for tests
of the controllers in one process). The controllers see only this module, so what they
may do to the API is written down here, once, and a fake that behaves like the real
server for these calls is enough to test every path of them.

Every write is a JSON merge patch, a create, a delete or an eviction; reads are single
objects and label- or field-selected lists (the watch belongs to kopf, or to the test
harness). The core kinds (Nodes, Pods) are used only with Node integration (`run --nodes`).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from nodecluster import GROUP, VERSION

FIELD_MANAGER = "nodecluster-operator"
"""The field manager of every write (server-side apply users see it in managedFields)."""


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0 when no answer came)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class KubeNotFound(KubeError):
    """404: the object (or its namespace) does not exist."""


class KubeConflict(KubeError):
    """409: the object exists already, or its resourceVersion moved on."""


class KubeDisruptionBlocked(KubeError):
    """429 to an eviction: a PodDisruptionBudget allows no disruption of the pod now.
    `message` is the server's cause ("The disruption budget web needs 2 healthy pods and has
    2 currently"). Raised by `evict` only: elsewhere a 429 is throttling, a plain KubeError."""


REFUSED = frozenset({400, 403, 404, 422})
"""Statuses of a write the API server will refuse again until a person changes something."""


def kube_error(status: int, message: str) -> KubeError:
    """The exception class the controllers act on, for an HTTP status."""
    if status == 404:
        return KubeNotFound(status, message)
    if status == 409:
        return KubeConflict(status, message)
    return KubeError(status, message)


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the API: the project's own, unless another group is named
    ("" is the core group, served under /api/v1)."""

    plural: str
    namespaced: bool = True
    group: str = GROUP
    version: str = VERSION

    @property
    def prefix(self) -> str:
        """The path the kind's resources are served under."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


NODECLUSTERS = Kind("nodeclusters")
CLUSTERNODES = Kind("clusternodes")
NODEPROVIDERS = Kind("nodeproviders", namespaced=False)
OPERATIONS = Kind("nodeclusteroperations")
NODES = Kind("nodes", namespaced=False, group="", version="v1")
"""Kubernetes Nodes (`run --nodes`): patched (labels, taints, cordon) and deleted."""
PODS = Kind("pods", group="", version="v1")
"""Pods, listed by the Node they run on to drain it (`run --nodes`)."""
PODDISRUPTIONBUDGETS = Kind("poddisruptionbudgets", group="policy", version="v1")
"""Never called by the operator (the eviction honours them); the fake keeps them."""


EVENT_MESSAGE_LIMIT = 1024
"""Longer Event messages are cut to this (the API server refuses very long ones)."""


def event_body(
    involved: dict[str, Any], etype: str, reason: str, message: str, now: str
) -> dict[str, Any]:
    """The core/v1 Event the operator posts about `involved` at `now` (RFC 3339): one
    builder for the real client and the fake, so what tests read is what is posted."""
    meta = involved.get("metadata", {})
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{meta.get('name', 'object')}.",
            "namespace": meta.get("namespace") or "default",
        },
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": etype,
        "reason": str(reason),
        "message": message[:EVENT_MESSAGE_LIMIT],
        "source": {"component": FIELD_MANAGER},
        "reportingComponent": FIELD_MANAGER,
        "reportingInstance": FIELD_MANAGER,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def named_event_body(
    name: str, involved: dict[str, Any], etype: str, reason: str, message: str, now: str
) -> dict[str, Any]:
    """`event_body`, under a name of the caller's instead of a generated one."""
    body = event_body(involved, etype, reason, message, now)
    del body["metadata"]["generateName"]
    body["metadata"]["name"] = name
    return body


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A merge patch turning status `old` into `new`: keys that disappeared are nulled,
    because a merge patch otherwise keeps whatever it does not mention."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    patch.update(new)
    return {"status": patch}


class KubeApi(Protocol):
    """The API calls of the controllers. Bodies are plain JSON-ready dicts."""

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        """Read one object; KubeNotFound if it does not exist."""
        ...

    async def list(
        self, kind: Kind, namespace: str | None, selector: str = "", fields: str = ""
    ) -> builtins.list[dict[str, Any]]:
        """Objects of a kind in a namespace (None: all), by equality label selector and
        field selector (`spec.nodeName=x`)."""
        ...

    def pages(
        self, kind: Kind, namespace: str | None, limit: int = 1000
    ) -> AsyncIterator[builtins.list[dict[str, Any]]]:
        """Every object of a kind in a namespace (None: all), a page of `limit` at a time
        (limit and continue): a list of 100,000 objects is never one response held and
        parsed at once, nor one list of bodies in memory."""
        ...

    async def create(self, kind: Kind, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create an object and return it as stored; KubeConflict when it exists already."""
        ...

    async def patch(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        status: bool = False,
    ) -> dict[str, Any]:
        """JSON-merge-patch the object, or (status=True) its status subresource; a
        `metadata.resourceVersion` in the patch is a precondition (KubeConflict if stale)."""
        ...

    async def delete(self, kind: Kind, namespace: str | None, name: str) -> None:
        """Delete (an object with finalizers is only marked); a missing object is fine."""
        ...

    async def evict(self, namespace: str, name: str) -> None:
        """Evict a pod (policy/v1 Eviction): deleted as its PodDisruptionBudget allows.
        KubeDisruptionBlocked when the budget allows no disruption now, KubeNotFound when
        the pod is gone already."""
        ...

    async def cluster_uid(self) -> str:
        """The uid of the kube-system Namespace, which names the Kubernetes cluster."""
        ...

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's data, decoded. The values are never logged."""
        ...

    async def event(self, involved: dict[str, Any], etype: str, reason: str, message: str) -> None:
        """Post a core/v1 Event about an object; failures are logged, never raised."""
        ...

    async def post_event(
        self, name: str, involved: dict[str, Any], etype: str, reason: str, message: str
    ) -> bool:
        """Post a core/v1 Event under the name given, once: if an Event of that name exists
        (posted by an attempt whose answer was lost, or before a restart), it is left as it
        is. True if this call posted it, False if it existed. Any other failure raises
        KubeError, so that a caller who must know the Event was posted (before it records
        that it was) can try again."""
        ...

    async def read_event(self, namespace: str, name: str) -> dict[str, Any]:
        """The core/v1 Event of that name (one `post_event` posted); KubeNotFound if there
        is none: never posted, or expired (the API server keeps Events an hour by
        default)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
