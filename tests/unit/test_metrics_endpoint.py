"""The metrics endpoint and its parts: served in the text format by prometheus_client's own
server, every family of the contract present, bad addresses refused with a clear error,
provider calls told to the observer by error class, summaries small and shared."""

from __future__ import annotations

import asyncio
import gzip
import re
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nodecluster.api.common import Condition
from nodecluster.api.nodecluster import NodeClusterStatus
from nodecluster.cli import main
from nodecluster.controllers.metrics import (
    Metrics,
    MetricsServer,
    ProviderSummary,
    error_class,
    parse_address,
    serve,
    summarize,
)
from nodecluster.providers.base import (
    Machine,
    MachineSpec,
    NotFound,
    ProviderError,
    QuotaExceeded,
    Retryable,
)
from nodecluster.providers.deadline import with_deadline

CONTRACT = {
    "nodecluster_info": "gauge",
    "nodecluster_target_nodes": "gauge",
    "nodecluster_current_nodes": "gauge",
    "nodecluster_ready_nodes": "gauge",
    "nodecluster_stopped_nodes": "gauge",
    "nodecluster_warm_nodes": "gauge",
    "nodecluster_unhealthy_nodes": "gauge",
    "nodecluster_updated_nodes": "gauge",
    "nodecluster_state": "gauge",
    "nodecluster_condition": "gauge",
    "nodecluster_machines_created": "counter",
    "nodecluster_machines_deleted": "counter",
    "nodecluster_machines_remediated": "counter",
    "nodecluster_machines_failed": "counter",
    "nodecluster_machine_startup_duration_seconds": "histogram",
    "nodecluster_reconcile_duration_seconds": "histogram",
    "nodecluster_reconcile_errors": "counter",
    "nodecluster_provider_call_duration_seconds": "histogram",
    "nodecluster_provider_call_errors": "counter",
    "workqueue_depth": "gauge",
    "workqueue_adds": "counter",
    "workqueue_retries": "counter",
    "nodeprovider_nodes": "gauge",
    "nodeprovider_nodes_limit": "gauge",
    "nodeprovider_cores": "gauge",
    "nodeprovider_cores_limit": "gauge",
    "nodeprovider_ready": "gauge",
    "nodeprovider_hourly_cost": "gauge",
    "nodeprovider_hourly_cost_limit": "gauge",
    "nodecluster_hourly_cost": "gauge",
    "nodecluster_machine_hours": "counter",
    "nodecluster_core_hours": "counter",
    "nodecluster_cost": "counter",
    "nodecluster_month_cost": "gauge",
    "nodecluster_leader": "gauge",
    "nodecluster_receiver_requests": "counter",
}
"""Every family of the metrics contract and its type (counters by the name the text
format's TYPE line gives them: without `_total`)."""

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def deployed(current: int = 3) -> NodeClusterStatus:
    return NodeClusterStatus(
        state="Deployed",
        current_nodes=current,
        ready_nodes=current,
        updated_nodes=current,
        conditions=[
            Condition(type="Ready", status="True", reason="Converged", last_transition_time=NOW),
            Condition(type="Stalled", status="False", reason="Progressing"),
        ],
    )


@pytest.fixture
def served() -> Iterator[tuple[Metrics, MetricsServer]]:
    metrics = Metrics()
    server = serve(metrics, "127.0.0.1:0")
    try:
        yield metrics, server
    finally:
        server.close()


def scrape(server: MetricsServer, gzipped: bool = False) -> str:
    request = urllib.request.Request(f"http://{server.address}/metrics")
    if gzipped:
        request.add_header("Accept-Encoding", "gzip")
    with urllib.request.urlopen(request, timeout=10) as response:
        raw: bytes = response.read()
        if gzipped:
            assert response.headers["Content-Encoding"] == "gzip"
            raw = gzip.decompress(raw)
    return raw.decode()


