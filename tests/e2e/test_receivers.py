"""NodeClusterReceivers against a real API server: the operator started with
`--receiver-address 127.0.0.1:0`, its endpoint found from its log as the metrics' is.

What only a real server shows: the CRD's CEL rules refusing a receiver whose parameters do
not fit its action, the status subresource keeping what the operator writes, a Secret read
through the real client, and an operation created through the endpoint running to its end.
"""

from __future__ import annotations

import json
import re
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kube import SAMPLES, Kube, Operator, wait_for
from scenario import Scenario

RECEIVERS_AT = re.compile(r"Receivers served at http://(\S+)/receivers/")


@pytest.fixture
def receivers_operator(kube: Kube, operator: Operator) -> Iterator[Operator]:
    """The operator serving receivers, in place of the session's for one test (never two
    operators at once)."""
    serving = Operator(
        kube,
        operator.workdir,
        extra_args=["--metrics-address", "127.0.0.1:0", "--receiver-address", "127.0.0.1:0"],
    )
    operator.stop()
    serving.start()
    try:
        yield serving
    finally:
        serving.stop()
        operator.start()


def receivers_address(operator: Operator) -> str:
    def logged() -> str | None:
        if not operator.alive():
            raise AssertionError(f"the operator exited:\n{operator.log_tail()}")
        found = RECEIVERS_AT.search(operator.log_path.read_text(errors="replace"))
        return found.group(1) if found else None

    return wait_for("the operator's receivers endpoint", logged, timeout=60)


def post(url: str, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "User-Agent": "Alertmanager/0.28.1"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}"), response.headers
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}"), err.headers


FIRING = {
    "version": "4",
    "status": "firing",
    "receiver": "nodecluster",
    "groupKey": '{}:{alertname="QueueBacklog"}',
    "alerts": [{"status": "firing", "labels": {"alertname": "QueueBacklog"}}],
}


def test_an_alert_scales_a_cluster_through_its_receiver_and_a_bad_token_is_refused(
    scenario: Scenario, kube: Kube, receivers_operator: Operator
) -> None:
    ns = scenario.ns
    token = secrets.token_hex(16)
    scenario.make_provider()
    # Empty, so never scaled: not within the cooldown, which counts from the last scale.
    scenario.make_cluster(targetNodes=0, minNodes=0, policies={"scaling": {"cooldownSeconds": 600}})
    scenario.wait_converged(0)
    secret = ["secret", "generic", "workers-scale-out", f"--from-literal=token={token}"]
    kube.kubectl("create", *secret, "-n", ns)
    receiver = yaml.safe_load((SAMPLES / "receivers" / "receiver-scale-out.yaml").read_text())
    receiver["metadata"]["namespace"] = ns

    # The API server refuses parameters that do not fit the action, naming the field.
    wrong = json.loads(json.dumps(receiver))
    wrong["spec"]["action"] = "Check"
    refused = kube.apply(wrong, check=False)
    assert refused.returncode != 0
    assert "spec.count" in refused.stderr and "ScaleOut and ScaleIn only" in refused.stderr

    kube.apply(receiver)
    wait_for(
        "the receiver Ready",
        lambda: (
            kube.condition("nodeclusterreceiver", "workers-scale-out", "Ready", ns).get("status")
            == "True"
        ),
        timeout=60,
    )
    url = f"http://{receivers_address(receivers_operator)}/receivers/{ns}/workers-scale-out"

    status, answer, _ = post(url, "not-" + token, FIRING)
    assert (status, answer) == (401, {"error": "unauthorized"})
    labels = {"namespace": ns, "receiver": "workers-scale-out"}
    assert receivers_operator.sample(
        "nodecluster_receiver_requests_total", outcome="unauthorized", **labels
    ) == 1  # fmt: skip

    status, answer, _ = post(url, token, FIRING)
    assert status == 202, answer
    name = answer["operation"]
    op = kube.get("nodeclusteroperation", name, ns) or {}
    assert op["spec"] == {"clusterName": "workers", "action": "ScaleOut", "count": 2}
    annotations = op["metadata"]["annotations"]
    assert annotations["nodecluster.io/caller-user-agent"] == "Alertmanager/0.28.1"
    assert annotations["nodecluster.io/alertmanager-group-key"] == FIRING["groupKey"]
    wait_for(
        f"operation {name} Succeeded",
        lambda: (kube.status("nodeclusteroperation", name, ns)).get("phase") == "Succeeded",
        timeout=90,
    )
    scenario.wait_converged(2)

    # Alertmanager resends while the alert fires: within the cooldown, nothing more.
    status, _, headers = post(url, token, FIRING)
    assert status == 429 and 0 < int(headers["Retry-After"]) <= 600
    assert len(kube.items("nodeclusteroperation", ns)) == 1
    recorded = kube.status("nodeclusterreceiver", "workers-scale-out", ns)
    assert recorded["lastTriggered"]["operation"] == name
    assert recorded["counts"] == {"triggered": 1, "rateLimited": 1, "resolved": 0}
    assert receivers_operator.sample(
        "nodecluster_receiver_requests_total", outcome="triggered", **labels
    ) == 1  # fmt: skip
    shown = kube.kubectl("get", "events,nco,ncr", "-n", ns, "-o", "json").stdout
    assert token not in shown and token not in receivers_operator.log_path.read_text()
