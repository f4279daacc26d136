"""The newest known body of each object being worked on: the controllers' read-your-own-writes.

See `BodyCache`. Its keys are `ObjectKey`s: (kind, namespace, name), namespace "" for
cluster-scoped kinds.
"""

from __future__ import annotations

from typing import Any

ObjectKey = tuple[str, str, str]
"""(kind, namespace, name)."""


def resource_version_order(a: str, b: str) -> int | None:
    """-1, 0 or 1 as resourceVersion `a` is older than, equal to or newer than `b`.

    Kubernetes defines resourceVersions of one resource as comparable decimal integers
    since 1.35 (KEP-5504, what client-go's CompareResourceVersion implements). From a
    server whose versions are not such integers, None: the order is unknown.
    """
    if a == b:
        return 0
    if not (a.isdigit() and b.isdigit()) or a[0] == "0" or b[0] == "0":
        return None
    return -1 if (len(a), a) < (len(b), b) else 1


class BodyCache:
    """The newest known body of each object a controller is working on.

    The watch delivers bodies; the API answers our own writes with bodies newer than any
    the watch has delivered yet. Keeping the newest of both gives the controllers
    read-your-own-writes without a GET per reconcile: a reconcile woken while its
    previous status write is still on its way through the watch no longer works from
    the stale body (and writes the same status, and posts the same Event, twice).

    The watch event of one of our own writes (its "echo") tells the controller nothing
    it does not know, so it wakes no reconcile. Any other event does, whatever its order:
    an older body never replaces a newer one, but the change it carries is in the newer
    one too.

    Entries exist only while an object is being worked on: the controllers drop them
    once it has converged, so an idle fleet keeps no bodies in memory.
    """

    def __init__(self) -> None:
        self._bodies: dict[ObjectKey, dict[str, Any]] = {}
        self._own: dict[ObjectKey, set[str]] = {}

    def __len__(self) -> int:
        return len(self._bodies)

    def get(self, key: ObjectKey) -> dict[str, Any] | None:
        """The newest known body, if the object is being worked on."""
        return self._bodies.get(key)

    def observe(self, key: ObjectKey, body: dict[str, Any], keep: bool = True) -> bool:
        """A body from the watch. Return False for the echo of one of our own writes.

        It is kept when it is newer than the one known, and, for an object not being
        worked on, only if `keep` and it is not an echo.
        """
        version = str(body.get("metadata", {}).get("resourceVersion", ""))
        own = self._own.get(key)
        echo = False
        if own is not None:
            echo = version in own
            # Our writes up to this version have been delivered: their echoes are past.
            for mine in list(own):
                if resource_version_order(mine, version) in (-1, 0):
                    own.discard(mine)
            if not own:
                del self._own[key]
            elif len(own) > 16:
                own.clear()  # versions without an order never supersede each other
        current = self._bodies.get(key)
        if current is None:
            if keep and not echo:
                self._bodies[key] = body
        elif self._newer(body, current):
            self._bodies[key] = body
        return not echo

    def wrote(self, key: ObjectKey, body: dict[str, Any]) -> None:
        """The API's answer to our own write: remember it, and expect its echo."""
        version = str(body.get("metadata", {}).get("resourceVersion", ""))
        if not version:
            return
        self._own.setdefault(key, set()).add(version)
        current = self._bodies.get(key)
        if current is None or self._newer(body, current):
            self._bodies[key] = body

    def drop(self, key: ObjectKey) -> None:
        """The object has converged: keep no body (echoes still to come are still known)."""
        self._bodies.pop(key, None)

    def forget(self, key: ObjectKey) -> None:
        """The object is gone."""
        self._bodies.pop(key, None)
        self._own.pop(key, None)

    @staticmethod
    def _newer(body: dict[str, Any], than: dict[str, Any]) -> bool:
        order = resource_version_order(
            str(body.get("metadata", {}).get("resourceVersion", "")),
            str(than.get("metadata", {}).get("resourceVersion", "")),
        )
        # Unknown order (a server without comparable versions): the latest to arrive wins.
        return order != -1