def test_the_endpoint_serves_every_family_of_the_contract_in_the_text_format(
    served: tuple[Metrics, MetricsServer],
) -> None:
    metrics, server = served
    metrics.cluster_seen(("team-a", "web"), summarize("sim", 3, deployed()))
    metrics.machine_event(("team-a", "web"), "created", "ScaleOut", 3)
    metrics.provider_seen("sim", ProviderSummary(3, 10, 6, None, ready=True))
    metrics.reconciled("NodeCluster", 0.01, failed=True)
    metrics.provider_call("sim", "create", 0.2, Retryable("later"))
    metrics.machine_started("sim", 12.0)

    families = {f.name: f for f in text_string_to_metric_families(scrape(server))}

    assert {name: families[name].type for name in CONTRACT if name in families} == CONTRACT
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    web = (("cluster", "web"), ("namespace", "team-a"))
    assert samples[("nodecluster_ready_nodes", web)] == 3
    assert samples[("nodecluster_state", (*web, ("state", "Deployed")))] == 1
    assert samples[("nodecluster_state", (*web, ("state", "Deploying")))] == 0
    assert samples[("nodecluster_machines_created_total", (*web, ("reason", "ScaleOut")))] == 3
    assert samples[("nodeprovider_nodes_limit", (("provider", "sim"),))] == 10
    assert ("nodeprovider_cores_limit", (("provider", "sim"),)) not in samples
    errors = (("call", "create"), ("error", "Retryable"), ("provider", "sim"))
    assert samples[("nodecluster_provider_call_errors_total", errors)] == 1
    # prometheus_client's own exposition: gzip when asked for it.
    assert "nodecluster_ready_nodes" in scrape(server, gzipped=True)


def test_a_cluster_let_go_leaves_the_scrape(served: tuple[Metrics, MetricsServer]) -> None:
    metrics, server = served
    metrics.cluster_seen(("team-a", "web"), summarize("sim", 3, deployed()))
    metrics.machine_event(("team-a", "web"), "deleted", "ScaleIn")
    assert 'cluster="web"' in scrape(server)

    metrics.drop_cluster(("team-a", "web"))

    assert 'cluster="web"' not in scrape(server)


def test_every_state_is_a_series_of_the_state_set() -> None:
    metrics = Metrics()
    metrics.cluster_seen(("team-a", "web"), summarize("sim", 3, deployed()))
    labels = {"namespace": "team-a", "cluster": "web"}

    assert metrics.sample("nodecluster_state", {**labels, "state": "Deployed"}) == 1
    for other in ("Init", "Deploying", "Error", "Terminated"):
        assert metrics.sample("nodecluster_state", {**labels, "state": other}) == 0


