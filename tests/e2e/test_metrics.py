"""The metrics endpoint of the real operator process, scraped while a cluster converges, while
its provider fails, once it recovers and after it is deleted: each family moves as the
cluster does (controllers/metrics.py)."""

from __future__ import annotations

from collections.abc import Callable

from kube import Kube, Operator, wait_for
from scenario import Scenario


def test_the_metrics_follow_a_cluster_that_converges_fails_recovers_and_goes(
    scenario: Scenario, kube: Kube, operator: Operator
) -> None:
    ns, provider = scenario.ns, scenario.provider
    cluster = {"namespace": ns, "cluster": "workers"}

    def scraped(family: str, **labels: str) -> Callable[[], bool]:
        """Whether a scrape shows the series at all (with any value)."""
        return lambda: operator.sample(family, **labels) is not None

    def equals(family: str, expected: float, **labels: str) -> Callable[[], bool]:
        return lambda: operator.sample(family, **labels) == expected

    np = scenario.make_provider(createLatencySeconds=1)
    scenario.make_cluster(targetNodes=2)

    # Converging: the gauges reach the target; creates and startups are counted.
    wait_for("2 ready nodes in the metrics", equals("nodecluster_ready_nodes", 2, **cluster))
    deployed = equals("nodecluster_state", 1, state="Deployed", **cluster)
    wait_for("Deployed in the state set", deployed)
    assert operator.sample("nodecluster_state", state="Deploying", **cluster) == 0
    assert operator.sample("nodecluster_info", provider=provider, **cluster) == 1
    assert operator.sample("nodecluster_target_nodes", **cluster) == 2
    assert operator.sample("nodecluster_machines_created_total", reason="ScaleOut", **cluster) == 2
    startups = operator.sample(
        "nodecluster_machine_startup_duration_seconds_count", provider=provider
    )
    assert startups == 2
    creates = operator.sample(
        "nodecluster_provider_call_duration_seconds_count", provider=provider, call="create"
    )
    assert creates is not None and creates >= 2
    wait_for("the provider's usage", equals("nodeprovider_nodes", 2, provider=provider))
    assert operator.sample("nodeprovider_nodes_limit", provider=provider) == 200
    assert operator.sample("nodeprovider_ready", provider=provider) == 1
    retries_before = operator.sample("workqueue_retries_total", name="ClusterNode") or 0

    # Failing: every provider call fails; the new nodes' failures and the cluster's
    # Degraded condition show.
    np["spec"]["config"]["failureRate"] = 1.0
    kube.apply(np)
    scenario.patch_spec(targetNodes=4)
    wait_for(
        "failed creates counted by error class",
        scraped(
            "nodecluster_provider_call_errors_total",
            provider=provider,
            call="create",
            error="Retryable",
        ),
    )
    wait_for(
        "the failures counted on the cluster",
        scraped("nodecluster_machines_failed_total", reason="ProviderUnavailable", **cluster),
    )
    wait_for(
        "Degraded in the conditions",
        equals(
            "nodecluster_condition",
            1,
            type="Degraded",
            status="True",
            reason="ProviderUnavailable",
            **cluster,
        ),
        timeout=90,
    )
    retries = operator.sample("workqueue_retries_total", name="ClusterNode")
    assert retries is not None and retries > retries_before
    assert operator.sample("nodecluster_target_nodes", **cluster) == 4
    assert operator.sample("nodecluster_ready_nodes", **cluster) == 2

    # Recovering: the provider answers again and the cluster converges at its new size.
    np["spec"]["config"]["failureRate"] = 0.0
    kube.apply(np)
    wait_for(
        "4 ready nodes in the metrics",
        equals("nodecluster_ready_nodes", 4, **cluster),
        timeout=120,
    )
    wait_for("Deployed again", deployed)
    assert (
        operator.sample(
            "nodecluster_condition",
            type="Degraded",
            status="True",
            reason="ProviderUnavailable",
            **cluster,
        )
        is None
    )

    # Gone: no series of the cluster is left.
    kube.kubectl("delete", "nodecluster", "workers", "-n", ns, "--timeout=90s")
    wait_for(
        "the cluster's series gone",
        lambda: not any(dict(labels).get("namespace") == ns for _, labels in operator.scrape()),
    )
