"""Secrets never appear in specs, logs, Events or status: the provider's credentials are
read from a Secret the NodeProvider only references, and go nowhere else."""

from __future__ import annotations

import json
import secrets

from kube import Kube, Operator
from scenario import Scenario


def test_credentials_reach_the_driver_but_nothing_else(
    scenario: Scenario, kube: Kube, operator: Operator
) -> None:
    sentinel = f"sentinel-{secrets.token_hex(8)}"
    kube.kubectl(
        "create",
        "secret",
        "generic",
        "sim-credentials",
        "-n",
        scenario.ns,
        f"--from-literal=apiKey={sentinel}",
    )
    np = scenario.make_provider(requireCredentials=["apiKey"])
    np["spec"]["credentialsSecretRef"] = {"name": "sim-credentials", "namespace": scenario.ns}
    kube.apply(np)
    scenario.make_cluster(targetNodes=2)
    scenario.wait_converged(2)  # the driver demands the key: it got the Secret's data

    everything = [
        kube.kubectl("get", "nodeprovider", scenario.provider, "-o", "json").stdout,
        kube.kubectl("get", "nodeclusters,clusternodes", "-n", scenario.ns, "-o", "json").stdout,
        kube.kubectl("get", "events", "-A", "-o", "json").stdout,
        operator.log_path.read_text(errors="replace"),
    ]
    for text in everything:
        assert sentinel not in text
    # And the reference itself is what the spec holds.
    stored = json.loads(everything[0])["spec"]["credentialsSecretRef"]
    assert stored == {"name": "sim-credentials", "namespace": scenario.ns}