def test_summaries_share_their_conditions_and_hold_no_models() -> None:
    one = summarize("sim", 3, deployed())
    other = summarize("sim", 5, deployed(current=5))

    assert one.conditions is other.conditions  # one tuple for every cluster so conditioned
    assert one.provider is other.provider
    assert all(isinstance(v, int | str | tuple | None) for v in one)  # usage: a tuple or None


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("0.0.0.0:8080", ("0.0.0.0", 8080)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::]:9090", ("::", 9090)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_metrics_addresses_are_host_and_port(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["8080", ":8080", "host:", "host:http", "host:70000"])
def test_a_bad_metrics_address_is_refused_saying_what_is_expected(address: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT|port must be a number"):
        parse_address(address)


def test_run_refuses_a_bad_metrics_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--metrics-address", "8080"])
    assert exited.value.code == 2
    assert "expected HOST:PORT" in capsys.readouterr().err


def test_run_refuses_a_bad_metrics_address_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NODECLUSTER_METRICS_ADDRESS", "nowhere")
    with pytest.raises(SystemExit, match="NODECLUSTER_METRICS_ADDRESS: 'nowhere'"):
        main(["run"])


def test_an_address_in_use_is_a_clear_error(served: tuple[Metrics, MetricsServer]) -> None:
    _, server = served
    with pytest.raises(SystemExit, match="cannot serve metrics at"):
        serve(Metrics(), server.address)


class DriversOwn(QuotaExceeded):
    """A driver's own error, derived from the vocabulary."""


@pytest.mark.parametrize(
    ("error", "label"),
    [
        (NotFound("gone"), "NotFound"),
        (Retryable("later"), "Retryable"),
        (DriversOwn("account quota"), "QuotaExceeded"),
        (ProviderError("odd"), "ProviderError"),
        (TimeoutError(), "Timeout"),
        (ValueError("a driver bug"), "Unexpected"),
    ],
)
def test_provider_errors_are_counted_by_their_class_in_the_vocabulary(
    error: BaseException, label: str
) -> None:
    assert error_class(error) == label


class ScriptedDriver:
    """Answers get, fails delete with NotFound, never answers list."""

    async def create(self, spec: MachineSpec) -> Machine:
        raise NotImplementedError

    async def delete(self, name: str) -> None:
        raise NotFound(name)

    async def get(self, name: str) -> Machine:
        return Machine(
            name=name,
            provider_id=f"fake://{name}",
            cluster="ns/c",
            state="Running",
            machine_type="small",
            zone=None,
            cores=1,
            created_at=NOW,
        )

    async def list(self, cluster: str | None = None) -> list[Machine]:
        await asyncio.Event().wait()
        return []

    async def close(self) -> None:
        return None


async def test_the_deadline_wrapper_tells_the_observer_of_every_call() -> None:
    told: list[tuple[str, str, str | None]] = []

    def observer(provider: str, call: str, seconds: float, error: BaseException | None) -> None:
        assert seconds >= 0
        told.append((provider, call, None if error is None else error_class(error)))

    driver = with_deadline(ScriptedDriver(), 0.05, "sim", observer)
    await driver.get("m1")
    with pytest.raises(NotFound):
        await driver.delete("m1")
    with pytest.raises(Retryable, match="list all did not answer"):
        await driver.list()

    assert told == [("sim", "get", None), ("sim", "delete", "NotFound"), ("sim", "list", "Timeout")]


README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_tables_every_family_served_and_no_other() -> None:
    section = README.read_text().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))
    served = {f"{name}_total" if kind == "counter" else name for name, kind in CONTRACT.items()}

    assert documented == served


def test_cost_families_bring_status_usage_up_to_the_scrape_and_standbys_say_so() -> None:
    """The cost families read status.usage (refreshed hourly) and add what the machines
    have cost since its asOf, so a scrape between two refreshes is not an hour stale; a
    standby exports nodecluster_leader 0."""
    import time as _time

    from nodecluster.api.usage import ClusterUsage

    metrics = Metrics()
    an_hour_ago = datetime.fromtimestamp(_time.time() - 3600, tz=UTC)
    usage = ClusterUsage.model_validate(
        {
            "asOf": an_hour_ago.isoformat(),
            "hourlyCost": 0.5,
            "machines": 2,
            "cores": 4,
            "month": an_hour_ago.strftime("%Y-%m"),
            "currentMonth": {"machineHours": 10, "coreHours": 20, "cost": 2.5},
            "total": {"machineHours": 100, "coreHours": 200, "cost": 25},
        }
    )
    status = deployed().model_copy(update={"usage": usage})
    metrics.cluster_seen(("team-a", "web"), summarize("sim", 3, status))
    metrics.cluster_seen(("team-a", "idle"), summarize("sim", 0, deployed(0)))
    metrics.leading = False

    families = {f.name: f for f in metrics.registry.collect()}
    value = {
        (s.name, s.labels.get("cluster")): s.value for f in families.values() for s in f.samples
    }
    assert value[("nodecluster_hourly_cost", "web")] == 0.5
    assert value[("nodecluster_machine_hours_total", "web")] == pytest.approx(102, abs=0.01)
    assert value[("nodecluster_core_hours_total", "web")] == pytest.approx(204, abs=0.01)
    assert value[("nodecluster_cost_total", "web")] == pytest.approx(25.5, abs=0.01)
    month = value[("nodecluster_month_cost", "web")]
    assert month == pytest.approx(3.0, abs=0.01) or month < 0.5  # (a month began meanwhile)
    assert ("nodecluster_cost_total", "idle") not in value  # billed nothing: no series
    assert value[("nodecluster_leader", None)] == 0
