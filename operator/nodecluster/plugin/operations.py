"""Operations as verbs: `kubectl nodecluster scale-out NAME --by 3`, `remove NAME NODE...`.

Each verb creates one NodeClusterOperation (the operator's audit record of a one-off
action, api/operation.py) and, unless `--no-wait`, follows it to its end with a progress
line: the phase and the operator's message as they change. Exit status 0 when it
Succeeded; 1 when it Failed, or when the wait ran out first (the operation goes on: the
output says how to follow it). The operation is created under a generated name
(`<cluster>-<verb>-xxxxx`), so running a verb twice makes two operations, as it should:
an operation is a record of one request.

It waits by reading the operation again every second (get, no watch): a person waits on
it, a second of latency is nothing, and get is all the RBAC it needs besides create.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from nodecluster import API_VERSION
from nodecluster.api.operation import (
    DEFAULT_TIMEOUT_SECONDS,
    NodeClusterOperation,
    NodeClusterOperationSpec,
    NodeFilter,
    OperationAction,
)
from nodecluster.controllers.kubeapi import OPERATIONS, KubeApi
from nodecluster.plugin.style import BAD, BUSY, DIM, GOOD, Paint

POLL_SECONDS = 1.0
"""How often the operation is read again while waited on."""
WAIT_MARGIN_SECONDS = 60.0
"""How much longer than the operation's own timeout the plugin waits: the operator
records the failure of a timed-out operation on its next look, not to the second."""

VERBS: dict[str, OperationAction] = {
    "scale-out": "ScaleOut",
    "scale-in": "ScaleIn",
    "remove": "RemoveNodes",
    "check": "Check",
    "recover": "Recover",
}
"""The plugin's verbs and the operation action each creates."""


def operation_body(
    cluster: str,
    namespace: str,
    verb: str,
    count: int | None = None,
    nodes: Sequence[str] = (),
    timeout_seconds: int | None = None,
) -> dict[str, Any]:
    """The NodeClusterOperation a verb creates, checked by the API's own model."""
    spec = NodeClusterOperationSpec(
        cluster_name=cluster,
        action=VERBS[verb],
        count=count,
        nodes=NodeFilter(names=list(nodes)) if nodes else None,
        timeout_seconds=timeout_seconds,
    )
    return {
        "apiVersion": API_VERSION,
        "kind": "NodeClusterOperation",
        "metadata": {
            "generateName": f"{cluster[:40]}-{verb}-",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/created-by": "kubectl-nodecluster"},
        },
        # What a person would write: no empty lists of criteria not given.
        "spec": spec.model_dump(by_alias=True, exclude_defaults=True, mode="json"),
    }


@dataclass
class Outcome:
    """How the wait ended."""

    operation: NodeClusterOperation
    finished: bool
    """False: the wait ran out before the operation ended."""

    @property
    def succeeded(self) -> bool:
        """Whether the operation Succeeded."""
        return self.operation.status.phase == "Succeeded"


class Progress:
    """The progress display: on a terminal one line rewritten in place, elsewhere one line
    per change of phase or message (a log stays readable). The end is not shown here:
    the outcome lines say it once (a terminal's progress line is cleared for them)."""

    def __init__(self, stream: TextIO, tty: bool, paint: Paint) -> None:
        self.stream = stream
        self.tty = tty
        self.paint = paint
        self.last: tuple[str, str] | None = None
        self.width = 0

    def show(self, phase: str, message: str, elapsed: float) -> None:
        """The operation as read now, still under way."""
        text = f"{self.paint(phase, BUSY)} ({elapsed:.0f}s): {message}"
        if self.tty:
            line = text[:200]
            pad = max(0, self.width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self.width = len(line)
            self.stream.flush()
        elif (phase, message) != self.last:
            self.stream.write(text + "\n")
            self.stream.flush()
        self.last = (phase, message)

    def done(self) -> None:
        """Clear the rewritten line, for the outcome."""
        if self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0


async def wait_for_operation(
    api: KubeApi,
    namespace: str,
    name: str,
    wait_seconds: float,
    progress: Progress,
    clock: Callable[[], float] = time.monotonic,
    poll: float = POLL_SECONDS,
) -> Outcome:
    """Read the operation until it Succeeded or Failed, or `wait_seconds` passed."""
    start = clock()
    while True:
        op = NodeClusterOperation.model_validate(await api.get(OPERATIONS, namespace, name))
        phase = op.status.phase or "Pending"
        message = op.status.message or "waiting for the operator to pick it up"
        elapsed = clock() - start
        if phase in ("Succeeded", "Failed"):
            progress.done()
            return Outcome(op, finished=True)
        progress.show(phase, message, elapsed)
        if elapsed >= wait_seconds:
            progress.done()
            return Outcome(op, finished=False)
        await asyncio.sleep(poll)


def wait_seconds_for(timeout_seconds: int | None) -> float:
    """How long the plugin waits for an operation of that timeout."""
    return float(timeout_seconds or DEFAULT_TIMEOUT_SECONDS) + WAIT_MARGIN_SECONDS


def outcome_lines(outcome: Outcome, namespace: str, paint: Paint) -> list[str]:
    """What the person reads at the end: the result, each node's, where to look next."""
    op = outcome.operation
    name = op.metadata.name
    st = op.status
    out: list[str] = []
    if not outcome.finished:
        out.append(
            f"{paint('still ' + (st.phase or 'Pending'), BUSY)}: stopped waiting; the "
            f"operation goes on (kubectl get nodeclusteroperation {name} -n {namespace} -w)"
        )
    elif outcome.succeeded:
        out.append(f"{paint('Succeeded', GOOD)}: {st.message or ''}".rstrip(": "))
    else:
        out.append(f"{paint('Failed', BAD)}: {st.message or 'no message'}")
    if st.previous_target is not None and st.new_target is not None:
        out.append(f"  target: {st.previous_target} -> {st.new_target}")
    for result in st.nodes:
        color = {"OK": GOOD, "Error": BAD}.get(result.result, BUSY)
        detail = f"  {paint(result.message, DIM)}" if result.message else ""
        out.append(f"  {result.name}: {paint(result.result, color)}{detail}")
    return out
