"""A phase over time: step series from what the bench observed, for bench.plot to draw.

Pure functions over recorded moments, so they are tested without a cluster: `cumulative`
counts moments (creates in the audit log, machines at the provider), `running_total` sums
the latest value per object over a watch's events (`bench.watch.Tracker.events`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Point = tuple[float, int]
"""(seconds since the phase started, count from then on)."""

Role = Literal["requested", "provider", "running", "ready"]
"""What a series counts, whichever phase it belongs to: nodes asked of the API server,
machine creates the provider received, machines running there, nodes shown done (Ready)."""


@dataclass(frozen=True)
class Series:
    """One curve: a count that steps up (or down) at given moments."""

    label: str
    role: Role
    """Drawn in the same style in every panel (bench.plot.ROLES)."""
    points: tuple[Point, ...]
    """Ascending in time; the first is (0.0, the count when the phase started)."""

    @property
    def final(self) -> int:
        """The count at the end."""
        return self.points[-1][1]


def cumulative(label: str, role: Role, moments: Iterable[float], start: float) -> Series:
    """How many of `moments` have happened, over time: one step per moment.

    `moments` are absolute times on the clock `start` is on (Unix time for the audit log
    and the simulator). Moments before `start` count from the beginning.
    """
    offsets = sorted(m - start for m in moments)
    before = sum(1 for t in offsets if t <= 0)
    points: list[Point] = [(0.0, before)]
    for i, t in enumerate(offsets):
        if t > 0:
            points.append((t, i + 1))
    return Series(label, role, tuple(points))


def running_total(
    label: str, role: Role, events: Iterable[tuple[float, str, int]], start: float
) -> Series:
    """The sum, over objects, of each one's latest value, over time.

    `events` are a watch's (time, object name, value) in the order they arrived, e.g. a
    NodeCluster's `status.readyNodes` at each event (0 when deleted). A point is added only
    when the total changes: status writes that leave the value alone add nothing. Events
    before `start` (the watch's initial listing) make the count at the beginning.
    """
    latest: dict[str, int] = {}
    total = 0
    points: list[Point] = [(0.0, 0)]
    for at, name, value in events:
        total += value - latest.get(name, 0)
        latest[name] = value
        t = at - start
        if t <= 0:
            points[0] = (0.0, total)
        elif total != points[-1][1]:
            points.append((t, total))
    return Series(label, role, tuple(points))
