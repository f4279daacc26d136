"""What a deleted cluster leaves in its provider's usage (accounting.retired), and which
nodes bill (accounting.billable)."""

from __future__ import annotations

from datetime import UTC, datetime

from nodecluster.api.usage import ClusterUsage, MonthFigures, ProviderUsage, UsageFigures
from nodecluster.controllers.accounting import billable
from nodecluster.controllers.accounting import retired as retire
from nodecluster.controllers.world import IndexedNode

NOW = datetime(2027, 1, 10, tzinfo=UTC)


def final(month: str, this_month: float, total: float) -> ClusterUsage:
    return ClusterUsage(
        as_of=NOW,
        month=month,
        current_month=UsageFigures(machine_hours=this_month, cost=this_month),
        total=UsageFigures(machine_hours=total, cost=total),
    )


def test_a_retired_cluster_adds_its_figures_and_its_uid() -> None:
    first = retire(None, "u1", final("2027-01", 2, 10), NOW)
    assert first.retired == ["u1"]
    assert first.retired_total.machine_hours == 10
    assert first.retired_month == MonthFigures(month="2027-01", machine_hours=2, cost=2)
    second = retire(first, "u2", final("2027-01", 1, 3), NOW)
    assert second.retired == ["u1", "u2"]
    assert second.retired_total.machine_hours == 13
    assert second.retired_month is not None and second.retired_month.machine_hours == 3


def test_a_new_month_starts_the_retired_month_afresh_and_an_older_one_adds_only_to_total() -> None:
    december = retire(None, "u1", final("2026-12", 5, 5), NOW)
    january = retire(december, "u2", final("2027-01", 1, 4), NOW)
    assert january.retired_month == MonthFigures(month="2027-01", machine_hours=1, cost=1)
    late = retire(january, "u3", final("2026-12", 7, 7), NOW)
    assert late.retired_month == january.retired_month
    assert late.retired_total.machine_hours == 16


def test_the_list_of_retired_uids_stays_bounded() -> None:
    usage: ProviderUsage | None = None
    for i in range(150):
        usage = retire(usage, f"u{i}", final("2027-01", 0, 1), NOW)
    assert usage is not None and len(usage.retired) == 100 and usage.retired[-1] == "u149"
    assert usage.retired_total.machine_hours == 150


def node(name: str, zone: str | None, has_machine: bool, state: str | None) -> IndexedNode:
    return IndexedNode(
        name=name,
        created_at=NOW,
        zone=zone,
        state=state,  # type: ignore[arg-type]
        has_machine=has_machine,
        provider="sim",
        machine_type="big",
    )


def test_only_nodes_holding_a_machine_not_stopped_bill() -> None:
    counts = billable(
        [
            node("a", "zone-a", True, "Running"),
            node("b", "zone-a", True, "Stopping"),
            node("c", "zone-b", True, "Stopped"),
            node("d", "zone-b", False, "Pending"),
            node("e", None, True, "Provisioning"),
        ],
        "small",
    )
    assert counts == {("zone-a", "big"): 2, (None, "big"): 1}
