"""Which ClusterNode watch events wake the node's controller.

The echo of the controller's own status write must wake nothing (it would cost a
reconcile and a provider call per node), yet a node waiting for a retry must be woken
when no retry is due in this process: after a restart, nobody else would."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from nodecluster.controllers.events import needs_work as _needs_work


def body(
    state: str | None = "Running",
    provider_id: str | None = "sim://a/1",
    message: str | None = None,
    observed: int = 1,
    power: str = "Running",
    deleting: bool = False,
) -> kopf.Body:
    meta: dict[str, Any] = {"name": "n", "namespace": "ns", "generation": 1}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    status: dict[str, Any] = {"observedGeneration": observed, "state": state}
    if provider_id is not None:
        status["providerId"] = provider_id
    if message is not None:
        status["message"] = message
    return kopf.Body({"metadata": meta, "spec": {"powerState": power}, "status": status})


@pytest.mark.parametrize(
    ("event", "retry_due", "wakes"),
    [
        (body(), False, False),  # at rest: the echo of its own write
        (body(state="Stopped", power="Stopped"), False, False),
        (body(state="Failed"), False, False),  # the cluster replaces it
        (body(state="Running", power="Stopped"), True, True),  # power to change
        (body(deleting=True), True, True),
        (body(observed=0), True, True),  # a new generation
        (body(state="Pending", provider_id=None), True, True),  # no machine yet
        (body(message="create failed"), True, False),  # its backoff timer will retry
        (body(message="create failed"), False, True),  # none will: a restart
        (body(state="Provisioning"), True, False),  # its look-again timer is due
        (body(state="Provisioning"), False, True),  # none is: a restart
    ],
)
def test_which_events_wake_the_node(event: kopf.Body, retry_due: bool, wakes: bool) -> None:
    assert _needs_work(event, retry_due) is wakes
