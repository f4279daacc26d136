"""The bench's planner figures: every key issue 14 names is printed, under its target's
name, and `--large` is a flag of bench/run that needs no other option."""

from __future__ import annotations

from bench import large, planning
from bench.__main__ import TARGETS, parse, summary


def test_every_size_gets_both_cases_and_the_slower_under_the_targets_key() -> None:
    got = planning.figures((2000, 3000))
    for size, label in ((2000, "2k"), (3000, "3k")):
        cases = [got[f"plan_ms_{case}_{size}"] for case in ("scale_in", "rollout")]
        assert all(ms > 0 for ms in cases)
        assert got[f"plan_ms_{label}_nodes"] == max(cases)
        holds = [got[f"plan_loop_hold_ms_{case}_{size}"] for case in ("scale_in", "rollout")]
        assert got[f"plan_loop_hold_ms_{label}_nodes"] == max(holds)


def test_the_targets_name_keys_the_runs_print() -> None:
    keys = set(planning.figures((10_000,))) | {"plan_ms_100k_nodes", "plan_loop_hold_ms_100k_nodes"}
    assert set(planning.PLAN_TARGETS) <= keys
    options, args = parse(["--large"])
    assert args.large and not args.quick
    regular = summary({}, options, 1.0)["targets"]
    assert set(TARGETS) | set(planning.PLAN_TARGETS) == set(regular)
    assert summary({}, options, 1.0, large_run=True)["targets"] == large.TARGETS
