"""The API server's answers as the operator's errors (nodecluster.providers.kwok.errors),
one by one, as the module's table says."""

from __future__ import annotations

import json

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import ConfigException

from nodecluster.providers.base import (
    InvalidConfig,
    NotFound,
    ProviderError,
    Retryable,
    Unauthorized,
)
from nodecluster.providers.kwok.errors import MESSAGE_LIMIT, translate


def answer(status: int, message: str = 'nodes "web-1" is forbidden') -> ApiException:
    err = ApiException(status=status, reason="Reason Phrase")
    err.body = json.dumps({"kind": "Status", "message": message, "code": status}).encode()
    return err


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, Unauthorized),
        (403, InvalidConfig),
        (404, NotFound),
        (400, InvalidConfig),
        (422, InvalidConfig),
        (409, Retryable),
        (410, Retryable),
        (429, Retryable),
        (500, Retryable),
        (503, Retryable),
        (504, Retryable),
        (418, ProviderError),
    ],
)
def test_statuses(status: int, kind: type[ProviderError]) -> None:
    err = translate(answer(status), "create Node web-1")

    assert type(err) is kind
    assert str(err).startswith(f'create Node web-1: {status} nodes "web-1" is forbidden')


def test_a_forbidden_verb_says_what_to_grant() -> None:
    assert "grant the operator's identity this verb on nodes" in str(translate(answer(403), "x"))


@pytest.mark.parametrize(
    "failure",
    [
        aiohttp.ClientConnectionError("Cannot connect to host 127.0.0.1:1"),
        aiohttp.ServerDisconnectedError(),
        TimeoutError(),
        ConnectionRefusedError("refused"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_no_answer_is_retryable(failure: Exception) -> None:
    err = translate(failure, "list Nodes")

    assert isinstance(err, Retryable)
    assert "the API server did not answer" in str(err)


def test_a_kubeconfig_that_does_not_load_is_invalid_config() -> None:
    err = translate(ConfigException("Invalid kube-config file. No configuration found."), "load")

    assert isinstance(err, InvalidConfig)
    assert "the kubeconfig does not load" in str(err)


def test_messages_are_cut_short_and_an_answer_without_a_body_keeps_its_reason() -> None:
    long = translate(answer(422, "x" * 5000), "create Node web-1")
    bare = ApiException(status=503, reason="Service Unavailable")

    assert len(str(long)) < MESSAGE_LIMIT + 40
    assert str(translate(bare, "get Node web-1")) == "get Node web-1: 503 Service Unavailable"


def test_anything_else_is_a_plain_provider_error() -> None:
    err = translate(ValueError("odd"), "get Node web-1")

    assert type(err) is ProviderError
    assert str(err) == "get Node web-1: ValueError: odd"
