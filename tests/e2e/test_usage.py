"""Usage and cost on a real API server: a cluster on the simulator with priced buckets
shows status.usage and its Month-Cost column, the usage command reads it, a deleted
cluster's hours stay with its provider, and the cost limit stalls a scale-out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from kube import Kube, wait_for
from scenario import Scenario

PRICE = 0.5
BUCKETS = [
    {"zone": zone, "machineType": "small", "cores": 2, "hourlyCost": PRICE}
    for zone in ("zone-a", "zone-b", "zone-c")
]


def _usage(sc: Scenario, name: str = "workers") -> dict[str, Any]:
    return (sc.nc(name).get("status") or {}).get("usage") or {}


def billed_for(usage: dict[str, Any], seconds: float) -> bool:
    """Whether `seconds` have passed since the usage's asOf."""
    since = datetime.fromisoformat(usage["asOf"])
    return datetime.now(UTC) >= since + timedelta(seconds=seconds)


def test_a_priced_cluster_shows_its_usage_and_the_command_reads_it(
    scenario: Scenario, kube: Kube
) -> None:
    scenario.make_provider({"buckets": BUCKETS})
    scenario.make_cluster(targetNodes=3)
    scenario.wait_converged(3)
    usage = wait_for(
        "status.usage with 3 machines",
        lambda: _usage(scenario) if _usage(scenario).get("machines") == 3 else None,
    )
    assert (usage["cores"], usage["hourlyCost"]) == (6, 3 * PRICE)
    assert sum(b["machines"] for b in usage["buckets"]) == 3

    table = kube.kubectl("get", "nodecluster", "workers", "-n", scenario.ns).stdout
    header, row = table.splitlines()[:2]
    assert "MONTH-COST" in header.split()
    # The cell under the header's column: kubectl aligns them, and an empty cell before it
    # (WARM, for a cluster without a warm pool) would shift a whitespace split.
    cell = row[header.index("MONTH-COST") :].split()[0]
    assert cell in (str(usage["currentMonth"]["cost"]).rstrip("0").rstrip("."), "0")

    # Usage counts whole seconds, the command's table four decimals of an hour: it runs
    # once the machines have billed for a few seconds past the status's asOf.
    wait_for("three whole seconds of billing", lambda: billed_for(usage, 3))
    env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig)}
    out = subprocess.run(
        [sys.executable, "-m", "nodecluster", "usage", "-n", scenario.ns, "--total", "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    document = json.loads(out)
    assert {r["cluster"] for r in document["rows"]} == {"workers"}
    assert document["total"]["machines"] == 3
    # Brought up to now: three machines' three seconds more than the status at its asOf
    # (less the rounding of the rows, one a machine here, to four decimals each).
    grown = document["total"]["machineHours"] - usage["total"]["machineHours"]
    assert grown >= 3 * 3 / 3600 - 3 * 0.00005
    assert abs(document["total"]["cost"] - document["total"]["machineHours"] * PRICE) < 1e-3
    table = subprocess.run(
        [sys.executable, "-m", "nodecluster", "usage", "-n", scenario.ns],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    assert table.splitlines()[-1].split()[:2] == ["TOTAL", "3"]


def test_a_deleted_clusters_hours_stay_with_its_provider(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider({"buckets": BUCKETS})
    scenario.make_cluster(targetNodes=2)
    scenario.wait_converged(2)
    uid = scenario.nc()["metadata"]["uid"]
    before = wait_for(
        "status.usage with 2 machines",
        lambda: _usage(scenario).get("machines") == 2 and _usage(scenario),
    )
    # Usage counts whole seconds (asOf has no fraction), and a fast run converges and
    # could delete within one: the cluster bills for a few before it goes.
    wait_for("three whole seconds of billing", lambda: billed_for(before, 3))
    kube.kubectl("delete", "nodecluster", "workers", "-n", scenario.ns, "--timeout=90s")

    def retired() -> dict[str, Any] | None:
        st = kube.status("nodeprovider", scenario.provider)
        for entry in (st.get("installations") or {}).values():
            usage = entry.get("usage") or {}
            if uid in usage.get("retired", []):
                return usage
        return None

    usage = wait_for("the cluster's hours kept by its provider", retired)
    # Two machines, three seconds at least (less the rounding of each fold).
    assert usage["retiredTotal"]["machineHours"] >= 2 * 3 / 3600 - 1e-5, (usage, before)
    # Summed again as it retired: the provider's total holds what was retired.
    assert usage["total"] == usage["retiredTotal"]
    assert usage["retiredTotal"]["cost"] > 0


def test_the_cost_limit_stalls_a_scale_out(scenario: Scenario, kube: Kube) -> None:
    scenario.make_provider({"buckets": BUCKETS, "quotas": {"maxHourlyCost": 2 * PRICE}})
    scenario.make_cluster(targetNodes=3)

    def stalled() -> dict[str, Any] | None:
        cond = kube.condition("nodecluster", "workers", "Stalled", scenario.ns)
        return cond if cond.get("reason") == "CostLimitExceeded" else None

    cond = wait_for("Stalled=CostLimitExceeded", stalled)
    assert "quotas.maxHourlyCost 1/h" in cond["message"]
    wait_for("two machines", lambda: len(scenario.inventory.names(scenario.tag())) == 2 or None)
    assert len(scenario.nodes()) == 2

    kube.kubectl(
        "patch",
        "nodeprovider",
        scenario.provider,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"quotas": {"maxHourlyCost": 3 * PRICE}}}),
    )
    scenario.wait_converged(3)
