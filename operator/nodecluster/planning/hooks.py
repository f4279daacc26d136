"""Lifecycle hooks of one node: where its wait stands, given its annotations and the clock.

Pure, like the rest of planning: the ClusterNode controller (controllers/hooks.py) reads
the node and its cluster's hooks, calls `advance`, writes what it returns and looks again
at the deadline. The whole wait lives in the node's status (`HookWait`), so a restart in
the middle resumes it with the same deadline, and no timer exists anywhere but as a
requeue of the node at that deadline.

Rules (api/hooks.py says why each is so):
- the hooks of one transition run in the order listed; each starts when the one before
  it completed, and waits at most its `timeoutSeconds` from its start or its last new
  heartbeat, never more than MAX_HEARTBEAT_TIMEOUTS timeouts or MAX_HOOK_WAIT_SECONDS in
  all;
- `hooks.nodecluster.io/<name>` completes the hook with its value (Continue, Abandon);
  any other value is reported (`invalid`) and the hook keeps waiting, its timeout running;
- a timeout applies `defaultResult`; `Abandon`, however it came, ends the sequence;
- a hook removed from the spec while waited on no longer holds the node (it goes on as
  if the hook said Continue): nothing could complete it any more;
- while the NodeCluster is being deleted (`deleting_since`), heartbeats are ignored and a
  hook waits at most its timeout from the later of its start and the deletion: deleting a
  cluster takes at most the sum of its Terminate hooks' timeouts, however its hooks are
  tended.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from nodecluster.api.hooks import (
    HEARTBEAT_ANNOTATION_PREFIX,
    HOOK_ANNOTATION_PREFIX,
    HOOK_RESULTS,
    MAX_HEARTBEAT_TIMEOUTS,
    MAX_HOOK_WAIT_SECONDS,
    HookResult,
    HookTransition,
    HookWait,
    LifecycleHook,
)

HEARTBEAT_KEPT_CHARS = 256
"""A heartbeat value is kept (to see the next one is new) up to this many characters."""


def hook_annotation(name: str) -> str:
    """The annotation that completes hook `name`."""
    return f"{HOOK_ANNOTATION_PREFIX}{name}"


def heartbeat_annotation(name: str) -> str:
    """The annotation whose new values restart hook `name`'s timeout."""
    return f"{HEARTBEAT_ANNOTATION_PREFIX}{name}"


@dataclass(frozen=True)
class HookOutcome:
    """One hook ended: how (`Completed` by its annotation, `TimedOut`) and with what."""

    hook: str
    result: HookResult
    how: Literal["Completed", "TimedOut", "Removed"]


@dataclass(frozen=True)
class HookProgress:
    """Where a node's hooks of one transition stand after one look."""

    wait: HookWait | None
    """The wait to record; None once no hook is left to wait on."""
    outcomes: tuple[HookOutcome, ...] = ()
    """Hooks that ended in this look, in order (empty: nothing moved)."""
    invalid: str | None = None
    """The awaited hook's annotation, when its value is neither Continue nor Abandon:
    a message for the node's condition and a Warning Event."""

    @property
    def abandoned(self) -> bool:
        """Whether a hook ended with Abandon (the sequence ends there)."""
        return any(o.result == "Abandon" for o in self.outcomes)


def hooks_on(hooks: Sequence[LifecycleHook] | None, on: HookTransition) -> list[LifecycleHook]:
    """The hooks of one transition, in order."""
    return [h for h in hooks or () if h.transition == on]


def _cap(hook: LifecycleHook, started: datetime) -> datetime:
    """The latest a hook may wait until, whatever the heartbeats."""
    bound = min(MAX_HEARTBEAT_TIMEOUTS * hook.timeout_seconds, MAX_HOOK_WAIT_SECONDS)
    return started + timedelta(seconds=bound)


def _start(hook: LifecycleHook, on: HookTransition, now: datetime) -> HookWait:
    return HookWait(
        name=hook.name,
        transition=on,
        started_at=now,
        deadline=now + timedelta(seconds=hook.timeout_seconds),
    )


