"""The chart's monitoring: the metrics endpoint's port and flag, the metrics Service, the
ServiceMonitor, the Grafana dashboard ConfigMap and the PrometheusRule.

Everything but the endpoint is off by default (each needs something the cluster may not
have: the Prometheus Operator's CRDs, Grafana's sidecar). The rules are checked by
promtool as Prometheus will load them, and unit-tested (tests/prometheus/alerts.test.yaml:
each alert fires on its series after its `for`, and not on the others). The dashboard's
queries are parsed by promtool too, and no panel or rule may use a metric the operator does
not promise (tests/metric_names.txt; the e2e test_metrics_names.py checks a live scrape).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import chart
import monitoring

HELM = chart.find_helm()
PROMTOOL_TESTS = chart.ROOT / "tests" / "prometheus" / "alerts.test.yaml"
ALL_ON = (
    "--set", "metrics.service.enabled=true",
    "--set", "metrics.serviceMonitor.enabled=true",
    "--set", "metrics.dashboard.enabled=true",
    "--set", "metrics.prometheusRule.enabled=true",
)  # fmt: skip
ALERTS = {
    "NodeClusterStalled",
    "NodeClusterDegraded",
    "NodeClusterRemediationThrottled",
    "NodeClusterQuotaExceeded",
    "NodeClusterCostLimitExceeded",
    "NodeProviderQuotaReached",
    "NodeProviderCostLimitReached",
    "NodeProviderErrorRateHigh",
    "NodeClusterOperatorDown",
    "NodeClusterOperatorNoLeader",
}


def render(*values: str) -> list[dict[str, Any]]:
    assert HELM is not None
    text = chart.render(HELM, *values, release="nc", namespace="ops", include_crds=False)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = of_kind(docs, "Deployment")
    found: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return found


def rule_groups(*values: str) -> list[dict[str, Any]]:
    [rule] = of_kind(render(*ALL_ON, *values), "PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = chart.find_tool("promtool")
    assert binary is not None
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False, cwd=cwd)


@pytest.mark.needs_tool("helm")
def test_the_endpoint_is_served_and_nothing_else_is_rendered_by_default() -> None:
    docs = render()

    c = container(docs)
    assert c["args"][3:5] == ["--metrics-address", "0.0.0.0:8081"]
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in c["ports"]
    assert {d["kind"] for d in docs} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",  # the leader Lease's
        "RoleBinding",
        "Deployment",
        "PodDisruptionBudget",
    }

    off = render("--set", "metrics.enabled=false", "--set", "metrics.port=9000")
    assert "--metrics-address" not in container(off)["args"]
    assert [p["name"] for p in container(off)["ports"]] == ["health"]


@pytest.mark.needs_tool("helm")
def test_the_service_monitor_scrapes_the_metrics_service_and_only_it() -> None:
    docs = render(*ALL_ON, "--set", "metrics.port=9100", "--set", "metrics.service.port=9200",
                  "--set", "metrics.serviceMonitor.labels.release=kube-prometheus",
                  "--set", "metrics.serviceMonitor.interval=")  # fmt: skip

    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    assert set(services) == {"nc-nodecluster-operator-metrics"}  # service.enabled is false
    service = services["nc-nodecluster-operator-metrics"]
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9200, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "nodecluster-operator",
        "app.kubernetes.io/instance": "nc",
    }
    assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in container(docs)["ports"]

    [monitor] = of_kind(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    # The health Service has the same app labels: the selector must not pick it up.
    health = render("--set", "service.enabled=true")
    [health_service] = of_kind(health, "Service")
    assert not selector.items() <= health_service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "honorLabels": True, "scrapeTimeout": "10s"}
    ]


@pytest.mark.needs_tool("helm")
@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (["--set", "metrics.serviceMonitor.enabled=true"], "needs metrics.service.enabled"),
        (
            ["--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.enabled=false"],
            "needs metrics.enabled",
        ),
        (["--set", "metrics.prometheusRule.stalledFor=15 minutes"], "stalledFor"),
        (["--set-json", "metrics.prometheusRule.providerErrorRatio=2"], "providerErrorRatio"),
        (["--set", "metrics.serviceMonitor.unknown=1"], "unknown"),
        (["--set", "metrics.dashboard.namespace=Not_A_Namespace"], "namespace"),
    ],
)
def test_monitoring_values_that_cannot_work_are_refused(values: list[str], complaint: str) -> None:
    with pytest.raises(RuntimeError, match=complaint):
        render(*values)


@pytest.mark.needs_tool("helm")
def test_the_dashboard_configmap_carries_the_chart_file_and_the_sidecar_label() -> None:
    [configmap] = of_kind(render(*ALL_ON), "ConfigMap")
    assert configmap["metadata"]["namespace"] == "ops"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(configmap["data"]["nodecluster-operator.json"])
    assert shipped == monitoring.load_dashboard()

    elsewhere = render(*ALL_ON, "--set", "metrics.dashboard.namespace=grafana",
                       "--set", "metrics.dashboard.label=dashboards",
                       "--set", "metrics.dashboard.labelValue=nodeclusters")  # fmt: skip
    [configmap] = of_kind(elsewhere, "ConfigMap")
    assert configmap["metadata"]["namespace"] == "grafana"
    assert configmap["metadata"]["labels"]["dashboards"] == "nodeclusters"
    assert "grafana_dashboard" not in configmap["metadata"]["labels"]


def test_the_dashboard_has_its_variables_and_a_query_in_every_panel() -> None:
    dashboard = monitoring.load_dashboard()

    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "namespace", "cluster", "provider"}
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels and all(p.get("targets") for p in panels)
    assert all(t["datasource"]["uid"] == "${datasource}" for p in panels for t in p["targets"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_dashboard_and_the_rules_use_only_metrics_the_operator_promises() -> None:
    promised = monitoring.contract_names()
    dashboard = {
        monitoring.family(n) for n in monitoring.dashboard_metrics(monitoring.load_dashboard())
    }
    assert dashboard - promised == set()
    # Every promised family is on the dashboard: none is exported for nobody.
    assert promised - dashboard == set()


@pytest.mark.needs_tool("helm")
def test_the_rules_use_only_metrics_the_operator_promises() -> None:
    used = {monitoring.family(n) for n in monitoring.rule_metrics(rule_groups())}
    assert used - monitoring.contract_names() == monitoring.PROMETHEUS_OWN


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le, kind) (rate(a_bucket{k=~"$x|y"}[$__rate_interval]))', {"a_bucket"}),
        ('label_replace(a >= b, "resource", "nodes", "", "") or c', {"a", "b", "c"}),
        ('x and on (namespace, cluster) max by (namespace) (y{type="by"}) == 1', {"x", "y"}),
        ("count(m) or vector(0)", {"m"}),
        ("histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m]))) > 1e3", {"h_bucket"}),
        ('absent(up{job="j"} == 1)', {"up"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert monitoring.metric_names(expr) == names


@pytest.mark.needs_tool("helm", "promtool")
def test_promtool_accepts_the_rules_and_their_unit_tests_pass(tmp_path: Path) -> None:
    groups = rule_groups()
    assert {r["alert"] for g in groups for r in g["rules"]} == ALERTS
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))

    checked = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout

    shutil.copyfile(PROMTOOL_TESTS, tmp_path / PROMTOOL_TESTS.name)
    tested = promtool("test", "rules", PROMTOOL_TESTS.name, cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@pytest.mark.needs_tool("helm")
def test_thresholds_and_labels_come_from_values() -> None:
    groups = rule_groups(
        "--set", "metrics.prometheusRule.stalledFor=1h",
        "--set-json", "metrics.prometheusRule.providerErrorRatio=0.25",
        "--set", "metrics.prometheusRule.rateWindow=10m",
        "--set", "metrics.prometheusRule.alertLabels.team=platform",
        "--set", "metrics.prometheusRule.job=operator",
    )  # fmt: skip
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    assert rules["NodeClusterStalled"]["for"] == "1h"
    assert rules["NodeProviderErrorRateHigh"]["expr"].endswith("> 0.25")
    assert "[10m]" in rules["NodeProviderErrorRateHigh"]["expr"]
    assert 'up{job="operator", namespace="ops"}' in rules["NodeClusterOperatorDown"]["expr"]
    assert all(r["labels"]["team"] == "platform" for r in rules.values())
    # An operator switched off is not "down".
    off = rule_groups("--set", "replicaCount=0")
    assert {"NodeClusterOperatorDown", "NodeClusterOperatorNoLeader"}.isdisjoint(
        {r["alert"] for g in off for r in g["rules"]}
    )
    # One replica without election always acts: no replica to stand by, nothing to lead.
    alone = rule_groups("--set", "replicaCount=1", "--set", "leaderElection.enabled=false")
    assert "NodeClusterOperatorNoLeader" not in {r["alert"] for g in alone for r in g["rules"]}


@pytest.mark.needs_tool("promtool")
def test_promtool_parses_every_query_of_the_dashboard(tmp_path: Path) -> None:
    # promtool has no dashboard checker: each query becomes a recording rule, which
    # `check rules` parses as PromQL (Grafana's variables replaced by values of their type).
    queries = list(monitoring.dashboard_queries(monitoring.load_dashboard()))
    records = [
        {"record": f"dashboard:query_{i}", "expr": monitoring.as_promql(q)}
        for i, q in enumerate(queries)
    ]
    (tmp_path / "dashboard.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]})
    )

    checked = promtool("check", "rules", "--lint=none", "dashboard.yaml", cwd=tmp_path)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(queries)} rules found" in checked.stdout
