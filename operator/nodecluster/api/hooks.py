"""Lifecycle hooks: a node waits at its launch or its termination until someone says go.

The model is an Auto Scaling group's lifecycle hooks (Pending:Wait, Terminating:Wait),
spoken the Kubernetes way: hooks are declared in the NodeCluster's
`spec.policies.lifecycleHooks`, the wait is visible in the ClusterNode's status
(`status.lifecycleHook`, the `LifecycleHook` condition) and completed by an annotation on
the ClusterNode, which anything with `patch` on clusternodes can set (a Job, a person with
kubectl, a controller):

    hooks.nodecluster.io/<hook name>: Continue | Abandon
    heartbeat.hooks.nodecluster.io/<hook name>: <any new value, e.g. an RFC 3339 time>

The heartbeat is its own prefix, not `<name>-heartbeat`, so that no hook name can be
mistaken for another's heartbeat. Its value is not parsed: any change restarts the
timeout, counted by the operator's clock (a Job's clock that runs late cannot shorten or
lengthen a wait).

The transition is `transition` (ASG's LifecycleTransition), not `on`: YAML 1.1 parsers
(PyYAML, and Go's yaml.v2 under many tools) read a bare `on:` key as the boolean true.

Hooks of one transition run one after the other, in the order listed, as init containers
do (not all at once, as ASG's): a later hook may rely on an earlier one's work (configure,
then register), each one's timeout counts from its own start, and the wait is one record
in status that a restart resumes. `Abandon` ends the sequence: at launch the machine is
deleted and counted as a failed launch; at termination the machine is deleted anyway
without the remaining hooks (as ASG does: both results let a terminating instance go).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, JsonValue

from nodecluster import GROUP
from nodecluster.api.common import DNS_LABEL, CamelModel

HookTransition = Literal["Launch", "Terminate"]
HookResult = Literal["Continue", "Abandon"]
HOOK_RESULTS: tuple[HookResult, ...] = ("Continue", "Abandon")

HOOK_ANNOTATION_PREFIX = f"hooks.{GROUP}/"
"""`hooks.nodecluster.io/<hook name>: Continue|Abandon` completes the hook."""
HEARTBEAT_ANNOTATION_PREFIX = f"heartbeat.hooks.{GROUP}/"
"""`heartbeat.hooks.nodecluster.io/<hook name>: <anything new>` restarts its timeout."""

MIN_HOOK_TIMEOUT_SECONDS = 30
"""A shorter timeout would apply the default before most Jobs are even scheduled."""
MAX_HOOK_TIMEOUT_SECONDS = 3600
"""One hour, ASG's default heartbeat timeout: a waiting machine is paid for and, at
termination, holds a scale-in or the deletion of its cluster. Longer work sends
heartbeats (bounded in all by MAX_HOOK_WAIT_SECONDS and MAX_HEARTBEAT_TIMEOUTS)."""
MAX_HOOK_WAIT_SECONDS = 48 * 3600
"""However many heartbeats, a hook waits at most 48 hours from its start (ASG's bound)."""
MAX_HEARTBEAT_TIMEOUTS = 100
"""... and at most 100 times its timeoutSeconds (ASG's bound), whichever is shorter."""
MAX_HOOKS = 8
"""Hooks per cluster: enough for a few steps at each transition, and a bound on how long
a node can wait in all (hooks x one hour when nobody sends heartbeats)."""


class LifecycleHook(CamelModel):
    """One lifecycle hook: a node waits at a transition until the hook is completed."""

    explain = (
        "One lifecycle hook: a node waits at its launch or its termination until the hook "
        "is completed by an annotation on its ClusterNode or times out."
    )

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description=(
            "Name of the hook (a DNS label), unique in the cluster: the ClusterNode "
            "annotation hooks.nodecluster.io/<name> (Continue or Abandon) completes it, and "
            "a new value of heartbeat.hooks.nodecluster.io/<name> restarts its timeout."
        ),
    )
    transition: HookTransition = Field(
        description=(
            "Launch: a new node waits once its machine first runs, not Ready (and not counted "
            "ready or updated) until the hook completes. Terminate: a node being deleted "
            "(scale-in, remediation, rollout, by hand) waits before its machine is deleted."
        )
    )
    timeout_seconds: int = Field(
        default=600,
        ge=MIN_HOOK_TIMEOUT_SECONDS,
        le=MAX_HOOK_TIMEOUT_SECONDS,
        description=(
            "Seconds the node waits for the hook's annotation before defaultResult applies; "
            "each new heartbeat restarts it (at most 100 timeouts or 48 hours from the "
            "hook's start in all). 30 to 3600, default 600. While the NodeCluster is being "
            "deleted, heartbeats are ignored: each Terminate hook waits at most this long "
            "from then."
        ),
    )
    default_result: HookResult = Field(
        default="Abandon",
        description=(
            "What a timeout does, as the annotation would: Continue goes on (to the next "
            "hook); Abandon (the default) at Launch deletes the machine and counts a failed "
            "launch (the cluster makes a new node), at Terminate deletes the machine without "
            "the remaining hooks."
        ),
    )


LIFECYCLE_HOOKS_VALIDATIONS: list[JsonValue] = [
    {
        "rule": "self.all(h, self.exists_one(g, g.name == h.name))",
        "message": "hook names must be unique (policies.lifecycleHooks[].name)",
    }
]


class HookWait(CamelModel):
    """The lifecycle hook a node waits on now (Pending:Wait or Terminating:Wait)."""

    explain = (
        "The lifecycle hook (policies.lifecycleHooks of the node's NodeCluster) the node "
        "waits on now, and until when."
    )

    # Recorded when the wait starts, so a restart resumes it with the same deadline.

    name: str = Field(
        description="The hook waited on, as policies.lifecycleHooks[].name: the annotation "
        "hooks.nodecluster.io/<name> completes it."
    )
    transition: HookTransition = Field(
        description="Launch (the machine runs, the node is not Ready yet) or Terminate (the "
        "machine is deleted once the hook ends)."
    )
    started_at: datetime = Field(description="When the node began waiting on this hook.")
    deadline: datetime = Field(
        description="When the hook's defaultResult applies unless it is completed first."
    )
    heartbeat: str | None = Field(
        default=None,
        max_length=256,
        description="The heartbeat annotation's value last seen (a new one restarts the timeout).",
    )
