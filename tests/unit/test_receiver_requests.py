"""What a receiver makes of a request (planning/receiver.py): the token check, the body
(Alertmanager's webhook or anything else), the cooldown, and the operation it creates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest

from nodecluster.api.nodecluster import NodeCluster
from nodecluster.api.operation import NodeClusterOperation, OperationAction
from nodecluster.api.receiver import (
    RECEIVER_ACTIONS,
    NodeClusterReceiver,
    ReceiverTrigger,
)
from nodecluster.cli import main
from nodecluster.planning.receiver import (
    CALLER_ANNOTATIONS,
    FIELD_LIMIT,
    RECEIVER_LABEL,
    TRIGGERED_AT_ANNOTATION,
    Payload,
    PayloadError,
    bearer_token,
    caller,
    operation_body,
    operation_name,
    parse_payload,
    retry_after,
    token_matches,
)

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)


def receiver(action: str = "ScaleOut", **status: Any) -> NodeClusterReceiver:
    return NodeClusterReceiver.model_validate(
        {
            "metadata": {"name": "scale-on-load", "namespace": "team-a", "uid": "u-1"},
            "spec": {
                "clusterName": "workers",
                "action": action,
                "tokenSecretRef": {"name": "receiver-token"},
                **({"count": 2} if action in ("ScaleOut", "ScaleIn") else {}),
            },
            "status": status,
        }
    )


def cluster(cooldown: int = 300, last_scale: datetime | None = None) -> NodeCluster:
    return NodeCluster.model_validate(
        {
            "metadata": {"name": "workers", "namespace": "team-a"},
            "spec": {
                "providerRef": {"name": "sim"},
                "profile": {"machineType": "small"},
                "policies": {"scaling": {"cooldownSeconds": cooldown}},
            },
            "status": {"lastScaleTime": last_scale.isoformat()} if last_scale else {},
        }
    )


# -- the token ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer s3cret", "s3cret"),
        ("bearer s3cret", "s3cret"),
        ("BEARER   s3cret  ", "s3cret"),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("s3cret", None),
        ("", None),
        (None, None),
    ],
)
def test_the_bearer_token_is_taken_only_from_a_bearer_authorization(
    header: str | None, token: str | None
) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    ("given", "expected", "matches"),
    [
        ("s3cret", "s3cret", True),
        ("s3cret", "s3cret\n", True),  # a file's newline, as credentials_file is read
        ("s3cret", "s3creT", False),
        ("s3cre", "s3cret", False),
        ("s3cret", None, False),  # no Secret, or no such key
        (None, "s3cret", False),
        ("", "", False),  # an empty token in the Secret opens nothing
        ("x", "   ", False),
        ("ünïcode", "ünïcode", True),
    ],
)
def test_a_token_matches_only_the_secrets_non_empty_value(
    given: str | None, expected: str | None, matches: bool
) -> None:
    assert token_matches(given, expected) is matches


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    seen: list[tuple[bytes, bytes]] = []

    def compare(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return a == b

    monkeypatch.setattr(hmac, "compare_digest", compare)
    assert token_matches("abc", "abd") is False
    assert seen == [(b"abc", b"abd")]


# -- the body -------------------------------------------------------------------------------


def alertmanager(status: str, *alerts: tuple[str, str], **extra: Any) -> bytes:
    """A version 4 webhook payload, as Alertmanager sends it."""
    return json.dumps(
        {
            "version": "4",
            "groupKey": '{}/{severity="page"}:{alertname="QueueBacklog"}',
            "truncatedAlerts": 0,
            "status": status,
            "receiver": "nodecluster-scale-out",
            "groupLabels": {"alertname": "QueueBacklog"},
            "commonLabels": {"alertname": "QueueBacklog"},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": [
                {
                    "status": state,
                    "labels": {"alertname": name},
                    "annotations": {},
                    "startsAt": "2026-12-03T11:55:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus/graph",
                    "fingerprint": "abc",
                }
                for name, state in alerts
            ],
            **extra,
        }
    ).encode()


def test_a_firing_alertmanager_notification_triggers_and_says_who_sent_it() -> None:
    payload = parse_payload(alertmanager("firing", ("QueueBacklog", "firing"), ("Old", "resolved")))

    assert payload == Payload(
        "trigger",
        alertmanager_receiver="nodecluster-scale-out",
        group_key='{}/{severity="page"}:{alertname="QueueBacklog"}',
        alerts=("QueueBacklog",),  # a resolved alert of a firing group is not why
    )


def test_a_resolved_notification_triggers_nothing() -> None:
    assert parse_payload(alertmanager("resolved", ("QueueBacklog", "resolved"))).kind == (
        "resolved"
    )


@pytest.mark.parametrize("body", [b"", b"  \n", b"{}", b'{"reason": "deploy hook"}'])
def test_an_empty_body_or_any_other_json_object_triggers(body: bytes) -> None:
    assert parse_payload(body) == Payload("trigger")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"scale please", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"firing"', "JSON object"),
        (b'{"status": "pending"}', "firing or resolved"),
    ],
)
def test_a_body_that_is_neither_refuses_with_why(body: bytes, says: str) -> None:
    with pytest.raises(PayloadError, match=says):
        parse_payload(body)


def test_what_a_caller_sends_is_cut_short_and_alert_names_are_bounded() -> None:
    many = [(f"Alert{i}", "firing") for i in range(50)]
    payload = parse_payload(alertmanager("firing", *many, receiver="r" * 10_000))
    who = caller(payload, "10.0.0.7", "1.2.3.4, 10.0.0.1", "x" * 5000)

    assert who.alertmanager_receiver == "r" * FIELD_LIMIT
    assert who.user_agent == "x" * FIELD_LIMIT
    assert who.alerts is not None and len(who.alerts) == 20
    assert who.address == "10.0.0.7" and who.forwarded_for == "1.2.3.4, 10.0.0.1"


# -- the cooldown ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "cooldown", "last_trigger", "last_scale", "wait"),
    [
        ("ScaleOut", 300, None, None, 0),  # never triggered, never scaled
        ("ScaleOut", 0, NOW, NOW, 0),  # no cooldown: every request triggers
        ("ScaleOut", 300, NOW - timedelta(seconds=100), None, 200),
        ("ScaleOut", 300, NOW - timedelta(seconds=300), None, 0),  # exactly over
        ("ScaleOut", 300, NOW - timedelta(seconds=299.5), None, 1),  # rounded up
        ("ScaleOut", 300, None, NOW - timedelta(seconds=60), 240),  # scaled by anyone
        ("ScaleIn", 300, NOW - timedelta(seconds=250), NOW - timedelta(seconds=10), 290),
        ("Recover", 300, NOW - timedelta(seconds=100), NOW, 200),  # a scale is not its own
        ("Check", 300, None, NOW, 0),
    ],
)
def test_the_scaling_cooldown_limits_how_often_a_receiver_triggers(
    action: str,
    cooldown: int,
    last_trigger: datetime | None,
    last_scale: datetime | None,
    wait: int,
) -> None:
    status = (
        {"lastTriggered": {"time": last_trigger.isoformat(), "operation": "op"}}
        if last_trigger
        else {}
    )
    assert retry_after(receiver(action, **status), cluster(cooldown, last_scale), NOW) == wait


# -- the operation --------------------------------------------------------------------------


def test_the_receivers_actions_are_operation_actions() -> None:
    assert set(RECEIVER_ACTIONS) <= set(get_args(OperationAction))


def test_operation_names_are_distinct_per_trigger_and_per_receiver_incarnation() -> None:
    first, second = receiver(), receiver()
    second.metadata.uid = "u-2"  # the same name, deleted and created again

    names = {operation_name(first, 1), operation_name(first, 2), operation_name(second, 1)}
    assert len(names) == 3
    assert operation_name(first, 1) == operation_name(first, 1)
    long = receiver()
    long.metadata.name = "a" * 200
    assert len(operation_name(long, 1)) == 63


def test_the_operation_carries_the_action_its_parameters_and_who_asked() -> None:
    r = receiver("ScaleOut")
    payload = parse_payload(alertmanager("firing", ("QueueBacklog", "firing")))
    trigger = ReceiverTrigger(
        time=NOW,
        operation="scale-on-load-0123456789",
        caller=caller(payload, "10.0.0.7", None, "Alertmanager/0.28.1"),
    )

    body = operation_body(r, trigger)
    op = NodeClusterOperation.model_validate(body)  # a valid operation, as the API sees it

    assert op.metadata.name == "scale-on-load-0123456789"
    assert op.metadata.namespace == "team-a"
    assert op.spec.cluster_name == "workers" and op.spec.action == "ScaleOut"
    assert op.spec.count == 2
    annotations = body["metadata"]["annotations"]
    assert annotations[TRIGGERED_AT_ANNOTATION] == "2026-12-03T12:00:00Z"
    assert annotations[CALLER_ANNOTATIONS["address"]] == "10.0.0.7"
    assert annotations[CALLER_ANNOTATIONS["user_agent"]] == "Alertmanager/0.28.1"
    assert annotations[CALLER_ANNOTATIONS["alertmanager_receiver"]] == "nodecluster-scale-out"
    assert annotations[CALLER_ANNOTATIONS["alerts"]] == "QueueBacklog"
    assert CALLER_ANNOTATIONS["forwarded_for"] not in annotations  # absent, not empty
    assert body["metadata"]["labels"] == {RECEIVER_LABEL: "scale-on-load"}
    assert "tokenSecretRef" not in json.dumps(body)  # where the token is stays with the receiver


# -- run --receiver-address ----------------------------------------------------------------


def test_the_receivers_address_comes_from_the_flag_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nodecluster.controllers import handlers

    given: list[str | None] = []
    monkeypatch.setattr(
        handlers, "run_operator", lambda **kwargs: given.append(kwargs["receiver_address"])
    )
    monkeypatch.delenv("NODECLUSTER_RECEIVER_ADDRESS", raising=False)
    assert main(["run"]) == 0  # off by default
    assert main(["run", "--receiver-address", "0.0.0.0:8082"]) == 0
    monkeypatch.setenv("NODECLUSTER_RECEIVER_ADDRESS", "127.0.0.1:0")
    assert main(["run"]) == 0

    assert given == [None, "0.0.0.0:8082", "127.0.0.1:0"]


def test_a_bad_receivers_address_is_refused_saying_what_is_expected(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--receiver-address", "8082"])
    assert exited.value.code == 2
    assert "expected HOST:PORT" in capsys.readouterr().err
    monkeypatch.setenv("NODECLUSTER_RECEIVER_ADDRESS", "nowhere")
    with pytest.raises(SystemExit, match="NODECLUSTER_RECEIVER_ADDRESS: 'nowhere'"):
        main(["run"])
