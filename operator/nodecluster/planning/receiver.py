"""What a receiver makes of a request: pure decisions, tested by tables.

The endpoint (controllers/receiver.py) does the I/O; everything it decides is here:

- `bearer_token` and `token_matches`: the caller's token against the Secret's, compared in
  constant time (`hmac.compare_digest`), so the time an answer takes says nothing of how
  much of a guess was right. An empty token never matches, whatever is sent.
- `parse_payload`: Alertmanager's webhook (version 4: `status` firing or resolved,
  `alerts[]`, `groupKey`, `receiver`) or anything else. Firing, an empty body, or a JSON
  object that is not Alertmanager's trigger; resolved triggers nothing (the alert is over,
  and undoing a scale step is a decision for another receiver or a person).
- `retry_after`: the cluster's scaling cooldown (policies.scaling.cooldownSeconds), counted
  from the receiver's last trigger and, for ScaleOut and ScaleIn, from the cluster's last
  scale as well (an operation created inside it would only wait it out). Alertmanager
  resends a firing alert at every group_interval and repeat_interval, and retries a
  notification whose answer it lost: within the cooldown each of those is a 429 and
  creates nothing, so a resend is never a second scale step.
- `operation_name` and `operation_body`: the operation, named before it is created (the
  name is recorded in the receiver's status first: a retry after any failure creates that
  one, never a second), and carrying who asked and when in its annotations.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from nodecluster import GROUP
from nodecluster.api.nodecluster import NodeCluster
from nodecluster.api.receiver import (
    SCALING_ACTIONS,
    NodeClusterReceiver,
    ReceiverCaller,
    ReceiverTrigger,
)

MAX_BODY_BYTES = 256 * 1024
"""The largest request body read. Alertmanager's payload for a group of a few hundred alerts
is tens of kilobytes; anything larger is refused (413) before it is parsed."""

FIELD_LIMIT = 256
"""Characters kept of each caller field (User-Agent, groupKey, ...): they go into status and
annotations, and nothing a caller sends may grow an object without bound."""

MAX_ALERT_NAMES = 20
"""Alert names kept of one payload."""

RECEIVER_ANNOTATION = f"{GROUP}/receiver"
TRIGGERED_AT_ANNOTATION = f"{GROUP}/triggered-at"
CALLER_ANNOTATIONS = {
    "address": f"{GROUP}/caller-address",
    "forwarded_for": f"{GROUP}/caller-forwarded-for",
    "user_agent": f"{GROUP}/caller-user-agent",
    "alertmanager_receiver": f"{GROUP}/alertmanager-receiver",
    "group_key": f"{GROUP}/alertmanager-group-key",
    "alerts": f"{GROUP}/alertmanager-alerts",
}
"""Where an operation created by a receiver says who asked (absent fields are left out)."""

RECEIVER_LABEL = f"{GROUP}/receiver"
"""Also a label (when the receiver's name is a valid label value), so that
`kubectl get nco -l nodecluster.io/receiver=NAME` lists what a receiver created."""


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (the scheme in any case, as
    RFC 7235 says); None for a missing header or another scheme."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def token_matches(given: str | None, expected: str | None) -> bool:
    """Whether the token sent is the receiver's, in time independent of where they differ.
    The Secret's value is taken without surrounding whitespace (a file's final newline, as
    Alertmanager's credentials_file is read); an empty or missing token never matches."""
    if given is None or expected is None:
        return False
    expected = expected.strip()
    if not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


class PayloadError(ValueError):
    """A body that is neither empty, nor JSON, nor an Alertmanager payload (400)."""


@dataclass(frozen=True)
class Payload:
    """What a request's body asks for."""

    kind: Literal["trigger", "resolved"]
    alertmanager_receiver: str | None = None
    group_key: str | None = None
    alerts: tuple[str, ...] = field(default=())


def _cut(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value[:FIELD_LIMIT]


def parse_payload(body: bytes) -> Payload:
    """The request body: empty or whitespace triggers; a JSON object triggers unless it is
    Alertmanager's with `status: resolved`. Anything else is a PayloadError."""
    if not body.strip():
        return Payload("trigger")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as err:
        raise PayloadError(f"the body is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise PayloadError("the body must be a JSON object (or empty)")
    status = data.get("status")
    if status is not None and status not in ("firing", "resolved"):
        raise PayloadError(f"status must be firing or resolved, not {str(status)[:40]!r}")
    alerts = data.get("alerts")
    names: list[str] = []
    if isinstance(alerts, list):
        for alert in alerts:
            if not isinstance(alert, dict) or alert.get("status", status) != "firing":
                continue
            name = _cut((alert.get("labels") or {}).get("alertname"))
            if name and name not in names:
                names.append(name)
            if len(names) == MAX_ALERT_NAMES:
                break
    return Payload(
        "resolved" if status == "resolved" else "trigger",
        alertmanager_receiver=_cut(data.get("receiver")),
        group_key=_cut(data.get("groupKey")),
        alerts=tuple(names),
    )


def caller(
    payload: Payload,
    address: str | None,
    forwarded_for: str | None = None,
    user_agent: str | None = None,
) -> ReceiverCaller:
    """Who asked, as recorded in status and on the operation (each field cut short)."""
    return ReceiverCaller(
        address=_cut(address),
        forwarded_for=_cut(forwarded_for),
        user_agent=_cut(user_agent),
        alertmanager_receiver=payload.alertmanager_receiver,
        group_key=payload.group_key,
        alerts=list(payload.alerts) or None,
    )


def retry_after(receiver: NodeClusterReceiver, cluster: NodeCluster, now: datetime) -> int:
    """Whole seconds until the receiver may trigger again (0: now), by the cluster's
    scaling cooldown. Rounded up, as Retry-After takes whole seconds: a caller that waits
    as told is never refused again for a fraction of a second."""
    cooldown = cluster.spec.policies.scaling.cooldown_seconds
    if not cooldown:
        return 0
    since: list[datetime] = []
    last = receiver.status.last_triggered
    if last is not None:
        since.append(last.time)
    if receiver.spec.action in SCALING_ACTIONS and cluster.status.last_scale_time is not None:
        since.append(cluster.status.last_scale_time)
    if not since:
        return 0
    left = (max(since) + timedelta(seconds=cooldown) - now).total_seconds()
    return max(0, math.ceil(left))


OPERATION_NAME_PREFIX = 52
"""Characters of the receiver's name an operation's name starts with: with a dash and 10
hex digits, at most 63 (a label value, and short enough for `kubectl get`)."""


def operation_name(receiver: NodeClusterReceiver, sequence: int) -> str:
    """The name of the receiver's `sequence`-th operation: its name and a digest of its uid
    and the sequence, so a receiver deleted and created again under the same name never
    meets the operations of the one before."""
    digest = hashlib.sha256(f"{receiver.metadata.uid}/{sequence}".encode()).hexdigest()
    prefix = receiver.metadata.name[:OPERATION_NAME_PREFIX].rstrip("-.")
    return f"{prefix}-{digest[:10]}"


def operation_body(receiver: NodeClusterReceiver, trigger: ReceiverTrigger) -> dict[str, Any]:
    """The NodeClusterOperation a trigger creates: the receiver's action and parameters,
    and in its annotations the receiver, the time and the caller."""
    annotations = {
        RECEIVER_ANNOTATION: receiver.metadata.name,
        TRIGGERED_AT_ANNOTATION: trigger.time.isoformat().replace("+00:00", "Z"),
    }
    for name, key in CALLER_ANNOTATIONS.items():
        value = getattr(trigger.caller, name)
        if value:
            annotations[key] = ",".join(value) if isinstance(value, list) else value
    labels = {}
    if len(receiver.metadata.name) <= 63:
        labels[RECEIVER_LABEL] = receiver.metadata.name
    return {
        "apiVersion": receiver.api_version,
        "kind": "NodeClusterOperation",
        "metadata": {
            "name": trigger.operation,
            "namespace": receiver.metadata.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": receiver.spec.operation_spec(),
    }
