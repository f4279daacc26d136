"""`nodecluster-operator usage`: what NodeClusters have used and cost, as a table.

What Azure CycleCloud's usage API answers, read from the NodeClusters' `status.usage`:
per cluster, zone and machine type, the machines billing now, machine-hours, core-hours
and estimated cost for the current month (or since creation), and the totals. The
status holds the figures accrued up to `usage.asOf` with the rate in force since
(planning/usage.py); this brings each up to now, so the table is exact without the
operator rewriting statuses to keep it so.

Reads only (one list of NodeClusters), through the operator's own API client, and never
loads kopf: it runs on a laptop with a kubeconfig, like kubectl.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from nodecluster.api.nodecluster import NodeCluster
from nodecluster.controllers.kubeapi import NODECLUSTERS, KubeApi
from nodecluster.planning.usage import brought_up_to, month_of

Period = Literal["month", "total"]


@dataclass(frozen=True)
class UsageRow:
    """One cluster, zone and machine type (or the totals: no cluster)."""

    namespace: str
    cluster: str
    provider: str
    zone: str
    machine_type: str
    machines: int
    machine_hours: float
    core_hours: float
    cost: float


def usage_rows(
    bodies: Iterable[dict[str, Any]], now: datetime, period: Period, provider: str | None = None
) -> list[UsageRow]:
    """The rows of the table, by namespace, cluster, machine type and zone, brought up to
    `now` (clusters that never held a billable machine have none)."""
    rows: list[UsageRow] = []
    for body in bodies:
        nc = NodeCluster.model_validate(body)
        if provider is not None and nc.spec.provider_ref.name != provider:
            continue
        if nc.status.usage is None:
            continue
        usage = brought_up_to(nc.status.usage, now)
        for b in usage.buckets:
            figures = b.current_month if period == "month" else b.total
            if not b.machines and not figures.machine_hours:
                continue  # nothing this month from a bucket left earlier
            rows.append(
                UsageRow(
                    namespace=nc.metadata.namespace or "",
                    cluster=nc.metadata.name,
                    provider=nc.spec.provider_ref.name,
                    zone=b.zone or "-",
                    machine_type=b.machine_type,
                    machines=b.machines,
                    machine_hours=round(figures.machine_hours, 4),
                    core_hours=round(figures.core_hours, 4),
                    cost=round(figures.cost, 4),
                )
            )
    rows.sort(key=lambda r: (r.namespace, r.cluster, r.machine_type, r.zone))
    return rows


def total_of(rows: Iterable[UsageRow]) -> UsageRow:
    """The totals row."""
    rows = list(rows)
    return UsageRow(
        namespace="TOTAL",
        cluster="",
        provider="",
        zone="",
        machine_type="",
        machines=sum(r.machines for r in rows),
        machine_hours=round(sum(r.machine_hours for r in rows), 4),
        core_hours=round(sum(r.core_hours for r in rows), 4),
        cost=round(sum(r.cost for r in rows), 4),
    )


HEADERS = ("NAMESPACE", "CLUSTER", "PROVIDER", "ZONE", "MACHINE-TYPE", "MACHINES")


def render_table(rows: list[UsageRow], period: Period, now: datetime) -> str:
    """The rows and their total as a kubectl-like table."""
    label = month_of(now) if period == "month" else "since creation"
    headers = (*HEADERS, "MACHINE-HOURS", "CORE-HOURS", "COST")
    cells = [
        (
            r.namespace,
            r.cluster,
            r.provider,
            r.zone,
            r.machine_type,
            str(r.machines),
            f"{r.machine_hours:.2f}",
            f"{r.core_hours:.2f}",
            f"{r.cost:.2f}",
        )
        for r in [*rows, total_of(rows)]
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    numeric = {5, 6, 7, 8}

    def line(values: tuple[str, ...]) -> str:
        return "   ".join(
            v.rjust(w) if i in numeric else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    out = [f"Usage {label}, up to {now.strftime('%Y-%m-%dT%H:%M:%SZ')}:", line(headers)]
    out += [line(c) for c in cells]
    return "\n".join(out) + "\n"


def render_json(rows: list[UsageRow], period: Period, now: datetime) -> str:
    """The rows and their total as JSON (camelCase keys, as the API's)."""

    def camel(row: UsageRow) -> dict[str, Any]:
        return {
            "".join(p if i == 0 else p.title() for i, p in enumerate(k.split("_"))): v
            for k, v in asdict(row).items()
        }

    document = {
        "period": month_of(now) if period == "month" else "total",
        "asOf": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rows": [camel(r) for r in rows],
        "total": {
            k: v for k, v in camel(total_of(rows)).items() if k.startswith(("mach", "core", "cost"))
        },
    }
    return json.dumps(document, indent=2) + "\n"


def context_namespace(kubeconfig: str | None) -> str:
    """The namespace of the kubeconfig's current context, as kubectl picks it ("default"
    when it names none, or outside a kubeconfig)."""
    from kubernetes_asyncio import config as k8s_config

    try:
        _, current = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
    except (k8s_config.ConfigException, OSError, TypeError):
        return "default"
    namespace = (current or {}).get("context", {}).get("namespace")
    return str(namespace) if namespace else "default"


async def run_usage(
    kubeconfig: str | None,
    namespace: str | None,
    period: Period,
    output: Literal["table", "json"],
    provider: str | None,
) -> str:
    """Connect like kubectl (the kubeconfig, else in-cluster), report, close."""
    from nodecluster.controllers.kube import KubeClient

    client = await KubeClient.connect(max_connections=4, kubeconfig=kubeconfig)
    try:
        return await usage_report(client, namespace, period, output, provider)
    finally:
        await client.close()


async def usage_report(
    api: KubeApi,
    namespace: str | None,
    period: Period,
    output: Literal["table", "json"],
    provider: str | None = None,
    now: datetime | None = None,
) -> str:
    """The report of the NodeClusters of `namespace` (None: all) as text."""
    when = (now or datetime.now(UTC)).replace(microsecond=0)
    rows = usage_rows(await api.list(NODECLUSTERS, namespace), when, period, provider)
    render = render_table if output == "table" else render_json
    return render(rows, period, when)
