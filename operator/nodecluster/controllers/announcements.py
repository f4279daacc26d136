"""Events that are the record of something, posted exactly once whatever fails or restarts.

Most Events are a courtesy (`KubeApi.event`: posted after the fact, a failure logged and
forgotten). Some are the only record people get of something that happened: how an
operation ended, which machine a node left at its provider, why a provider's deletion
waits, why a cluster stalled. Posted after the change they tell of is recorded, a kill or
a lost answer in between loses them for good: once recorded, the change is never looked
at again. Remembered in memory only, a restart posts them twice.

So each is posted before the change is recorded (or made), under a name derived from what
identifies that occurrence (`event_name`: the object's uid, the reason, and what tells
this occurrence from a later one). A retry after any failure, or a restarted operator,
posts the same name again, which the API server refuses as existing (409): one Event each.
A post that fails in passing raises, and the step is retried before anything is recorded;
one the API server refuses for good (no permission to create Events) is logged with its
message and left, as an Event must never keep the operator from its work (`post_once`).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from nodecluster.controllers.kubeapi import REFUSED, KubeApi, KubeError

log = logging.getLogger(__name__)

NAME_PREFIX_LIMIT = 200
"""Characters of the object's name an Event name starts with: with the dot and the digest,
an Event name stays within the 253 of a DNS subdomain whatever the object is called."""


def event_name(about: str, *identity: object) -> str:
    """The name of the Event about object `about` that says one thing once: the object's
    name (as the API server's own Event names start, so they sort by it) and a digest of
    `identity` (what tells this Event from every other: the object's uid, the reason, the
    occurrence). A valid DNS subdomain however long `about` is: cut, it loses any dash or
    dot it would otherwise end on."""
    digest = hashlib.sha256("/".join(str(part) for part in identity).encode()).hexdigest()
    prefix = about[:NAME_PREFIX_LIMIT].rstrip("-.")
    return f"{prefix}.{digest[:16]}" if prefix else digest[:16]


async def post_once(
    api: KubeApi,
    name: str,
    involved: dict[str, Any],
    etype: str,
    reason: str,
    message: str,
) -> bool | None:
    """Post the Event `name` unless it was posted before: True if this posted it, False if
    it existed already (a retry's post), None if the API server refuses it for good (then
    logged, message and all: the log is the record left). A post that fails in passing
    raises KubeError, for the caller to retry before it records (or does) what the Event
    tells of."""
    try:
        return await api.post_event(name, involved, etype, reason, message)
    except KubeError as err:
        if err.status not in REFUSED:
            raise
        about = involved.get("metadata", {}).get("name")
        log.warning("could not post event %s on %s (%s): %s", reason, about, err, message)
        return None
