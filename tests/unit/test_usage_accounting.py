"""The usage accounting (planning/usage.py): what is folded in, when, and into which month."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nodecluster.api.nodeprovider import Bucket
from nodecluster.planning.usage import (
    UsageSummary,
    accrue,
    fold,
    month_of,
    price_list,
    price_of,
    refresh_due_in,
)

T0 = datetime(2026, 12, 31, 22, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
REFRESH = 3600.0
PRICES = price_list(
    [
        Bucket(zone="a", machine_type="m5", cores=4, hourly_cost=0.5),
        Bucket(zone="b", machine_type="m5", cores=4, hourly_cost=0.75),
        Bucket(zone="a", machine_type="free", cores=2),
    ]
)


def test_no_billable_machine_ever_means_no_usage_and_no_write() -> None:
    assert fold(None, {}, PRICES, T0, REFRESH) is None
    assert fold(None, {("a", "m5"): 0}, PRICES, T0, REFRESH) is None


def test_first_machines_start_the_figures_at_zero_with_their_rate() -> None:
    usage = fold(None, {("a", "m5"): 2}, PRICES, T0, REFRESH)
    assert usage is not None
    assert (usage.as_of, usage.month, usage.machines, usage.cores) == (T0, "2026-12", 2, 8)
    assert usage.hourly_cost == 1.0
    assert usage.total.machine_hours == 0


def test_unchanged_rate_within_the_refresh_interval_keeps_the_usage_as_it_is() -> None:
    usage = fold(None, {("a", "m5"): 2}, PRICES, T0, REFRESH)
    later = fold(usage, {("a", "m5"): 2}, PRICES, T0 + timedelta(minutes=59), REFRESH)
    assert later is usage  # nothing to write


def test_the_refresh_interval_folds_the_hours_in() -> None:
    usage = fold(None, {("a", "m5"): 2}, PRICES, T0, REFRESH)
    later = fold(usage, {("a", "m5"): 2}, PRICES, T0 + HOUR, REFRESH)
    assert later is not None and later.as_of == T0 + HOUR
    assert (later.total.machine_hours, later.total.core_hours, later.total.cost) == (2, 8, 1)
    assert later.buckets[0].total.cost == 1


def test_a_rate_change_folds_the_old_rate_up_to_now_then_takes_the_new_one() -> None:
    usage = fold(None, {("a", "m5"): 2}, PRICES, T0, REFRESH)
    # One machine deleted after 30 minutes, another started in zone b.
    later = fold(usage, {("a", "m5"): 1, ("b", "m5"): 1}, PRICES, T0 + HOUR / 2, REFRESH)
    assert later is not None
    assert later.total.machine_hours == 1 and later.total.cost == 0.5
    assert (later.machines, later.hourly_cost) == (2, 1.25)
    end = fold(later, {}, PRICES, T0 + HOUR, REFRESH)
    assert end is not None
    # The deleted machines' hours stay.
    assert end.total.machine_hours == 2 and end.total.cost == pytest.approx(1.125)
    assert end.machines == 0 and end.hourly_cost == 0
    by_zone = {b.zone: b.total.cost for b in end.buckets}
    assert by_zone == {"a": 0.75, "b": 0.375}
    # Nothing bills: however long it stays so, nothing is folded (no writes).
    assert fold(end, {}, PRICES, T0 + HOUR + HOUR / 2, REFRESH) is end


def test_a_price_change_is_a_rate_change() -> None:
    usage = fold(None, {("a", "m5"): 1}, PRICES, T0, REFRESH)
    dearer = price_list([Bucket(zone="a", machine_type="m5", cores=4, hourly_cost=2.0)])
    later = fold(usage, {("a", "m5"): 1}, dearer, T0 + HOUR / 2, REFRESH)
    assert later is not None and later.total.cost == 0.25 and later.hourly_cost == 2.0


def test_hours_are_split_at_the_month_boundary() -> None:
    usage = fold(None, {("a", "m5"): 1}, PRICES, T0, REFRESH)  # 22:00 on Dec 31st
    later = fold(usage, {("a", "m5"): 1}, PRICES, T0 + 3 * HOUR, REFRESH)  # 01:00 Jan 1st
    assert later is not None
    assert later.month == "2027-01"
    assert later.previous_month is not None
    assert (later.previous_month.month, later.previous_month.machine_hours) == ("2026-12", 2)
    assert later.current_month.machine_hours == 1
    assert later.buckets[0].current_month.machine_hours == 1
    assert later.total.machine_hours == 3


def test_the_month_rolls_over_even_with_nothing_billing() -> None:
    usage = fold(None, {("a", "m5"): 1}, PRICES, T0, REFRESH)
    stopped = fold(usage, {}, PRICES, T0 + HOUR, REFRESH)
    assert stopped is not None
    january = fold(stopped, {}, PRICES, T0 + 5 * HOUR, REFRESH)
    assert january is not None and january is not stopped
    assert january.month == "2027-01" and january.current_month.machine_hours == 0
    assert january.previous_month is not None and january.previous_month.machine_hours == 1


def test_a_gap_of_months_keeps_the_last_month_as_previous() -> None:
    usage = fold(None, {("a", "m5"): 1}, PRICES, T0, REFRESH)
    assert usage is not None
    march = accrue(usage, datetime(2027, 3, 2, tzinfo=UTC))
    assert march.month == "2027-03" and march.current_month.machine_hours == 24
    assert march.previous_month is not None
    assert (march.previous_month.month, march.previous_month.machine_hours) == ("2027-02", 672)
    assert march.total.machine_hours == 2 + 31 * 24 + 672 + 24


def test_stopped_machines_are_not_billable_so_the_caller_leaves_them_out() -> None:
    # (The controller counts only nodes holding a machine and not Stopped.)
    usage = fold(None, {("a", "m5"): 1}, PRICES, T0, REFRESH)
    assert refresh_due_in(usage, T0, REFRESH) == REFRESH
    stopped = fold(usage, {}, PRICES, T0 + HOUR, REFRESH)
    assert refresh_due_in(stopped, T0 + HOUR, REFRESH) is None


def test_no_price_still_counts_machine_and_core_hours() -> None:
    usage = fold(None, {("a", "free"): 1, ("a", "unknown-type"): 1}, PRICES, T0, REFRESH)
    later = fold(usage, {}, PRICES, T0 + HOUR, REFRESH)
    assert later is not None
    assert (later.total.machine_hours, later.total.core_hours, later.total.cost) == (2, 3, 0)


def test_an_unknown_zone_is_priced_at_the_dearest_zone_of_its_type() -> None:
    assert price_of(PRICES, None, "m5").hourly_cost == 0.75
    assert price_of(PRICES, "z", "m5").hourly_cost == 0.75
    assert price_of(PRICES, "a", "m5").hourly_cost == 0.5
    assert price_of(PRICES, "a", "nope").cores == 1


def test_month_of_is_utc() -> None:
    assert month_of(datetime(2027, 1, 1, 0, 30, tzinfo=UTC)) == "2027-01"


def test_a_summary_brings_the_figures_up_to_now_for_a_providers_sum() -> None:
    usage = fold(None, {("a", "m5"): 2}, PRICES, T0, REFRESH)  # 1/h, 8 cores
    assert usage is not None
    summary = UsageSummary("sim", "uid", usage)
    month, total = summary.at(T0 + HOUR, "2026-12")
    assert month == total == (2.0, 8.0, 1.0)
    # Across the month boundary: January gets only its own hour.
    month, total = summary.at(T0 + 3 * HOUR, "2027-01")
    assert month == (2.0, 8.0, 1.0) and total == (6.0, 24.0, 3.0)
    assert summary.at(T0 + HOUR, "2027-02")[0] == (0.0, 0.0, 0.0)
