"""Every metric the chart's dashboard and alert rules query exists in a live scrape of the
operator.

Prometheus and Grafana accept a query on a metric nobody exports: the panel stays empty
and the alert never fires, silently. The unit tests hold the dashboard and the rules to
the promised names (tests/metric_names.txt); this test holds the running operator to what
they use, after a cluster has converged on a provider with every limit set (a _limit gauge
exists only for a limit that is set).
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kube import Kube, Operator, Timeout, wait_for
from scenario import Scenario

import chart
import monitoring


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _scrape(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            text: str = answer.read().decode()
            return text
    except (urllib.error.URLError, ConnectionError):
        return None


@pytest.fixture
def metrics_url(kube: Kube, operator: Operator) -> Iterator[str]:
    """The operator serving metrics on a local port, in place of the session's for one test
    (never two operators at once: both would act on every cluster)."""
    url = f"http://127.0.0.1:{_free_port()}/metrics"
    address = url.removeprefix("http://").removesuffix("/metrics")
    serving = Operator(kube, operator.workdir, extra_args=["--metrics-address", address])
    operator.stop()
    serving.start()

    def answering() -> str | None:
        assert serving.alive(), f"the operator exited:\n{serving.log_tail()}"
        return _scrape(url)

    try:
        wait_for(f"the operator's metrics at {url}", answering, timeout=60)
        yield url
    finally:
        serving.stop()
        operator.start()


def _used_names() -> set[str]:
    """The series names the dashboard and the default alert rules query."""
    helm = chart.find_helm()
    assert helm is not None, "helm not found: run tools/build-control-plane"
    rendered = chart.render(
        helm, "--set", "metrics.prometheusRule.enabled=true", include_crds=False
    )
    [rule] = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "PrometheusRule"]
    names = monitoring.rule_metrics(rule["spec"]["groups"])
    names |= monitoring.dashboard_metrics(monitoring.load_dashboard())
    return names - monitoring.PROMETHEUS_OWN


def test_every_metric_of_the_dashboard_and_the_alerts_is_exported(
    metrics_url: str, scenario: Scenario
) -> None:
    used = _used_names()
    assert "nodecluster_machine_startup_duration_seconds_bucket" in used  # the parser's sanity
    buckets: list[dict[str, Any]] = [
        {"zone": zone, "machineType": "small", "cores": 2, "memoryMib": 4096, "hourlyCost": 0.25}
        for zone in ("zone-a", "zone-b", "zone-c")
    ]
    quotas = {"maxNodes": 200, "maxCores": 400, "maxHourlyCost": 100}
    scenario.make_provider({"quotas": quotas, "buckets": buckets}, createLatencySeconds=0)
    scenario.make_cluster(targetNodes=2)
    scenario.wait_converged(2)

    missing: list[set[str]] = [set()]

    def all_exported() -> bool:
        text = _scrape(metrics_url)
        if text is None:
            return False
        missing[0] = used - monitoring.exposed_series_names(text)
        return not missing[0]

    try:
        wait_for("every metric the dashboard and the alerts use", all_exported, timeout=60)
    except Timeout as err:
        raise Timeout(f"{err}; not exported: {sorted(missing[0])}") from None
