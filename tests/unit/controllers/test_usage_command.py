"""`nodecluster-operator usage`: the table and JSON, brought up to now, from the
clusters' status.usage (usagereport.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from clusters import NS, cluster_body, state, status
from conftest import provider_body
from test_usage_status import BUCKETS, SPREAD

from nodecluster.clock import LoopClock
from nodecluster.controllers.kubeapi import NODECLUSTERS, NODEPROVIDERS
from nodecluster.testing import FakeKube, Harness
from nodecluster.usagereport import usage_report

HOUR = 3600.0


async def test_the_table_shows_each_cluster_zone_and_type_up_to_now(
    fake: FakeKube, harness: Harness, inventory: Path, clock: LoopClock
) -> None:
    fake.add(NODEPROVIDERS, provider_body(inventory, buckets=BUCKETS))
    await fake.create(NODECLUSTERS, NS, cluster_body(policies=SPREAD))
    await fake.create(NODECLUSTERS, NS, cluster_body("idle", targetNodes=0))
    await harness.wait_for(
        lambda: state(fake) == "Deployed" and status(fake).get("usage", {}).get("machines") == 3
    )
    as_of = status(fake)["usage"]["asOf"]
    await asyncio.sleep(HOUR / 2)  # no fold yet: the report adds the half hour itself
    assert status(fake)["usage"]["asOf"] == as_of

    document = json.loads(await usage_report(fake, NS, "total", "json", now=clock.now()))
    rows = document["rows"]
    assert {(r["cluster"], r["zone"], r["machineType"]) for r in rows} == {
        ("web", "zone-a", "small"),
        ("web", "zone-b", "small"),
    }
    by_zone = {r["zone"]: r for r in rows}
    machines_a, machines_b = by_zone["zone-a"]["machines"], by_zone["zone-b"]["machines"]
    assert machines_a + machines_b == 3
    total = document["total"]
    assert 1.5 <= total["machineHours"] < 1.6  # three machines, half an hour (and a bit)
    assert total["coreHours"] == round(2 * total["machineHours"], 4)
    expected = by_zone["zone-a"]["machineHours"] * 1.0 + by_zone["zone-b"]["machineHours"] * 2.0
    assert abs(total["cost"] - expected) < 1e-3

    table = await usage_report(fake, None, "month", "table", now=clock.now())
    lines = table.splitlines()
    assert lines[1].split() == [
        "NAMESPACE",
        "CLUSTER",
        "PROVIDER",
        "ZONE",
        "MACHINE-TYPE",
        "MACHINES",
        "MACHINE-HOURS",
        "CORE-HOURS",
        "COST",
    ]
    assert [line.split()[1] for line in lines[2:-1]] == ["web", "web"]
    assert lines[-1].split()[:2] == ["TOTAL", "3"]
    assert lines[-1].split()[-1] == f"{total['cost']:.2f}"

    assert "TOTAL" in await usage_report(fake, NS, "month", "table", provider="other")
    assert json.loads(await usage_report(fake, NS, "month", "json", provider="other"))["rows"] == []


def test_the_command_never_loads_kopf() -> None:
    code = (
        "import sys\n"
        "from nodecluster.cli import parser\n"
        "import nodecluster.usagereport, nodecluster.controllers.kube\n"
        "parser().parse_args(['usage', '-A', '--total', '-o', 'json'])\n"
        "assert 'kopf' not in sys.modules, 'kopf loaded'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
