"""What every reconcile made of phases shares: how a phase ends it, and the loop over them.

A reconcile (Cluster API's shape) is a tuple of small phase functions over one scope
object. Each phase reads and fills the scope; a phase that decides the reconcile is over
returns `Stop(when to look again)`, and the remaining phases do not run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from nodecluster.controllers.world import World

S = TypeVar("S")

CONFLICT_RETRY_SECONDS = 0.1
"""How soon a reconcile whose write met a newer object reads it again."""


@dataclass(frozen=True)
class Stop:
    """A phase ends the reconcile: look again after `again` seconds (None: on events)."""

    again: float | None


Phase = Callable[[World, S], Awaitable[Stop | None]]


async def run_phases(world: World, scope: S, phases: Sequence[Phase[S]]) -> float | None:
    """Run `phases` in order until one stops; when to look again (None: on events)."""
    for phase in phases:
        stop = await phase(world, scope)
        if stop is not None:
            return stop.again
    return None
