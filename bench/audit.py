"""The API server's audit log, read as it grows: the server-side count of the operator's writes.

The control plane logs one Metadata-level event per write request (tools/controlplane.py's
audit policy), so counting lines of the operator's user counts exactly the writes that
reached the server, retries and failed ones included, whatever the client believes it did.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Write:
    """One write request of the operator."""

    at: float
    """When the server received it (Unix time)."""
    verb: str
    resource: str
    """`resource` or `resource/subresource`."""
    code: int

    @property
    def kind(self) -> str:
        """`verb resource[/subresource]`: the key of the breakdown."""
        return f"{self.verb} {self.resource}"


class AuditLog:
    """The writes of one user, read incrementally from the audit log file."""

    def __init__(self, path: Path, username: str) -> None:
        self.path = path
        self.username = username
        self.writes: list[Write] = []
        self._offset = 0
        self._partial = b""
        self._needle = json.dumps(username).encode()

    def read(self) -> list[Write]:
        """Parse what was appended since the last call; return every write seen so far."""
        if not self.path.exists():
            return self.writes
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if self._needle not in line:
                continue  # cheap filter: most lines are other users'
            event = json.loads(line)
            if event.get("user", {}).get("username") != self.username:
                continue
            ref = event.get("objectRef", {})
            resource = str(ref.get("resource", ""))
            if ref.get("subresource"):
                resource += f"/{ref['subresource']}"
            received = datetime.fromisoformat(event["requestReceivedTimestamp"])
            self.writes.append(
                Write(
                    at=received.timestamp(),
                    verb=str(event.get("verb", "")),
                    resource=resource,
                    code=int(event.get("responseStatus", {}).get("code", 0)),
                )
            )
        return self.writes

    def between(self, start: float, end: float | None = None) -> list[Write]:
        """Writes received in [start, end] (Unix times; end None = until now)."""
        self.read()
        return [w for w in self.writes if w.at >= start and (end is None or w.at <= end)]

    def last_write_at(self, ignore: frozenset[str] = frozenset()) -> float | None:
        """When the newest write (to a resource not in `ignore`) was received, if any."""
        self.read()
        return max((w.at for w in self.writes if w.resource not in ignore), default=None)


def breakdown(writes: list[Write]) -> dict[str, int]:
    """Writes per `verb resource[/subresource]`, most frequent first."""
    return dict(Counter(w.kind for w in writes).most_common())


def conflicts(writes: list[Write]) -> int:
    """Writes the server refused with 409 Conflict."""
    return sum(1 for w in writes if w.code == 409)


def request_counts(metrics: str) -> Counter[str]:
    """`apiserver_request_total` from the API server's /metrics text, summed per
    `VERB resource[/subresource]` (all users: reads too, which the audit log omits)."""
    counts: Counter[str] = Counter()
    for line in metrics.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, _, value = line.rpartition(" ")
        labels: dict[str, str] = {}
        for part in labels_text[len("apiserver_request_total{") : -1].split('",'):
            name, _, raw = part.partition('="')
            labels[name] = raw.rstrip('"')
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += f"/{labels['subresource']}"
        counts[f"{labels.get('verb', '')} {resource}"] += int(float(value))
    return counts
