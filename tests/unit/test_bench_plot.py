"""The bench's converge plot: series from recorded moments, and the PNG drawn from them.

The series are what a reader of the plot trusts ("where the time goes"), so their
extraction is tested on its own, on hand-made moments: counts step at the right times,
moments before the phase count from the start, a watch's repeated or deleted objects are
not counted twice. The drawing is tested for what bench/run relies on: a PNG of the
promised size, written where asked, from series that may be empty.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import get_args

from bench.plot import DPI, FIGURE_INCHES, ROLES, Panel, draw
from bench.timeline import Role, Series, cumulative, running_total
from bench.watch import present, ready_reported

START = 1_000.0


def test_cumulative_steps_once_per_moment_in_time_order() -> None:
    series = cumulative("created", "requested", [START + 2.0, START + 0.5, START + 1.0], START)
    assert series.points == ((0.0, 0), (0.5, 1), (1.0, 2), (2.0, 3))
    assert series.final == 3


def test_moments_before_the_start_count_from_the_beginning() -> None:
    series = cumulative("created", "requested", [START - 1.0, START, START + 1.5], START)
    assert series.points == ((0.0, 2), (1.5, 3))


def test_no_moments_is_a_flat_zero() -> None:
    series = cumulative("running", "running", [], START)
    assert series.points == ((0.0, 0),)
    assert series.final == 0


def test_running_total_sums_each_objects_latest_value() -> None:
    # Two NodeClusters report their Ready nodes as their status is written.
    events = [
        (START + 1.0, "a", 2),
        (START + 2.0, "b", 3),
        (START + 3.0, "a", 10),  # a's later report replaces its earlier one
        (START + 4.0, "b", 10),
    ]
    series = running_total("ready", "ready", events, START)
    assert series.points == ((0.0, 0), (1.0, 2), (2.0, 5), (3.0, 13), (4.0, 20))


def test_a_write_that_leaves_the_value_alone_adds_no_point() -> None:
    events = [(START + 1.0, "a", 4), (START + 2.0, "a", 4), (START + 3.0, "a", 5)]
    series = running_total("ready", "ready", events, START)
    assert series.points == ((0.0, 0), (1.0, 4), (3.0, 5))


def test_a_deleted_object_stops_counting() -> None:
    events = [(START + 1.0, "a", 1), (START + 1.5, "b", 1), (START + 2.0, "a", 0)]
    series = running_total("seen", "ready", events, START)
    assert series.points == ((0.0, 0), (1.0, 1), (1.5, 2), (2.0, 1))


def test_the_initial_listing_makes_the_count_at_the_start() -> None:
    events = [(START - 0.2, "a", 3), (START - 0.1, "b", 1), (START + 1.0, "b", 3)]
    series = running_total("ready", "ready", events, START)
    assert series.points == ((0.0, 4), (1.0, 6))


def test_what_the_watch_measures() -> None:
    deployed = {"metadata": {"name": "a"}, "status": {"readyNodes": 7, "currentNodes": 7}}
    assert ready_reported(deployed) == 7
    assert ready_reported({"metadata": {"name": "a"}, "status": None}) == 0
    assert ready_reported({"metadata": {"name": "a"}}) == 0
    assert present({"metadata": {"name": "a"}}) == 1


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking its signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def converge_series(nodes: int, start: float) -> tuple[Series, ...]:
    """A made-up converge: creates over 1 s, machines running 0.5 s later, Ready after."""
    creates = [start + i / nodes for i in range(nodes)]
    ready = [(start + 1.5 + i / nodes, f"nc-{i // 10}", i % 10 + 1) for i in range(nodes)]
    return (
        cumulative("ClusterNodes created", "requested", creates, start),
        cumulative("machine creates", "provider", [t + 0.1 for t in creates], start),
        cumulative("machines running", "running", [t + 0.5 for t in creates], start),
        running_total("Ready nodes", "ready", ready, start),
    )


def test_draw_writes_a_png_of_the_promised_size(tmp_path: Path) -> None:
    baseline = (
        cumulative("created", "requested", [START + i / 200 for i in range(100)], START),
        running_total("seen", "ready", [(START + 0.6, f"n{i}", 1) for i in range(100)], START),
    )
    path = tmp_path / "out" / "converge.png"  # the directory does not exist yet
    written = draw(
        path,
        "converge 2.60 s = 10.4 x baseline (0.25 s), operator abc1234",
        [
            Panel("operator", converge_series(100, START), 2.6),
            Panel("baseline", baseline, 0.25),
        ],
        count=100,
    )
    assert written == path
    assert png_size(path) == (
        round(FIGURE_INCHES[0] * DPI),
        round(FIGURE_INCHES[1] * DPI),
    )


def test_draw_copes_with_a_phase_that_observed_nothing(tmp_path: Path) -> None:
    # A converge that failed early still gets its plot: flat lines, no exception.
    empty = (cumulative("created", "requested", [], START),)
    path = draw(tmp_path / "empty.png", "nothing", [Panel("operator", empty, 0.0)], count=10)
    assert png_size(path) == (round(FIGURE_INCHES[0] * DPI), round(FIGURE_INCHES[1] * DPI))


def test_every_role_has_one_style() -> None:
    # A new kind of series without a style would fail only when drawn, after a whole run.
    assert set(ROLES) == set(get_args(Role))
