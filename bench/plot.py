"""The converge, drawn: how many nodes were requested, running and Ready, second by second.

`converge_seconds` says how long; this says where the time went. One figure, two panels on
one time axis: the operator's converge (ClusterNodes created, machine creates received by
the provider, machines running there, Ready nodes reported by the NodeClusters) above the
baseline's fastest round (ClusterNodes created, and seen by a watch). A gap between two
curves is time spent between those two moments: API writes, provider latency, the status
writes that report progress.

Every series comes from what the bench observes anyway, so recording them adds no request
to the measured run: the API server's audit log (creates, with the server's receive time), the
simulator's file (each machine's `created_at` and `ready_at`) and the bench's own watches
(`bench.watch.Tracker` events), turned into step series by bench.timeline. `draw` renders
with matplotlib's Agg canvas directly, so no GUI backend or pyplot global state is involved,
and bench/__main__.py calls it once the control plane has stopped: it costs the measured
phases nothing either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.timeline import Role, Series

ROLES: dict[Role, tuple[str, str, float, float]] = {
    # role: (colour, line style, width, z-order): one meaning, one look, in both panels.
    # The provider's creates are dashed and on top: without provider latency they are the
    # running curve itself, and would otherwise vanish under it.
    "requested": ("tab:blue", "-", 1.5, 2.0),
    "provider": ("tab:purple", "--", 1.2, 3.0),
    "running": ("tab:orange", "-", 1.5, 2.0),
    "ready": ("tab:green", "-", 2.5, 2.5),
}

FIGURE_INCHES = (12.0, 7.0)
DPI = 100
"""1200 x 700 pixels, legends beside the panels: readable on a screen and in a pull request,
~100 KB."""


@dataclass(frozen=True)
class Panel:
    """One phase: its series, and when the bench says it ended."""

    title: str
    series: tuple[Series, ...]
    end_seconds: float
    """The phase's reported time (`converge_seconds`, `baseline_seconds`): a vertical line."""


def draw(path: Path, title: str, panels: Sequence[Panel], count: int) -> Path:
    """Render the panels one above the other, on one time axis, into a PNG at `path`.

    `count` is the number every curve should reach (the phase's nodes): a dotted line, so
    a curve that stops short of it is seen at once.
    """
    figure = Figure(figsize=FIGURE_INCHES, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    right = max(
        [p.end_seconds for p in panels]
        + [s.points[-1][0] for p in panels for s in p.series]
        + [1.0]
    )
    right *= 1.04
    for ax, panel in zip(axes, panels, strict=True):
        for series in panel.series:
            colour, style, width, zorder = ROLES[series.role]
            times = [t for t, _ in series.points] + [right]
            counts = [c for _, c in series.points] + [series.final]
            ax.plot(
                times,
                counts,
                drawstyle="steps-post",
                color=colour,
                linestyle=style,
                linewidth=width,
                zorder=zorder,
                label=f"{series.label} ({series.final})",
            )
        ax.axhline(count, color="grey", linestyle=":", linewidth=1)
        ax.axvline(panel.end_seconds, color="black", linestyle="-.", linewidth=1)
        # Left of its line, unless the line is so near the axis (a fast baseline beside a
        # slow converge) that the text would run into the tick labels.
        before = panel.end_seconds > 0.15 * right
        ax.annotate(
            f"done {panel.end_seconds:.2f} s",
            xy=(panel.end_seconds, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(-4 if before else 4, -12),
            textcoords="offset points",
            horizontalalignment="right" if before else "left",
            fontsize=9,
        )
        ax.set_title(panel.title, fontsize=10, loc="left")
        ax.set_ylabel("nodes")
        ax.set_ylim(0, max(count, 1) * 1.08)
        ax.grid(True, alpha=0.3)
        # Beside the panel, not in it: no curve of any run's shape is hidden by it.
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    axes[-1].set_xlim(0, right)
    axes[-1].set_xlabel("seconds since the phase began (its first create)")
    figure.suptitle(title, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
