"""The API server's answers in the operator's vocabulary (providers/base.py).

The whole of the driver's judgement about failures, decided from the HTTP status (the
API server's `Status` reason says the same, and a proxy in between may answer without one):

| status, failure                           | error          | why                            |
|-------------------------------------------|----------------|--------------------------------|
| 401                                       | Unauthorized   | a token expired or was revoked:|
|                                           |                | the Secret is read again       |
| 403                                       | InvalidConfig  | RBAC lacks a verb on nodes: a  |
|                                           |                | person must grant it           |
| 404                                       | NotFound       | (of a Node; see the client)    |
| 400, 422                                  | InvalidConfig  | a label or name the API server |
|                                           |                | refuses: retrying cannot help  |
| 409, 410, 429, 5xx; no connection, timeout| Retryable      | a conflict, an expired list,   |
|                                           |                | throttling, a server fault     |
| a kubeconfig that does not load           | InvalidConfig  |                                |
| anything else                             | ProviderError  | reported with its status       |

Messages carry the action, the status and the server's message (cut short), which names the
object and the field, never a credential: the request's headers are not in an ApiException.
"""

from __future__ import annotations

import json

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import ConfigException

from nodecluster.providers.base import (
    InvalidConfig,
    NotFound,
    ProviderError,
    Retryable,
    Unauthorized,
)

MESSAGE_LIMIT = 300
"""Characters of the API server's message kept."""

RETRYABLE_STATUS = frozenset({409, 410, 429})
"""Conflict (a write raced another), Gone (a list's continue token expired), throttled."""


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def server_message(err: ApiException) -> str:
    """The `Status` message of an API answer, else its reason phrase."""
    body = err.body.decode(errors="replace") if isinstance(err.body, bytes) else err.body
    if body:
        try:
            status = json.loads(body)
        except ValueError:
            status = None
        if isinstance(status, dict) and status.get("message"):
            return _short(str(status["message"]))
    return _short(str(err.reason or ""))


def translate(err: Exception, action: str) -> ProviderError:
    """The typed error for an exception raised by an API call named `action`."""
    if isinstance(err, ApiException):
        return _api_error(err, action)
    if isinstance(err, ConfigException):
        return InvalidConfig(f"{action}: the kubeconfig does not load: {_short(str(err))}")
    if isinstance(err, aiohttp.ClientError | TimeoutError | OSError):
        detail = _short(str(err)) or type(err).__name__
        return Retryable(f"{action}: the API server did not answer: {detail}")
    return ProviderError(f"{action}: {type(err).__name__}: {_short(str(err))}")


def _api_error(err: ApiException, action: str) -> ProviderError:
    status = int(err.status or 0)
    text = f"{action}: {status} {server_message(err)}".rstrip()
    if status == 401:
        return Unauthorized(text)
    if status == 403:
        return InvalidConfig(f"{text} (grant the operator's identity this verb on nodes)")
    if status == 404:
        return NotFound(text)
    if status in (400, 422):
        return InvalidConfig(text)
    if status in RETRYABLE_STATUS or status >= 500:
        return Retryable(text)
    return ProviderError(text)
