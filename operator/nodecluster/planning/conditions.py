"""kstatus-style conditions, computed the same way for every kind.

One rule matters and is easy to get wrong in each controller separately: a condition
keeps its lastTransitionTime while its status stays the same, and gets `now` when the
status flips. Tools (and people) read that time as "since when".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from nodecluster.api.common import Condition


def condition(
    previous: Sequence[Condition],
    ctype: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> Condition:
    """The condition `ctype` as it should be now, given the conditions written before."""
    value = "True" if status else "False"
    old = next((c for c in previous if c.type == ctype), None)
    since = old.last_transition_time if old is not None and old.status == value else None
    return Condition(
        type=ctype,
        status=value,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=since or now,
    )


def replace_condition(conditions: Sequence[Condition], new: Condition) -> list[Condition]:
    """The conditions with `new` in place of the one of its type (appended if none): a
    controller that writes one condition keeps the others another part of it wrote."""
    out = [new if c.type == new.type else c for c in conditions]
    if not any(c.type == new.type for c in conditions):
        out.append(new)
    return out