def advance(
    hooks: Sequence[LifecycleHook] | None,
    on: HookTransition,
    wait: HookWait | None,
    annotations: Mapping[str, str],
    now: datetime,
    deleting_since: datetime | None = None,
) -> HookProgress:
    """Move a node's wait on the hooks of transition `on` as far as it goes now.

    `wait` is the status's record: None starts at the first hook. The result's `wait` is
    None when every hook has ended (or one said Abandon); otherwise the hook waited on,
    with its deadline (the controller looks again then).
    """
    ordered = hooks_on(hooks, on)
    names = [h.name for h in ordered]
    outcomes: list[HookOutcome] = []
    if wait is None or wait.transition != on:
        index = 0
        current = _start(ordered[0], on, now) if ordered else None
    elif wait.name not in names:
        # Removed from the spec while waited on: nothing could complete it any more. The
        # rest of the list (as it is now) is not run again: the wait goes on to nothing.
        return HookProgress(None, (HookOutcome(wait.name, "Continue", "Removed"),))
    else:
        index = names.index(wait.name)
        current = wait
    while current is not None:
        hook = ordered[index]
        value = annotations.get(hook_annotation(hook.name))
        invalid = None
        if value in HOOK_RESULTS:
            outcome = HookOutcome(hook.name, value, "Completed")
        else:
            if value is not None:
                invalid = (
                    f"annotation {hook_annotation(hook.name)}={value!r} is neither Continue "
                    "nor Abandon; still waiting"
                )
            current = _beat(hook, current, annotations, now, deleting_since)
            if now < current.deadline:
                return HookProgress(current, tuple(outcomes), invalid)
            outcome = HookOutcome(hook.name, hook.default_result, "TimedOut")
        outcomes.append(outcome)
        if outcome.result == "Abandon" or index + 1 == len(ordered):
            return HookProgress(None, tuple(outcomes))
        index += 1
        current = _start(ordered[index], on, now)
    return HookProgress(None, tuple(outcomes))


def _beat(
    hook: LifecycleHook,
    wait: HookWait,
    annotations: Mapping[str, str],
    now: datetime,
    deleting_since: datetime | None,
) -> HookWait:
    """The wait with its deadline moved by a new heartbeat, or bounded by a deletion."""
    if deleting_since is not None:
        bound = max(wait.started_at, deleting_since) + timedelta(seconds=hook.timeout_seconds)
        return wait.model_copy(update={"deadline": min(wait.deadline, bound)})
    beat = annotations.get(heartbeat_annotation(hook.name))
    if beat is None:
        return wait
    beat = beat[:HEARTBEAT_KEPT_CHARS]
    if beat == wait.heartbeat:
        return wait
    deadline = min(now + timedelta(seconds=hook.timeout_seconds), _cap(hook, wait.started_at))
    return wait.model_copy(update={"heartbeat": beat, "deadline": max(deadline, wait.deadline)})


def describe(outcomes: Sequence[HookOutcome]) -> str:
    """The outcomes for people: 'configure: Continue; register: Abandon (timed out)'."""
    words = {"Completed": "", "TimedOut": " (timed out)", "Removed": " (hook removed)"}
    return "; ".join(f"{o.hook}: {o.result}{words[o.how]}" for o in outcomes)


def waiting_message(wait: HookWait) -> str:
    """What a waiting node's condition says: the hook, until when, and how to complete it."""
    state = "Pending:Wait" if wait.transition == "Launch" else "Terminating:Wait"
    return (
        f"{state} on {wait.transition} hook {wait.name!r} until "
        f"{wait.deadline.isoformat().replace('+00:00', 'Z')}: annotate the ClusterNode "
        f"{hook_annotation(wait.name)}=Continue or Abandon "
        f"({heartbeat_annotation(wait.name)}=<new value> restarts the timeout)"
    )
