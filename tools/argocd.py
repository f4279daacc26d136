"""Run the chart's Argo CD health check of NodeCluster the way Argo CD does: Lua 5.1 with
the object as the global `obj`, returning a table with `status` and `message`.

Argo CD embeds gopher-lua (Lua 5.1); lupa's lua51 runtime is the same language, so a
script that works here works there. The tests run it against real NodeClusters.

Usage: kubectl get nc NAME -o json | python tools/argocd.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

HEALTH_SCRIPT = (
    Path(__file__).resolve().parents[1]
    / "charts"
    / "nodecluster-operator"
    / "argocd"
    / "health-nodecluster.lua"
)
HEALTH_STATUSES = frozenset({"Healthy", "Progressing", "Degraded", "Suspended", "Missing"})


class Health(NamedTuple):
    """What Argo CD shows for a resource."""

    status: str
    message: str


def nodecluster_health(obj: dict[str, Any], script: Path = HEALTH_SCRIPT) -> Health:
    """Evaluate the health script on one NodeCluster (as returned by the API)."""
    from lupa import lua51  # type: ignore[import-untyped]

    lua = lua51.LuaRuntime(unpack_returned_tuples=False)
    # Through JSON, as Argo CD does: only JSON types reach the script.
    lua.globals().obj = lua.table_from(json.loads(json.dumps(obj)), recursive=True)
    result = lua.execute(script.read_text())
    if result is None:
        raise ValueError(f"{script.name} returned nothing")
    status, message = result["status"], result["message"]
    if status not in HEALTH_STATUSES:
        raise ValueError(f"{script.name} returned an unknown health status {status!r}")
    return Health(str(status), "" if message is None else str(message))


def main() -> int:
    """Print the health of the NodeCluster JSON read from stdin."""
    health = nodecluster_health(json.load(sys.stdin))
    print(f"{health.status}: {health.message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
